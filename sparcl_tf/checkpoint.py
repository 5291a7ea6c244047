"""Atomic checkpoints of a whole run: every variable plus the host-side progress, no pickles.

A checkpoint is a folder `ckpt-<step>` with `variables.npz` (name -> array: network weights, BN
statistics, masks, optimizer slots, replay buffer, example statistics, RNG state) and `state.json`
(task, epoch, step, accuracy matrices so far, ...). It is written under a temporary name and renamed
into place, then the `latest` pointer is replaced atomically, so a crash at any moment leaves the
previous checkpoint intact and readable.
"""

import json
import os
import shutil
import tempfile

import numpy as np

from sparcl_tf.errors import CheckpointError

_POINTER = "latest"


def _value(variable):
    return np.asarray(variable.numpy())


class HostArray:
    """A numpy array the session host keeps (buffer, statistics), seen by checkpoints as a
    variable: `numpy()` reads it, `assign` writes it in place, so its owner sees the restore."""

    def __init__(self, array):
        self.array = array

    @property
    def shape(self):
        return self.array.shape

    def numpy(self):
        return self.array

    def assign(self, value):
        self.array[...] = value


class CheckpointManager:
    """Saves and restores `variables` (name -> tf.Variable or keras.Variable) with host state."""

    def __init__(self, directory, variables, keep=2):
        self.directory = directory
        self.variables = dict(variables)
        self.keep = keep

    def latest(self):
        pointer = os.path.join(self.directory, _POINTER)
        if not os.path.isfile(pointer):
            return None
        with open(pointer) as handle:
            name = handle.read().strip()
        path = os.path.join(self.directory, name)
        if not name or not os.path.isdir(path):
            raise CheckpointError(f"{pointer} names {name!r}, which is not a checkpoint folder")
        return path

    def save(self, step, host_state):
        os.makedirs(self.directory, exist_ok=True)
        name = f"ckpt-{int(step)}"
        staging = tempfile.mkdtemp(prefix=f".{name}-", dir=self.directory)
        np.savez(os.path.join(staging, "variables.npz"),
                 **{key: _value(v) for key, v in self.variables.items()})
        with open(os.path.join(staging, "state.json"), "w") as handle:
            json.dump(host_state, handle)
        final = os.path.join(self.directory, name)
        if os.path.exists(final):  # same step saved twice (e.g. epoch end == periodic)
            shutil.rmtree(final)
        os.replace(staging, final)
        pointer_tmp = os.path.join(self.directory, f".{_POINTER}.tmp")
        with open(pointer_tmp, "w") as handle:
            handle.write(name)
        os.replace(pointer_tmp, os.path.join(self.directory, _POINTER))
        self._prune(keep_name=name)
        return final

    def _prune(self, keep_name):
        names = [n for n in os.listdir(self.directory) if n.startswith("ckpt-")]
        names.sort(key=lambda n: int(n.split("-")[1]))
        for stale in [n for n in names if n != keep_name][:max(0, len(names) - self.keep)]:
            shutil.rmtree(os.path.join(self.directory, stale), ignore_errors=True)
        for leftover in os.listdir(self.directory):  # staging folders of interrupted saves
            if leftover.startswith(".ckpt-"):
                shutil.rmtree(os.path.join(self.directory, leftover), ignore_errors=True)

    def restore(self):
        """Loads the latest checkpoint into the variables; returns its host state, or None."""
        path = self.latest()
        if path is None:
            return None
        try:
            with np.load(os.path.join(path, "variables.npz"), allow_pickle=False) as archive:
                arrays = {key: archive[key] for key in archive.files}
            with open(os.path.join(path, "state.json")) as handle:
                host_state = json.load(handle)
        except (OSError, ValueError, EOFError) as error:
            raise CheckpointError(f"checkpoint {path} is unreadable: {error}") from None
        missing = sorted(set(self.variables) - set(arrays))
        if missing:
            raise CheckpointError(f"checkpoint {path} lacks {missing[:3]} (a different model or "
                                  f"method?)")
        for key, variable in self.variables.items():
            if tuple(arrays[key].shape) != tuple(variable.shape):
                raise CheckpointError(f"checkpoint {path}: {key} has shape {arrays[key].shape}, "
                                      f"the model expects {tuple(variable.shape)}")
        for key, variable in self.variables.items():
            variable.assign(arrays[key])
        return host_state
