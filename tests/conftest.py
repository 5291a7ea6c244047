"""Shared fixtures: tiny generated data sets and configs that train in seconds."""

import gzip
import os
import struct
import subprocess

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
    module = training_module(config, run.network, run.kind)
    model = convert(module, os.path.join(str(directory), "saved_model"))
    return write_model_files(model, module, run.plan, str(directory))[0]


def assert_litert_step_equals_keras(model_bytes, network, method, batch, learning_rate,
                                    classes=(2, 3), seed=0, must_change=lambda variable: True,
                                    kind=None):
    """One `train` call of a training .tflite made from `network` (fresh state) against one
    Keras `ContinualModel` step from the same inputs: the loss within 1e-5 relative, every
    variable within 1e-5 of its largest value or of the step's largest update (a BatchNorm
    shift that the next BatchNorm cancels has a zero gradient, which both runtimes round to
    noise of their own), the trainable ones `must_change` picks changed, masked kernel entries
    exactly zero. `kind`: the run's sparsity kind (default fixed weight masks, gradients kept).
    Trains `network`."""
    import keras
    from ai_edge_litert.interpreter import Interpreter

    from sparcl_tf.sparsity.kind import WeightMasks
    from sparcl_tf.training.continual_model import ContinualModel
    from sparcl_tf.session.plan import state_name
    from sparcl_tf.layers import masked_layers
    rng = np.random.default_rng(seed)
    shape, num_classes = tuple(network.input_shape[1:]), int(network.output_shape[-1])
    draws = method.replay_draws
    inputs = dict(
        images=rng.normal(size=(batch,) + shape).astype(np.float32),
        labels=rng.choice(classes, batch).astype(np.int32),
        class_mask=np.isin(np.arange(num_classes), classes).astype(np.float32),
        replay_images=rng.normal(size=(draws, batch) + shape).astype(np.float32),
        replay_labels=rng.integers(0, min(classes), (draws, batch)).astype(np.int32),
        replay_logits=rng.normal(size=(draws, batch, num_classes)).astype(np.float32),
        replay_weight=np.float32(1.0), learning_rate=np.float32(learning_rate))
    interpreter = Interpreter(model_content=model_bytes)
    train = interpreter.get_signature_runner("train")
    if "refresh_gradient_masks" in train.get_input_details():  # DGM: the starting masks
        inputs["refresh_gradient_masks"] = np.float32(0.0)
    lite = train(**inputs)
    after = interpreter.get_signature_runner("get_state")(dummy=np.int32(0))
    trainer = ContinualModel(network, method, kind or WeightMasks(mask_rule="tdm"))
    trainer.compile(optimizer=keras.optimizers.SGD(learning_rate))
    before = {v.path: v.numpy() for v in network.variables}
    keras_loss = trainer.step(*(inputs[k] for k in (
        "images", "labels", "class_mask", "replay_images", "replay_labels", "replay_logits",
        "replay_weight")), refresh=False)["loss"].numpy()
    assert abs(lite["loss"] - keras_loss) <= 1e-5 * abs(keras_loss)
    largest_update = max(float(np.abs(v.numpy() - before[v.path]).max())
                         for v in network.trainable_variables)
    for variable in network.variables:
        value, reference = after[state_name(variable)], variable.numpy()
        scale = max(float(np.abs(reference).max()), largest_update)
        assert np.abs(value - reference).max() <= 1e-5 * scale, variable.path
        if variable.trainable and must_change(variable):
            assert not np.array_equal(reference, before[variable.path]), variable.path
    for layer in masked_layers(network):
        assert not np.any(after[state_name(layer.kernel)][~after[state_name(layer.mask)]])


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ANDROID = os.path.join(ROOT, "tflite", "android")
JARS = [os.path.join(ANDROID, "build", "sparcl-session.jar"), "/usr/share/java/jna.jar",
        "/usr/share/java/com.android.json.jar"]


@pytest.fixture(scope="module")
def session_build():
    """Compiles every Kotlin source (what .ci/run does first; a no-op when up to date)."""
    built = subprocess.run(["bash", os.path.join(ANDROID, "build.sh")], capture_output=True,
                           text=True)
    assert built.returncode == 0, built.stdout + built.stderr


def litert_library():
    import ai_edge_litert
    return os.path.join(os.path.dirname(ai_edge_litert.__file__), "libLiteRt.so")


def run_kotlin(model, data, state_dir, *flags):
    """The Kotlin session's desktop host (what tflite/android/session.sh runs) on `model`."""
    return subprocess.run(
        ["java", "-cp", ":".join(JARS), "dev.sparcl.ondevice.jvm.MainKt", f"--model={model}",
         f"--data={data}", f"--state_dir={state_dir}", f"--litert={litert_library()}", *flags],
        capture_output=True, text=True, timeout=600)


def assert_same_steps(python, kotlin_records):
    """Trace record for record: losses within 1e-5 relative, everything else exactly."""
    assert [(r["kind"], r["task"]) for r in kotlin_records] == [(r["kind"], r["task"])
                                                                 for r in python]
    for mine, theirs in zip(kotlin_records, python):
        if mine["kind"] == "step":
            assert mine["step"] == theirs["step"]
            assert mine["loss"] == pytest.approx(theirs["loss"], rel=1e-5)
        else:
            assert mine == theirs


def small_own_model():
    """A user's plain Keras model (two strided convs, a dense layer, logits), seeded."""
    import keras
    keras.utils.set_random_seed(0)
    inputs = keras.Input((28, 28, 1))
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu")(inputs)
    x = keras.layers.Conv2D(16, 3, strides=2, padding="same", activation="relu")(x)
    x = keras.layers.Dense(32, activation="relu")(keras.layers.Flatten()(x))
    return keras.Model(inputs, keras.layers.Dense(10)(x))
