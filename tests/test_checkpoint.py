import os

import numpy as np
import pytest
import tensorflow as tf

from sparcl_tf.checkpoint import CheckpointManager
from sparcl_tf.errors import CheckpointError


def _variables():
    return {"a/kernel": tf.Variable(np.arange(6, dtype=np.float32).reshape(2, 3)),
            "b/count": tf.Variable(np.int64(3)), "c/flags": tf.Variable([True, False])}


def test_save_then_restore_round_trips_every_variable_and_host_state(tmp_path):
    variables = _variables()
    manager = CheckpointManager(str(tmp_path), variables)
    manager.save(7, {"task": 2, "matrix": [[1.0, None]]})
    originals = {k: v.numpy().copy() for k, v in variables.items()}
    for variable in variables.values():
        variable.assign(tf.zeros_like(variable))
    assert manager.restore() == {"task": 2, "matrix": [[1.0, None]]}
    for key, variable in variables.items():
        np.testing.assert_array_equal(variable.numpy(), originals[key])


def test_no_checkpoint_restores_nothing(tmp_path):
    assert CheckpointManager(str(tmp_path / "none"), _variables()).restore() is None


def test_only_the_newest_checkpoints_are_kept_and_staging_leftovers_ignored(tmp_path):
    manager = CheckpointManager(str(tmp_path), _variables(), keep=2)
    os.makedirs(tmp_path / ".ckpt-99-interrupted")  # a save that died before its rename
    for step in (1, 2, 3):
        manager.save(step, {"step": step})
    assert sorted(os.listdir(tmp_path)) == ["ckpt-2", "ckpt-3", "latest"]
    assert manager.restore() == {"step": 3}


def test_shape_mismatch_names_the_variable(tmp_path):
    CheckpointManager(str(tmp_path), _variables()).save(1, {})
    other = _variables()
    other["a/kernel"] = tf.Variable(np.zeros((3, 3), np.float32))
    with pytest.raises(CheckpointError, match="a/kernel has shape"):
        CheckpointManager(str(tmp_path), other).restore()


def test_missing_variable_and_corrupt_archive_are_checkpoint_errors(tmp_path):
    CheckpointManager(str(tmp_path), _variables()).save(1, {})
    larger = dict(_variables(), extra=tf.Variable(1.0))
    with pytest.raises(CheckpointError, match="lacks"):
        CheckpointManager(str(tmp_path), larger).restore()
    with open(tmp_path / "ckpt-1" / "variables.npz", "wb") as handle:
        handle.write(b"garbage")
    with pytest.raises(CheckpointError, match="unreadable"):
        CheckpointManager(str(tmp_path), _variables()).restore()
