"""The one path rule: a folder the library will write is checked up front (refused in one line
when it is a file, lies under one, or cannot be written), before anything else happens, and made
only when the work that fills it begins."""

import os
import tempfile

from sparcl_tf.errors import ConfigError


def usable_file(path, name):
    """Checks `path` can be written as a file (its folder made if missing); ConfigError naming
    `name` when it is a folder or its folder cannot be used. Returns `path`."""
    if os.path.isdir(path):
        raise ConfigError(f"{name} {path} cannot be used: it is a folder, not a file")
    usable_folder(os.path.dirname(os.path.abspath(path)), f"{name}'s folder")
    return path


def check_folder(path, name="--workdir"):
    """Checks, making nothing, that `path` is a folder or can be made one and then written;
    ConfigError naming `name` otherwise. Returns `path`."""
    if os.path.isfile(path):
        raise ConfigError(f"{name} {path} cannot be used: it is a file, not a folder")
    existing = os.path.abspath(path)
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise ConfigError(f"{name} {path} cannot be used: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"{name} {path} cannot be used: {existing} is not writable")
    return path


def usable_folder(path, name="--workdir"):
    """Creates `path` if needed and checks it can be written; ConfigError naming `name`
    otherwise. Returns `path`."""
    check_folder(path, name)
    try:
        os.makedirs(path, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=path, prefix=".write-check-")
        probe.close()
    except OSError as error:
        raise ConfigError(f"{name} {path} cannot be used: {error.strerror or error}") from None
    return path
