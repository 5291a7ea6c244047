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
    assert sorted(os.listdir(tmp_path)) == ["ckpt-2", "ckpt-3"]
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


def test_a_second_save_at_one_step_never_deletes_the_first_before_it_lands(tmp_path):
    manager = CheckpointManager(str(tmp_path), _variables(), keep=2)
    manager.save(5, {"at": "periodic"})
    manager.save(5, {"at": "epoch end"})
    assert sorted(os.listdir(tmp_path)) == ["ckpt-5", "ckpt-5.1"]
    assert manager.restore() == {"at": "epoch end"}
    manager.save(6, {"at": "next"})
    assert sorted(os.listdir(tmp_path)) == ["ckpt-5.1", "ckpt-6"]


def test_an_unreadable_latest_checkpoint_falls_back_to_the_previous_with_a_warning(tmp_path):
    warnings = []
    manager = CheckpointManager(str(tmp_path), _variables(), warn=warnings.append)
    manager.save(1, {"step": 1})
    manager.save(2, {"step": 2})
    (tmp_path / "ckpt-2" / "state.json").write_text("[1, 2")  # torn write
    (tmp_path / "latest").write_text("../../elsewhere")  # an old-style pointer is not followed
    assert manager.restore() == {"step": 1}
    assert len(warnings) == 1 and "ckpt-2" in warnings[0] and "ckpt-1" in warnings[0]


def test_a_checkpoint_of_another_dtype_is_refused(tmp_path):
    CheckpointManager(str(tmp_path), _variables()).save(1, {})
    other = dict(_variables(), **{"b/count": tf.Variable(np.int32(3))})
    with pytest.raises(CheckpointError, match="b/count is int64"):
        CheckpointManager(str(tmp_path), other).restore()
