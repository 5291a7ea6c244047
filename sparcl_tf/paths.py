"""The one path rule: a folder the library will write is checked up front (made if missing,
refused in one line when it is a file, lies under one, or cannot be written), before anything
else happens."""

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


def usable_folder(path, name="--workdir"):
    """Creates `path` if needed and checks it can be written; ConfigError naming `name`
    otherwise. Returns `path`."""
    if os.path.isfile(path):
        raise ConfigError(f"{name} {path} cannot be used: it is a file, not a folder")
    try:
        os.makedirs(path, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=path, prefix=".write-check-")
        probe.close()
    except OSError as error:
        raise ConfigError(f"{name} {path} cannot be used: {error.strerror or error}") from None
    return path
