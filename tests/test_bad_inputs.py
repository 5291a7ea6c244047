"""Bad input, table-driven: each class of mistake a user can make is one SparclError naming the
problem (the binaries print it as one line, exit 2), never a traceback or a run that finishes
with garbage; resume cases resume or refuse clearly. The binaries' one-line path itself is checked
in test_train_cli.py and at the end here."""

import gzip
import json
import os
import shutil
import struct
import subprocess
import sys

import numpy as np
import pytest

from conftest import make_idx_folder, tiny_config
from sparcl_tf.errors import CheckpointError, ConfigError, DataError, DivergedError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("field, value, message", [
    ("optimizer__learning_rate", float("inf"), "optimizer.learning_rate=inf"),
    ("method__alpha", float("inf"), "method.alpha=inf"),
    ("sparsity__importance_lambda", float("nan"), "sparsity.importance_lambda=nan"),
    ("sparsity__open_fraction", float("nan"), "sparsity.open_fraction=nan"),
    ("data__rotation_step", float("nan"), "data.rotation_step=nan"),
    ("dgm__gradient_sparsity", float("-inf"), "dgm.gradient_sparsity=-inf"),
    ("seed", 2 ** 32, "seed=4294967296"),
    ("model__width", float("inf"), "model.width=inf"),
    ("model__width", 1e9, "model.width=1000000000.0"),
])
def test_non_finite_and_out_of_range_fields_are_refused(idx_folder, field, value, message):
    from sparcl_tf.config import validate
    with pytest.raises(ConfigError, match=message.replace(".", r"\.").replace("+", r"\+")):
        validate(tiny_config(idx_folder, "sparcl_derpp", **{field: value}))


def test_a_replay_buffer_larger_than_memory_is_refused():
    from sparcl_tf.session.buffer import ReservoirBuffer
    with pytest.raises(ConfigError, match=r"replay\.buffer_size=1099511627776 needs .* GiB"):
        ReservoirBuffer(2 ** 40, (28, 28, 1), 10, seed=0)


def _npz(path, x_train, y_train=None):
    y_train = np.arange(len(x_train)) % 2 if y_train is None else y_train
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_train[:4], y_test=y_train[:4])
    return str(path)


