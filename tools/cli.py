"""What the absl binaries share: the --config flag, one-line errors, the results table."""

import re
import sys

from absl import app, flags
from ml_collections import config_flags

from sparcl_tf.errors import SparclError

USAGE_ERROR = 2


def define_config_flag():
    return config_flags.DEFINE_config_file(
        "config", None, "Config file and preset, e.g. configs/split_fmnist.py:derpp. Any field "
        "can be overridden: --config.epochs_per_task=2. Config files are Python: trusted code.",
        lock_config=True)


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


def one_line(error):
    error = _root_cause(error)
    if isinstance(error, SparclError) and "\n" not in str(error):
        return str(error)
    if isinstance(error, (AttributeError, KeyError)):  # ml_collections: unknown --config.KEY
        return f"unknown config field {str(error).strip(chr(34))} in a --config override"
    if isinstance(error, FileNotFoundError):
        return f"file not found: {error.filename}"
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    # config_flags folds the config file's traceback into its message: keep the final exception.
    for line in reversed(lines):
        match = re.match(r"^(?:[\w.]+\.)?(\w+(?:Error|Exception)): (.*)$", line)
        if match:
            return match.group(2)
        if line.startswith("[Errno"):
            return line
    return lines[-1] if lines else type(error).__name__


def fail(message):
    print(f"error: {message}", file=sys.stderr, flush=True)
    sys.exit(USAGE_ERROR)


def _parse_flags(argv):
    try:
        remaining = flags.FLAGS(argv)
        if "config" in flags.FLAGS and flags.FLAGS["config"].present:
            flags.FLAGS["config"].value.keys()  # config_flags defers load errors to first use
        return remaining
    except Exception as error:  # flag errors, and whatever a config file raises while loading
        fail(one_line(error))


def run_app(main):
    """absl `app.run` whose flag and config errors are one line on stderr and exit code 2."""
    return app.run(main, flags_parser=_parse_flags)


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
