"""Shared fixtures: tiny generated data sets and configs that train in seconds."""

import gzip
import os
import struct

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"


def write_idx(path, array):
    """Writes `array` (uint8) as an IDX file; gzip-compressed when `path` ends in .gz."""
    array = np.ascontiguousarray(array, np.uint8)
    payload = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    payload += array.tobytes()
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "wb") as handle:
        handle.write(payload)


def class_pattern_images(labels, rng, size=28):
    """Images a small network learns in a few steps: a bright 7x7 block placed by the class."""
    images = rng.integers(0, 60, size=(len(labels), size, size), dtype=np.uint8)
    for index, label in enumerate(labels):
        row, col = divmod(int(label) % 16, 4)
        images[index, row * 7:(row + 1) * 7, col * 7:(col + 1) * 7] = 220
    return images


def make_idx_folder(folder, train_per_class=40, test_per_class=12, seed=0):
    rng = np.random.default_rng(seed)
    for prefix, per_class in (("train", train_per_class), ("t10k", test_per_class)):
        labels = rng.permutation(np.repeat(np.arange(10), per_class)).astype(np.uint8)
        write_idx(os.path.join(folder, f"{prefix}-images-idx3-ubyte.gz"),
                  class_pattern_images(labels, rng))
        write_idx(os.path.join(folder, f"{prefix}-labels-idx1-ubyte.gz"), labels)
    return str(folder)


@pytest.fixture(scope="session")
def idx_folder(tmp_path_factory):
    return make_idx_folder(tmp_path_factory.mktemp("tiny_fmnist"))


def tiny_config(data_dir, preset="derpp", **overrides):
    """Split Fashion-MNIST config shrunk to seconds: narrow edge CNN, tiny tasks and buffer."""
    from configs.split_fmnist import get_config
    config = get_config(preset)
    config.data.dir = data_dir
    config.epochs_per_task = 1
    config.data.train_per_task = 64
    config.data.test_per_task = 24
    config.model.width = 0.25
    config.batch_size = 16
    config.replay.batch_size = 16
    config.replay.buffer_size = 40
    config.log.progress = False
    config.checkpoint.every_steps = 0
    for path, value in overrides.items():
        node = config
        *parents, leaf = path.split("__")
        for key in parents:
            node = node[key]
        node[leaf] = value
    return config


@pytest.fixture
def make_config(idx_folder):
    return lambda preset="derpp", **overrides: tiny_config(idx_folder, preset, **overrides)


class Interrupt(Exception):
    """Stands in for a crash or Ctrl-C in the middle of a run."""


def run_until_interrupted(config, workdir, step, monkeypatch):
    """Runs `config` in `workdir` and stops it right after global step `step`."""
    from sparcl_tf.experiment import Experiment
    from sparcl_tf.session.loop import SessionLoop
    original = SessionLoop._after_step

    def stop(self, *args):
        original(self, *args)
        if self.progress.global_step == step:
            raise Interrupt()

    monkeypatch.setattr(SessionLoop, "_after_step", stop)
    with pytest.raises(Interrupt):
        Experiment(config, workdir, verbose=0).run()
    monkeypatch.setattr(SessionLoop, "_after_step", original)


def export_initial(config, directory):
    """What `tools.convert --state=initial` writes for `config`: the run's starting state as a
    training .tflite with signatures.json (session plan included); returns the model's path."""
    from sparcl_tf.experiment import Experiment
    from sparcl_tf.export import convert, training_module
    from sparcl_tf.export.files import write_model_files
    run = Experiment(config, os.path.join(str(directory), "initial_run"), verbose=0)
    module = training_module(config, run.network)
    model = convert(module, os.path.join(str(directory), "saved_model"))
    return write_model_files(model, module, run.plan, str(directory))[0]