@pytest.mark.parametrize("spoil, message", [
    (lambda x: x.__setitem__((0, 0, 0), np.nan), "NaN or infinite pixels"),
    (lambda x: x.__setitem__((1, 2, 3), np.inf), "NaN or infinite pixels"),
])
def test_non_finite_pixels_are_data_errors(tmp_path, spoil, message):
    from sparcl_tf.data.sources import load_npz
    x = np.random.default_rng(0).random((8, 6, 6)).astype(np.float32)
    spoil(x)
    with pytest.raises(DataError, match=message):
        load_npz(_npz(tmp_path / "d.npz", x))


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_truncated_or_crc_corrupt_npz_is_a_data_error(tmp_path, damage):
    from sparcl_tf.data.sources import load_npz
    path = _npz(tmp_path / "d.npz", np.zeros((8, 6, 6), np.uint8))
    content = bytearray(open(path, "rb").read())
    if damage == "truncate":
        content = content[:len(content) // 2]
    else:  # a byte of the first array's data: the zip's CRC no longer matches
        content[200] ^= 0xFF
    open(path, "wb").write(bytes(content))
    with pytest.raises(DataError, match="not a readable .npz"):
        load_npz(path)


def test_an_idx_header_claiming_huge_dimensions_is_a_data_error(tmp_path):
    from sparcl_tf.data.idx import read_idx
    path = tmp_path / "huge-idx3-ubyte"
    path.write_bytes(bytes([0, 0, 0x08, 3]) + struct.pack(">3I", 2 ** 32 - 1, 2 ** 32 - 1,
                                                             2 ** 32 - 1) + b"\0" * 64)
    with pytest.raises(DataError, match="promises"):
        read_idx(str(path))


def test_a_data_set_missing_a_class_a_task_needs_is_a_data_error(tmp_path, make_config):
    from sparcl_tf.data import build_tasks, load_source
    folder = make_idx_folder(tmp_path)
    labels = tmp_path / "train-labels-idx1-ubyte.gz"
    with gzip.open(labels) as handle:
        raw = bytearray(handle.read())
    raw[8:] = bytes(b if b != 3 else 2 for b in raw[8:])  # no training example of class 3
    with gzip.open(labels, "wb") as handle:
        handle.write(bytes(raw))
    config = make_config("derpp")
    config.data.dir = folder
    with pytest.raises(DataError, match=r"no training examples of class \[3\]"):
        build_tasks(load_source(config.data), config.data, config.seed)


def test_a_diverging_run_stops_at_the_step_and_keeps_its_good_checkpoints(tmp_path, make_config):
    from sparcl_tf.checkpoint import CheckpointManager
    from sparcl_tf.experiment import Experiment
    config = make_config("derpp", optimizer__learning_rate=1e4, checkpoint__every_steps=1,
                         log__tensorboard=False)
    diverged = r"task \d epoch \d step \d+: (.* is not finite|the loss is (nan|inf))"
    with pytest.raises(DivergedError, match=diverged):
        Experiment(config, str(tmp_path), verbose=0).run()
    with open(os.path.join(CheckpointManager(str(tmp_path / "checkpoints"), {}).latest(),
                           "variables.npz"), "rb") as handle:
        arrays = np.load(handle)
        assert all(np.isfinite(arrays[k]).all() for k in arrays.files
                   if np.issubdtype(arrays[k].dtype, np.floating))


@pytest.mark.parametrize("where", ["a file", "under a file"])
def test_a_workdir_that_cannot_be_one_is_a_config_error(tmp_path, make_config, where):
    from sparcl_tf.experiment import Experiment
    (tmp_path / "plain").write_text("not a folder")
    workdir = tmp_path / "plain" if where == "a file" else tmp_path / "plain" / "run"
    with pytest.raises(ConfigError, match="cannot be used"):
        Experiment(make_config("derpp"), str(workdir), verbose=0)


def _trained_config(idx_folder):
    return tiny_config(idx_folder, "derpp", data__num_tasks=2, log__tensorboard=False,
                       checkpoint__keep=1)


@pytest.fixture(scope="module")
def trained_run(idx_folder, tmp_path_factory):
    """A run stopped after its first task (one checkpoint), for each test to copy and spoil."""
    from sparcl_tf.experiment import Experiment
    workdir = tmp_path_factory.mktemp("trained")
    Experiment(_trained_config(idx_folder), str(workdir), verbose=0).run(stop_after_task=0)
    return workdir


def _trained(tmp_path, trained_run, idx_folder):
    shutil.copytree(trained_run, tmp_path, dirs_exist_ok=True)
    return _trained_config(idx_folder)


@pytest.mark.parametrize("spoil, error, message", [
    (lambda state: dict(state, mystery=1), CheckpointError, "unknown progress fields"),
    (lambda state: dict(state, global_step="seven"), CheckpointError, "global_step='seven'"),
    (lambda state: [state], CheckpointError, "not an object"),
])
def test_a_damaged_checkpoint_state_is_a_checkpoint_error(tmp_path, trained_run, idx_folder,
                                                          spoil, error, message):
    from sparcl_tf.checkpoint import CheckpointManager
    from sparcl_tf.experiment import Experiment
    config = _trained(tmp_path, trained_run, idx_folder)
    path = os.path.join(CheckpointManager(str(tmp_path / "checkpoints"), {}).latest(),
                        "state.json")
    with open(path) as handle:
        state = json.load(handle)
    with open(path, "w") as handle:
        json.dump(spoil(state), handle)
    with pytest.raises(error, match=message):
        Experiment(config, str(tmp_path), verbose=0)


def test_a_resume_under_another_config_is_refused_even_without_config_json(tmp_path,
                                                                           trained_run,
                                                                           idx_folder):
    from sparcl_tf.experiment import Experiment
    config = _trained(tmp_path, trained_run, idx_folder)
    os.remove(tmp_path / "config.json")
    config.optimizer.learning_rate = 0.1
    with pytest.raises(ConfigError, match="another config"):
        Experiment(config, str(tmp_path), verbose=0)


def test_a_corrupt_config_json_on_resume_is_a_config_error(tmp_path, trained_run, idx_folder):
    from sparcl_tf.experiment import Experiment
    config = _trained(tmp_path, trained_run, idx_folder)
    (tmp_path / "config.json").write_text("{ torn")
    with pytest.raises(ConfigError, match="config.json is unreadable"):
        Experiment(config, str(tmp_path), verbose=0)


def _binary(*arguments):
    return subprocess.run([sys.executable, "-m", *arguments], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)


def test_convert_refuses_a_run_without_a_checkpoint_and_writes_only_where_told(tmp_path,
                                                                              idx_folder):
    workdir = tmp_path / "run"
    workdir.mkdir()
    config = tiny_config(idx_folder, "derpp")
    (workdir / "config.json").write_text(config.to_json())
    ran = _binary("tools.convert", f"--workdir={workdir}")
    assert ran.returncode == 2 and ran.stderr.count("\n") == 1 and "no checkpoint" in ran.stderr
    before = {p: p.stat().st_mtime_ns for p in workdir.rglob("*")}
    temporary = set(os.listdir("/tmp"))
    (tmp_path / "file").write_text("")
    ran = _binary("tools.convert", f"--workdir={workdir}", "--state=initial",
                  f"--output_dir={tmp_path / 'file'}")
    assert ran.returncode == 2 and ran.stderr.count("\n") == 1 and "cannot be used" in ran.stderr
    ran = _binary("tools.convert", f"--workdir={workdir}", "--state=initial",
                  f"--output_dir={tmp_path / 'out'}")
    assert ran.returncode == 0, ran.stderr
    assert (tmp_path / "out" / "model.tflite").exists()
    assert {p: p.stat().st_mtime_ns for p in workdir.rglob("*")} == before  # nothing written
    assert not {n for n in set(os.listdir("/tmp")) - temporary if n.startswith("sparcl_")}
