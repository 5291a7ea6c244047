"""Errors raised at the library's boundaries.

Every error a user can cause with a config, a file or a tensor is one of these, with a message that
names the field or file and what was allowed. The binaries print the message as one line and exit 2.
"""


import importlib
import sys

# Where a line goes that cannot be raised (the cluster start-up watcher of `distribute`, which
# outlives a stuck process): the binaries point it at their real stderr, since they send file
# descriptor 2 to /dev/null to keep native logs off it (tools/cli.py).
error_output = sys.stderr


class SparclError(ValueError):
    """Base class: a problem with the user's input, not a bug in the library."""


class ConfigError(SparclError):
    """A config field has a value the library cannot use."""


class DataError(SparclError):
    """A data file or folder is missing, truncated, corrupt or inconsistent."""


class CheckpointError(SparclError):
    """A checkpoint cannot be read or does not match the model and config."""


class DivergedError(SparclError):
    """Training turned non-finite; the run stopped before saving anything of that state."""


class ClusterError(SparclError):
    """A worker of a multi-worker run stopped or cannot be reached."""


class ExportError(SparclError):
    """A network's training graph cannot be converted to a builtins-only .tflite."""


class TaskCancelled(Exception):
    """A task stopped by its cancellation hook between two steps, its state saved: the next call
    with the same task goes on from there. Not a SparclError: nothing was wrong."""


class MissingExtraError(SparclError, ImportError):
    """A part of sparcl-tf whose optional dependencies (a pip extra) are not installed."""


def import_extra(module, extra):
    """`module`, which only the `extra` of the package installs, imported where it is needed (so
    the rest of the library runs without it); one clear line naming the extra when it is missing."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise MissingExtraError(f"{module.partition('.')[0]} is not installed: this needs "
                                f"pip install 'sparcl-tf[{extra}]'") from error
