"""What the absl binaries share: the --config flag, one-line errors, the results table.

A binary's stderr carries its one error line and nothing else: imported by a binary (a console
script `sparcl-*`, `python -m sparcl_tf.cli.*` or its `python -m tools.*` shim in a checkout),
this module sends file descriptor 2 to /dev/null before TensorFlow loads (TensorFlow's C++
start-up lines come from absl logging before any flag could silence them; LiteRT's native INFO
lines and Python warnings follow the same way) and keeps the real stderr for `fail`. `--verbose`
on the command line keeps everything, tracebacks included.
"""

import os
import re
import sys


def _binary_without_verbose():
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    verbose = any(arg in ("--verbose", "--verbose=true", "--verbose=True", "--verbose=1")
                  for arg in sys.argv[1:])
    binary = (spec and spec.name.startswith(("tools.", "sparcl_tf.cli."))) or \
        os.path.basename(sys.argv[0]).startswith("sparcl-")
    return bool(binary) and not verbose


ERRORS = sys.stderr  # where the one error line goes
if _binary_without_verbose():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.stderr.flush()
    _saved_stderr = os.dup(2)
    _null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(_null, 2)
    os.close(_null)
    ERRORS = os.fdopen(_saved_stderr, "w", buffering=1)

from absl import app, flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from sparcl_tf import errors  # noqa: E402
from sparcl_tf.errors import SparclError  # noqa: E402

errors.error_output = ERRORS

USAGE_ERROR = 2
UNEXPECTED_ERROR = 1
_VERBOSE = flags.DEFINE_bool("verbose", False, "Keep TensorFlow's and LiteRT's logging and "
                             "Python warnings on stderr, and show tracebacks.")


def define_config_flag(required=False):
    holder = config_flags.DEFINE_config_file(
        "config", None, "Config file and preset, e.g. configs/split_fmnist.py:derpp. Any field "
        "can be overridden: --config.epochs_per_task=2. Config files are Python: trusted code.",
        lock_config=True)
    if required:
        flags.mark_flag_as_required("config")
    return holder


def _root_cause(error):
    """The innermost error a config or flag problem came from."""
    seen = set()
    while id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, SparclError):
            return error
        cause = error.__cause__ or error.__context__
        if cause is None:
            return error
        error = cause
    return error


def _flag_value_error(error):
    """absl's 'flag --NAME=VALUE: why' in the words of the other lines: what the flag must be."""
    name_value, _, why = str(error)[len("flag "):].partition(": ")
    if "Non-boolean argument" in why:
        why = "must be true or false"
    elif "invalid literal for int()" in why:
        why = "must be an integer"
    elif "could not convert string to float" in why:
        why = "must be a number"
    return f"{name_value} is invalid: {why}"


def one_line(error):
    root = _root_cause(error)
    if isinstance(root, SparclError) and "\n" not in str(root):
        return str(root)
    if isinstance(error, flags.IllegalFlagValueError) and str(error).startswith("flag --") \
            and "\n" not in str(error) and "must have a value other than None" not in str(error):
        return _flag_value_error(error)
    error = root
    if isinstance(error, AttributeError) and "get_config" in str(error):
        return "the --config file defines no get_config() function"
    if isinstance(error, AttributeError) and "'NoneType' object" in str(error):
        return "the --config file's get_config() returned None; it must return a ConfigDict"
    if isinstance(error, (AttributeError, KeyError)):  # ml_collections: unknown --config.KEY
        return f"unknown config field {str(error).strip(chr(34))} in a --config override"
    if isinstance(error, FileNotFoundError):
        return f"file not found: {error.filename}"
    missing = re.search(r"Flag --(\w+) must have a value other than None", str(error))
    if missing:  # absl's words for a required flag left out, or a config file giving None
        name = missing.group(1)
        if name == "config" and flags.FLAGS["config"].present:
            return "the --config file's get_config() returned None; it must return a ConfigDict"
        return f"--{name} is required (see --help)"
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    # config_flags folds the config file's traceback into its message: keep the final exception.
    for line in reversed(lines):
        match = re.match(r"^(?:[\w.]+\.)?(\w+(?:Error|Exception)): (.*)$", line)
        if match:
            return match.group(2)
        if line.startswith("[Errno"):
            return line
    return lines[-1] if lines else type(error).__name__


def fail(message, code=USAGE_ERROR):
    print(f"error: {message}", file=ERRORS, flush=True)
    sys.exit(code)


# An installed wheel carries the checkout's configs/ here (pyproject.toml), so the commands of the
# README run the same from anywhere: a --config path missing from the working folder is looked up
# in this folder too.
SHIPPED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "shipped")


