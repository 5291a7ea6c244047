"""The package's declaration (pyproject.toml) against the tree: every package of sparcl_tf ships,
every console script names a binary's entry point, every `python -m tools.X` shim reaches the same
binary. tools/wheel_check.sh (in CI) builds and installs the wheel itself."""

import ast
import importlib.util
import os
import re
import subprocess
import sys
import tomllib

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROJECT = tomllib.load(open(os.path.join(ROOT, "pyproject.toml"), "rb"))


def _packages_in(folder, dotted):
    found = []
    for path, _, files in os.walk(os.path.join(ROOT, folder)):
        if "__init__.py" in files:
            relative = os.path.relpath(path, os.path.join(ROOT, folder))
            found.append(dotted if relative == "." else
                         f"{dotted}.{relative.replace(os.sep, '.')}")
    return found


def test_every_package_and_config_folder_is_in_the_wheel():
    setuptools = PROJECT["tool"]["setuptools"]
    shipped = "sparcl_tf.cli.shipped.configs"
    assert setuptools["package-dir"] == {shipped: "configs"}
    assert sorted(setuptools["packages"]) == sorted(
        _packages_in("sparcl_tf", "sparcl_tf") + _packages_in("configs", shipped))
    assert "py.typed" in setuptools["package-data"]["sparcl_tf"]
    assert os.path.isfile(os.path.join(ROOT, "sparcl_tf", "py.typed"))


def test_the_shipped_configs_are_where_the_binaries_look():
    from sparcl_tf.cli import app
    assert app.SHIPPED == os.path.join(ROOT, "sparcl_tf", "cli", "shipped")
    assert app._import_root(os.path.join(ROOT, "configs", "ablations", "mlp.py")) == ROOT


@pytest.mark.parametrize("script", sorted(PROJECT["project"]["scripts"]))
def test_each_console_script_shows_its_binarys_usage(script):
    """What pip's wrapper does (argv[0] is the script, `__main__` has no docstring), in a process
    of its own as each binary defines its flags at import; the `tools.X` shim is the same binary."""
    module_name, _, function = PROJECT["project"]["scripts"][script].partition(":")
    shim = module_name.removesuffix(".main").replace("sparcl_tf.cli.", "tools.")
    assert script == "sparcl-" + shim.removeprefix("tools.").replace("_", "-")
    wrapper = (f"import sys; sys.argv = [{script!r}, '--help']; "
               f"from {module_name} import {function}, __doc__ as usage; "
               f"import {shim}; assert {shim}.run is {function}; {function}()")
    done = subprocess.run([sys.executable, "-c", wrapper], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    source = open(importlib.util.find_spec(module_name).origin).read()
    assert ast.get_docstring(ast.parse(source)).splitlines()[0] in done.stdout
    defined = re.findall(r'flags\.DEFINE_\w+\(\s*"(\w+)"', source)
    assert defined and all(re.search(rf"--(\[no\])?{name}\b", done.stdout)
                           for name in defined + ["verbose"])


def test_the_version_is_the_packages():
    import sparcl_tf
    assert PROJECT["project"]["dynamic"] == ["version"]
    assert PROJECT["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "sparcl_tf.__version__"}
    assert sparcl_tf.__version__.count(".") == 2


def test_each_optional_import_names_an_extra_that_installs_it():
    from sparcl_tf.errors import MissingExtraError, SparclError, import_extra
    uses = set()
    for folder, _, files in os.walk(os.path.join(ROOT, "sparcl_tf")):
        for name in files:
            if name.endswith(".py"):
                uses |= set(re.findall(r'import_extra\("([\w.]+)", "(\w+)"\)',
                                       open(os.path.join(folder, name)).read()))
    extras = PROJECT["project"]["optional-dependencies"]
    distribution = {"ai_edge_litert": "ai-edge-litert", "tflite_micro": "tflite-micro",
                    "tensorflow_datasets": "tensorflow-datasets"}
    assert {module.partition(".")[0] for module, _ in uses} == set(distribution)
    for module, extra in uses:
        assert any(pin.startswith(distribution[module.partition(".")[0]])
                   for pin in extras[extra]), (module, extra)
        importlib.import_module(module)  # the test environment has every extra
    with pytest.raises(MissingExtraError, match=r"^no_such_module is not installed: this needs "
                                                r"pip install 'sparcl-tf\[litert\]'$") as caught:
        import_extra("no_such_module.interpreter", "litert")
    assert isinstance(caught.value, SparclError) and isinstance(caught.value, ImportError)


def test_a_config_path_missing_here_is_found_among_the_shipped_ones(tmp_path, monkeypatch):
    """What an installed sparcl-train and sparcl-benchmark do with --config=configs/...: the
    shipped copy, with the folder above its package importable."""
    import sys

    from sparcl_tf.cli import app
    shipped = tmp_path / "shipped"
    (shipped / "configs").mkdir(parents=True)
    (shipped / "configs" / "__init__.py").write_text("")
    (shipped / "configs" / "mine.py").write_text("")
    monkeypatch.setattr(app, "SHIPPED", str(shipped))
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.chdir(tmp_path)
    assert app.config_file("configs/mine.py") == str(shipped / "configs" / "mine.py")
    assert sys.path[0] == str(shipped)
    assert app.config_file("configs/none.py") == "configs/none.py"  # refused by its reader
