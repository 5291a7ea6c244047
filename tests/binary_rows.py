"""Runs bad-input rows through one `tools.*` binary inside this one process (a process per row
would pay TensorFlow's import for each): `python tests/binary_rows.py tools.train ROWS.json
SANDBOX`. ROWS.json is a list of argument lists; for each, prints one JSON line: the exit code,
what the binary wrote to its error stream, and every path under SANDBOX (and every `sparcl_*` in
TMPDIR) that the row created, removed or changed. The first line lists the flags the binary
defines, for the table's coverage check."""

import hashlib
import importlib
import io
import json
import os
import signal
import sys
import tempfile

from absl import flags

from sparcl_tf import errors as sparcl_errors
from sparcl_tf.cli import app as cli


def snapshot(root):
    """{path: content hash, or 'folder'} of everything under `root`, and the library's
    temporaries (the table gives each run its own TMPDIR: other tests' are not seen)."""
    seen = {}
    for folder, names, files in os.walk(root):
        seen[folder] = "folder"
        for name in files:
            path = os.path.join(folder, name)
            with open(path, "rb") as handle:
                seen[path] = hashlib.sha256(handle.read()).hexdigest()
    temporary = tempfile.gettempdir()
    seen.update({os.path.join(temporary, name): "temporary" for name in os.listdir(temporary)
                 if name.startswith("sparcl_")})  # TensorFlow's autograph files stay there
    return seen


def changes(before, after):
    return sorted(path for path in set(before) | set(after) if before.get(path) != after.get(path))


class TookTooLong(Exception):
    """A bad input must be refused before any work: a row still running after ROW_LIMIT_S is
    one the binary accepted."""


ROW_LIMIT_S = 60


def _took_too_long(*_):
    raise TookTooLong()


def run_row(module, argv, sandbox):
    flags.FLAGS.unparse_flags()
    for name in [name for name in flags.FLAGS if name.startswith("config.")]:
        delattr(flags.FLAGS, name)  # config_flags defines these per parse, as a new process would
    stream = io.StringIO()
    cli.ERRORS = sparcl_errors.error_output = stream
    sys.argv = [module.__name__, *argv]
    before = snapshot(sandbox)
    signal.signal(signal.SIGALRM, _took_too_long)
    signal.alarm(ROW_LIMIT_S)
    try:
        cli.run_app(module.main, module.__doc__)
        code = 0
    except SystemExit as exit:
        code = exit.code if isinstance(exit.code, int) else 1
    except TookTooLong:
        code = "still running after the row limit"
    finally:
        signal.alarm(0)
    return {"code": code, "stderr": stream.getvalue(), "changed": changes(before,
                                                                          snapshot(sandbox))}


def binary_module(shim):
    """The module that defines the flags of the binary `python -m SHIM` runs (tools.X is a shim)."""
    name = shim.replace("tools.", "sparcl_tf.cli.", 1)
    return importlib.import_module(name + ".main" if name.endswith(".benchmark") else name)


def main():
    module_name, rows_file, sandbox = sys.argv[1:4]
    module = binary_module(module_name)
    with open(rows_file) as handle:
        rows = json.load(handle)
    own = {flag.name for flag in flags.FLAGS.get_key_flags_for_module(module)} | {"verbose"}
    if "config" in flags.FLAGS:  # defined for the binary by cli.define_config_flag
        own.add("config")
    print(json.dumps(sorted(own)), flush=True)
    real_stdout = sys.stdout
    for argv in rows:
        sys.stdout = io.StringIO()  # a row that wrongly runs must not garble the report
        try:
            outcome = run_row(module, argv, sandbox)
        finally:
            sys.stdout = real_stdout
        print(json.dumps(outcome), flush=True)


if __name__ == "__main__":
    main()