def _import_root(path):
    """The folder above the outermost package holding the file `path`: on sys.path while the config
    loads, a config file can import its package's siblings (`from configs import split_fmnist`)
    whatever the working folder, as pytest's rootdir rule does for test files."""
    folder = os.path.dirname(os.path.abspath(path))
    while os.path.isfile(os.path.join(folder, "__init__.py")):
        folder = os.path.dirname(folder)
    return folder


def config_file(path):
    """The config file `path` names: in the working folder, else among the SHIPPED ones (`path`
    as given when neither holds it); the folder above its package goes on sys.path, so it can
    import its siblings (`from configs import split_fmnist`) whatever the working folder."""
    if not os.path.isfile(path) and not os.path.isabs(path) and \
            os.path.isfile(os.path.join(SHIPPED, path)):
        path = os.path.join(SHIPPED, path)
    if os.path.isfile(path) and _import_root(path) not in sys.path:
        sys.path.insert(0, _import_root(path))
    return path


def _resolve_config_path(argv):
    """argv with --config's file resolved (`config_file`), checked before config_flags reads it
    (its own words for a missing file or a folder are a Python traceback's)."""
    if "config" not in flags.FLAGS:
        return argv
    resolved = list(argv)
    for index, arg in enumerate(argv[1:], start=1):
        if arg.startswith("--config="):
            path, colon, preset = arg[len("--config="):].partition(":")
            if os.path.isdir(path):
                fail(f"--config {path} cannot be used: it is a folder, not a file")
            path = config_file(path)
            if not os.path.isfile(path):
                fail(f"--config {path} cannot be used: no such file")
            resolved[index] = f"--config={path}{colon}{preset}"
    return resolved


_HELP = ("--help", "-help", "-h", "-?", "--helpshort", "--helpfull", "--helpxml")


def _parse_flags(argv):
    argv = _resolve_config_path(argv)
    try:
        remaining = flags.FLAGS(argv)
        if "config" in flags.FLAGS and flags.FLAGS["config"].present:
            flags.FLAGS["config"].value.keys()  # config_flags defers load errors to first use
    except SystemExit:  # absl's --help and its kin print the usage and exit 1: asked for, it is 0
        if any(arg in _HELP for arg in argv[1:]):
            sys.exit(0)
        raise
    except Exception as error:  # flag errors, and whatever a config file raises while loading
        fail(one_line(error))
    if len(remaining) > 1:  # absl hands words without -- to main, which takes none
        fail(f"unknown argument {remaining[1]!r}: every input is a --flag=value (see --help)")
    return remaining


def run_app(main, usage):
    """absl `app.run` whose flag, config and user errors are one line on stderr and exit code 2;
    anything unforeseen is one line and exit code 1 (the traceback with --verbose). `usage` (the
    binary's docstring) heads --help, which absl takes from `__main__`: a console script's
    `__main__` is pip's wrapper and a checkout's is the `tools.X` shim."""
    main_module = sys.modules["__main__"]
    if not getattr(main_module, "__doc__", None):
        main_module.__doc__ = usage
    # --help lists the flags absl files under the program's path: those of the module that
    # defines them (the binary's, and --verbose here), as when that module was run as __main__.
    for module in (main.__module__, __name__):
        for flag in flags.FLAGS.get_key_flags_for_module(module):
            flags.FLAGS.register_key_flag_for_module(sys.argv[0], flag)
    def guarded(argv):
        try:
            return main(argv)
        except SparclError as error:
            fail(one_line(error))
        except Exception as error:  # a bug or an environment failure: say so in one line
            if _VERBOSE.value:
                raise
            fail(f"unexpected {type(error).__name__}: {one_line(error)} (rerun with --verbose "
                 f"for the traceback)", UNEXPECTED_ERROR)
    return app.run(guarded, flags_parser=_parse_flags)


def entry_point(main, usage):
    """The console script of the binary whose absl `main` and docstring `usage` these are."""
    def run():
        sys.exit(run_app(main, usage))
    return run


def print_results(results, workdir):
    """A run's results table and where its results.json is, on stdout."""
    print(results_table([results]))
    print(f"results: {os.path.join(workdir, 'results.json')}")


def run_or_exit(function):
    """Calls `function`; a user error (bad config, data or checkpoint) becomes a one-line exit."""
    try:
        return function()
    except SparclError as error:
        fail(str(error))


def results_table(rows):
    """Markdown table of class-IL / task-IL and the cost of each run in `rows` (results dicts)."""
    lines = ["| run | class-IL | task-IL | forgetting | wall-clock (s) |",
             "|---|---:|---:|---:|---:|"]
    for results in rows:
        lines.append(f"| {results['preset'] or results['method']} | {results['class_il']:.2f} | "
                     f"{results['task_il']:.2f} | {results['forgetting']:.2f} | "
                     f"{results['wall_clock_s']:.1f} |")
    return "\n".join(lines)
