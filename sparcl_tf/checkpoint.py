"""Atomic checkpoints of a whole run: every variable plus the host-side progress, no pickles.

A checkpoint is a folder `ckpt-<step>` (a second save at the same step: `ckpt-<step>.<k>`) with
`variables.npz` (name -> array: network weights, BN statistics, masks, optimizer slots, replay
buffer, example statistics) and `state.json` (task, epoch, step, accuracy matrices so far, ...).
It is written in a staging folder and renamed into place, so every `ckpt-*` folder is complete, and
nothing older is deleted before the new one is in place. The latest checkpoint is the newest
folder by (step, k): no pointer file can go stale or point elsewhere. A latest checkpoint that
cannot be read is reported and the previous one used; one of another model (names, shapes,
dtypes) is an error.
"""

import json
import os
import re
import shutil
import tempfile

import numpy as np

from sparcl_tf.errors import CheckpointError

_NAME = re.compile(r"ckpt-(\d+)(?:\.(\d+))?$")


def _value(variable):
    return np.asarray(variable.numpy())


class HostArray:
    """A numpy array the session host keeps (buffer, statistics), seen by checkpoints as a
    variable: `numpy()` reads it, `assign` writes it in place, so its owner sees the restore.
    A `resizable` one takes a checkpoint's array of any length (tables that grow task by task)."""

    def __init__(self, array, resizable=False):
        self.array = array
        self.resizable = resizable

    @property
    def shape(self):
        return self.array.shape

    def numpy(self):
        return self.array

    def assign(self, value):
        if self.resizable and np.shape(value) != self.array.shape:
            self.array = np.array(value, self.array.dtype)
        else:
            self.array[...] = value


class CheckpointManager:
    """Saves and restores `variables` (name -> tf.Variable or keras.Variable) with host state.

    `warn(message)` hears of an unreadable checkpoint passed over for the previous one."""

    def __init__(self, directory, variables, keep=2, warn=None):
        self.directory = directory
        self.variables = dict(variables)
        self.keep = keep
        self.warn = warn or (lambda message: print(f"warning: {message}", flush=True))
        self.restored_from = None  # the folder `restore` read

    def _folders(self):
        """Checkpoint folders, oldest first."""
        if not os.path.isdir(self.directory):
            return []
        found = []
        for name in os.listdir(self.directory):
            match = _NAME.match(name)
            if match and os.path.isdir(os.path.join(self.directory, name)):
                found.append((int(match.group(1)), int(match.group(2) or 0), name))
        return [os.path.join(self.directory, name) for _, _, name in sorted(found)]

    def latest(self):
        folders = self._folders()
        return folders[-1] if folders else None

    def snapshot(self):
        """Name -> numpy array of every variable now (what `save` writes)."""
        return {key: _value(v) for key, v in self.variables.items()}

    def save(self, step, host_state, arrays=None):
        """Writes `arrays` (default: a fresh `snapshot`) and `host_state` as the newest
        checkpoint."""
        os.makedirs(self.directory, exist_ok=True)
        name, again = f"ckpt-{int(step)}", 0
        while os.path.exists(os.path.join(self.directory, name)):  # the same step saved again
            again += 1
            name = f"ckpt-{int(step)}.{again}"
        staging = tempfile.mkdtemp(prefix=f".{name}-", dir=self.directory)
        np.savez(os.path.join(staging, "variables.npz"),
                 **(self.snapshot() if arrays is None else arrays))
        with open(os.path.join(staging, "state.json"), "w") as handle:
            json.dump(host_state, handle)
        final = os.path.join(self.directory, name)
        os.replace(staging, final)
        self._prune()
        return final

    def _prune(self):
        for stale in self._folders()[:-self.keep]:
            shutil.rmtree(stale, ignore_errors=True)
        for leftover in os.listdir(self.directory):  # staging folders of interrupted saves
            if leftover.startswith(".ckpt-"):
                shutil.rmtree(os.path.join(self.directory, leftover), ignore_errors=True)

    @staticmethod
    def _read(path):
        try:
            with np.load(os.path.join(path, "variables.npz"), allow_pickle=False) as archive:
                arrays = {key: archive[key] for key in archive.files}
            with open(os.path.join(path, "state.json")) as handle:
                host_state = json.load(handle)
        except Exception as error:  # numpy and zipfile raise many types for a damaged archive
            raise CheckpointError(f"checkpoint {path} is unreadable: {error}") from None
        if not isinstance(host_state, dict):
            raise CheckpointError(f"checkpoint {path} is unreadable: state.json is not an object")
        return arrays, host_state

    def restore(self):
        """Loads the latest readable checkpoint into the variables; returns its host state, or
        None when there is none."""
        folders = self._folders()
        for index in range(len(folders) - 1, -1, -1):
            path = folders[index]
            try:
                arrays, host_state = self._read(path)
            except CheckpointError as error:
                if index == 0:
                    raise
                self.warn(f"{error}; resuming from the previous checkpoint, "
                          f"{os.path.basename(folders[index - 1])}")
                continue
            self._check(path, arrays)
            for key, variable in self.variables.items():
                variable.assign(arrays[key])
            self.restored_from = path
            return host_state
        return None

    def _check(self, path, arrays):
        missing = sorted(set(self.variables) - set(arrays))
        if missing:
            raise CheckpointError(f"checkpoint {path} lacks {missing[:3]} (a different model or "
                                  f"method?)")
        for key, variable in self.variables.items():
            current = _value(variable)
            if tuple(arrays[key].shape) != tuple(current.shape) and not getattr(
                    variable, "resizable", False):
                raise CheckpointError(f"checkpoint {path}: {key} has shape {arrays[key].shape}, "
                                      f"the model expects {tuple(current.shape)}")
            if arrays[key].dtype != current.dtype:
                raise CheckpointError(f"checkpoint {path}: {key} is {arrays[key].dtype}, the "
                                      f"model expects {current.dtype}")
