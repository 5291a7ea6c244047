"""The bad-input table: every flag of every binary and host, every argument of every public
library call, the data-file fields and the board's state blob, each given something wrong.

A row is (surface, argument, input, expected one line, exit code or exception). Every row must
end in exactly that line (or exception), never an "unexpected" exit, and must leave every file it
could reach as it was (no folder made, no temporary left, no state changed; a learner's own state
included). `test_every_*_has_a_row` holds the table to the surfaces: a new flag or argument
without a row fails it.

The Python binaries' rows run in one process per binary (tests/binary_rows.py), the Kotlin hosts'
rows in one JVM per host (tflite/android's Rows), so the table costs seconds, not minutes."""

import collections
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT, export_initial, tiny_config

Row = collections.namedtuple("Row", "surface argument input expected code")


def _rows_by(rows, surface):
    return [row for row in rows if row.surface == surface]


def _id(row):
    return f"{row.surface}-{row.argument}-{'_'.join(map(str, row.input))[:60]}"


# A task-data file's fields, each spoiled: every host reads these files (tools.ondevice, the
# Kotlin session and app) and must refuse them alike, before any task trains.
# (field, file name, spoil, tools.ondevice's line, the Kotlin hosts' line)
DATA_FIELD_ROWS = [
    ("train_images_t", "nan_pixels", lambda a: a.update(train_images_0=_with_nan(
        a["train_images_0"])), "train_images_0 holds NaN or Inf",
     "data file task 0 training data: images hold NaN or Inf"),
    ("train_images_t", "image_shape", lambda a: a.update(train_images_1=a["train_images_1"][
        :, :27]), "train_images_1 has shape [40, 27, 28, 1]; the model takes [N, 28, 28, 1]",
     "train_images_1 has shape [40, 27, 28, 1]; the model takes [N, 28, 28, 1]"),
    ("train_labels_t", "labels_out", lambda a: a.update(train_labels_1=a["train_labels_1"] + 20),
     "train_labels_1 lie in [22, 23]; the model has classes 0..9",
     "data file task 1 training data: label 23 is outside the model's classes 0..9"),
    ("train_labels_t", "labels_float", lambda a: a.update(train_labels_0=a[
        "train_labels_0"].astype(np.float32)),
     "train_labels_0 must be 40 integer labels, got float32[40]",
     "data file task 0 training data: array of dtype <f4 where integers were expected"),
    ("train_labels_t", "labels_short", lambda a: a.update(train_labels_0=a[
        "train_labels_0"][:-1]), "train_labels_0 must be 40 integer labels, got int32[39]",
     "data file task 0 training data: 40 images, 39 labels and 39 ids do not match"),
    ("train_ids_t", "ids_negative", lambda a: a.update(train_ids_1=-1 - np.arange(len(a[
        "train_labels_1"]))), "task 1: example ids must lie in [0, 2^24)",
     "task 1 training data: example ids must lie in [0, 2^24)"),
    ("train_ids_t", "ids_repeated", lambda a: a.update(train_ids_1=np.zeros(len(a[
        "train_labels_1"]), np.int64)), "task 1: example ids repeat",
     "task 1 training data: example ids repeat within the task"),
    ("train_ids_t", "ids_huge", lambda a: a.update(train_ids_1=2 ** 31 - 1 - np.arange(len(a[
        "train_labels_1"]))), "task 1: example ids must lie in [0, 2^24)",
     "task 1 training data: example ids must lie in [0, 2^24)"),
    ("classes_t", "classes_out", lambda a: a.update(classes_0=np.array([0, 1, 12], np.int32)),
     "classes_0 lie in [0, 12]; the model has classes 0..9",
     "data file task 0: classes [0, 1, 12] must lie in 0..9"),
    ("test_images_t", "test_shape", lambda a: a.update(test_images_0=a["test_images_0"][
        ..., 0]), "test_images_0 has shape [30, 28, 28]; the model takes [N, 28, 28, 1]",
     "test_images_0 has shape [30, 28, 28]; the model takes [N, 28, 28, 1]"),
    ("test_labels_t", "test_labels_out", lambda a: a.update(test_labels_0=a["test_labels_0"] +
                                                             30),
     "test_labels_0 lie in [30, 31]; the model has classes 0..9",
     "data file task 0 test data: label 31 is outside the model's classes 0..9"),
    ("(unknown array)", "extra_array", lambda a: a.update(train_weights_0=np.ones(3)),
     "has arrays ['train_weights_0'] that are no task's",
     "has arrays [train_weights_0] that are no task's"),
    ("(no task)", "no_task", lambda a: [a.pop(k) for k in list(a)] and a.update(x=np.ones(2)),
     "holds no train_images_0: not a task-data file",
     "holds no train_images_0: not a task-data file"),
]


# --- the Python binaries ---------------------------------------------------------------------
# {idx}: a data folder; {run}: a run trained one task; {model}: an exported training .tflite with
# signatures.json; {data}: a task-data file for it; {files}: spoiled files made by `_spoiled`;
# {new}: a folder that does not exist (a row may not make it).

_TRAIN = ["--config=configs/split_fmnist.py:derpp", "--config.data.dir={idx}"]
_ONDEVICE = ["--model={model}", "--workdir={new}", "--data={data}"]
_MICRO = ["--config=configs/split_fmnist.py:micro", "--config.data.dir={idx}"]

BINARY_ROWS = [
    Row("tools.train", "config", ["--workdir={new}"], "--config is required (see --help)", 2),
    Row("tools.train", "config", ["--config={files}/none.py", "--workdir={new}"],
        "--config {files}/none.py cannot be used: no such file", 2),
    Row("tools.train", "config", ["--config={files}", "--workdir={new}"],
        "--config {files} cannot be used: it is a folder, not a file", 2),
    Row("tools.train", "config", ["--config={files}/syntax.py", "--workdir={new}"],
        "invalid syntax", 2),
    Row("tools.train", "config", ["--config={files}/no_get_config.py", "--workdir={new}"],
        "the --config file defines no get_config() function", 2),
    Row("tools.train", "config", ["--config={files}/returns_none.py", "--workdir={new}"],
        "the --config file's get_config() returned None; it must return a ConfigDict", 2),
    Row("tools.train", "config", ["--config=configs/split_fmnist.py:no_such", "--workdir={new}"],
        "preset 'no_such' is unknown", 2),
    Row("tools.train", "config", [*_TRAIN, "--config.replay.bufer_size=5", "--workdir={new}"],
        "unknown config field 'bufer_size' in a --config override", 2),
    Row("tools.train", "config", [*_TRAIN, "--config.seed=abc", "--workdir={new}"],
        "seed", 2),
    Row("tools.train", "config", [*_TRAIN, "--config.replay.buffer_size=-5", "--workdir={new}"],
        "replay.buffer_size=-5", 2),
    Row("tools.train", "config", [*_TRAIN, "--config.optimizer.learning_rate=inf",
                                  "--workdir={new}"], "optimizer.learning_rate=inf", 2),
    Row("tools.train", "config", ["--config=configs/split_fmnist.py:derpp",
                                  "--config.data.dir={new}", "--workdir={new}"],
        "data folder {new}", 2),
    Row("tools.train", "workdir", [*_TRAIN], "--workdir is required (see --help)", 2),
    Row("tools.train", "workdir", [*_TRAIN, "--workdir={files}/plain"],
        "{files}/plain cannot be used: it is a file, not a folder", 2),
    Row("tools.train", "workdir", [*_TRAIN, "--workdir={files}/plain/run"],
        "cannot be used", 2),
    Row("tools.train", "workdir", [*_TRAIN, "--workdir={run}", "--config.seed=7"],
        "holds a run with a different config", 2),
    Row("tools.train", "quiet", [*_TRAIN, "--workdir={new}", "--quiet=maybe"],
        "--quiet=maybe is invalid: must be true or false", 2),
    Row("tools.train", "verbose", [*_TRAIN, "--workdir={new}", "--verbose=maybe"],
        "--verbose=maybe is invalid: must be true or false", 2),
    Row("tools.train", "(unknown)", [*_TRAIN, "--workdir={new}", "--epochs=3"],
        "Unknown command line flag 'epochs'", 2),
    Row("tools.train", "(unknown)", [*_TRAIN, "--workdir={new}", "derpp"],
        "unknown argument 'derpp': every input is a --flag=value", 2),

    Row("tools.convert", "workdir", [], "--workdir is required (see --help)", 2),
    Row("tools.convert", "workdir", ["--workdir={new}"],
        "{new} holds no run (no config.json)", 2),
    Row("tools.convert", "workdir", ["--workdir={files}/plain"],
        "--workdir {files}/plain cannot be used: it is a file, not a folder", 2),
    Row("tools.convert", "workdir", ["--workdir={files}/no_checkpoint"],
        "has a config but no checkpoint", 2),
    Row("tools.convert", "workdir", ["--workdir={files}/torn_config"],
        "config.json is unreadable", 2),
    Row("tools.convert", "config", ["--workdir={run}", "--config={files}/none.py"],
        "--config {files}/none.py cannot be used: no such file", 2),
    Row("tools.convert", "config", ["--workdir={run}", "--config=configs/split_fmnist.py:derpp",
                                    "--config.data.dir={idx}", "--config.seed=7"],
        "--config is another config than the run in {run}", 2),
    Row("tools.convert", "state", ["--workdir={run}", "--state=latest"], "--state", 2),
    Row("tools.convert", "output_dir", ["--workdir={run}", "--output_dir={files}/plain"],
        "--output_dir {files}/plain cannot be used: it is a file, not a folder", 2),
    Row("tools.convert", "output_dir", ["--workdir={run}", "--output_dir={files}/plain/out"],
        "cannot be used", 2),
    Row("tools.convert", "flex", ["--workdir={run}", "--flex=maybe"],
        "--flex=maybe is invalid: must be true or false", 2),
    Row("tools.convert", "with_state", ["--workdir={run}", "--with_state=maybe"],
        "--with_state=maybe is invalid: must be true or false", 2),
    Row("tools.convert", "task_data", ["--workdir={run}", "--task_data=maybe"],
        "--task_data=maybe is invalid: must be true or false", 2),
    Row("tools.convert", "verbose", ["--workdir={run}", "--verbose=2"], "--verbose", 2),

    Row("tools.ondevice", "model", ["--workdir={new}", "--data={data}"],
        "--model is required (see --help)", 2),
    Row("tools.ondevice", "model", ["--model={files}/none.tflite", "--workdir={new}",
                                    "--data={data}"], "{files}/none.tflite", 2),
    Row("tools.ondevice", "model", ["--model={files}", "--workdir={new}", "--data={data}"],
        "cannot read model {files}: Is a directory", 2),
    Row("tools.ondevice", "model", ["--model={files}/garbage.tflite", "--workdir={new}",
                                    "--data={data}"], "not a readable .tflite", 2),
    Row("tools.ondevice", "model", ["--model={files}/cut/model.tflite", "--workdir={new}",
                                    "--data={data}"], "not a readable .tflite", 2),
    Row("tools.ondevice", "model", ["--model={files}/flipped/model.tflite", "--workdir={new}",
                                    "--data={data}"], "sha256", 2),
    Row("tools.ondevice", "model", ["--model={files}/unsigned/model.tflite", "--workdir={new}",
                                    "--data={data}"], "signatures.json", 2),
    Row("tools.ondevice", "config", [*_ONDEVICE, "--config={files}/none.py"],
        "--config {files}/none.py cannot be used: no such file", 2),
    Row("tools.ondevice", "config", [*_ONDEVICE, "--config=configs/split_fmnist.py:derpp",
                                     "--config.data.dir={idx}"],
        "--data trains the file's tasks under the model's own session plan and run config: "
        "drop --config", 2),
    Row("tools.ondevice", "config", ["--model={model}", "--workdir={new}",
                                     "--config=configs/split_fmnist.py:derpp",
                                     "--config.data.dir={idx}"], "{model} was converted", 2),
    Row("tools.ondevice", "workdir", ["--model={model}", "--data={data}"],
        "--workdir is required (see --help)", 2),
    Row("tools.ondevice", "workdir", ["--model={model}", "--data={data}",
                                      "--workdir={files}/plain"],
        "--workdir {files}/plain cannot be used: it is a file, not a folder", 2),
    Row("tools.ondevice", "data", ["--model={model}", "--workdir={new}",
                                   "--data={files}/none.npz"], "{files}/none.npz", 2),
    Row("tools.ondevice", "data", ["--model={model}", "--workdir={new}",
                                   "--data={files}/garbage.tflite"],
        "cannot read task data {files}/garbage.tflite: not an .npz file", 2),
    *(Row("tools.ondevice", "data", ["--model={model}", "--workdir={new}",
                                     f"--data={{files}}/{name}.npz"], python, 2)
      for _, name, _, python, _ in DATA_FIELD_ROWS),
    Row("tools.ondevice", "data", ["--model={model}", "--workdir={new}",
                                   "--data={files}/empty_folder"], "no task_1", 2),
    Row("tools.ondevice", "quiet", [*_ONDEVICE, "--quiet=maybe"],
        "--quiet=maybe is invalid: must be true or false", 2),
    Row("tools.ondevice", "threads", [*_ONDEVICE, "--threads=0"],
        "--threads must be 1 to 64, got 0", 2),
    Row("tools.ondevice", "threads", [*_ONDEVICE, "--threads=many"], "--threads", 2),
    Row("tools.ondevice", "trace", [*_ONDEVICE, "--trace={files}"],
        "--trace {files} cannot be used: it is a folder, not a file", 2),
    Row("tools.ondevice", "trace", [*_ONDEVICE, "--trace={files}/plain/trace.jsonl"],
        "--trace's folder {files}/plain cannot be used: it is a file, not a folder", 2),
    Row("tools.ondevice", "verbose", [*_ONDEVICE, "--verbose=maybe"],
        "--verbose=maybe is invalid: must be true or false", 2),

    Row("tools.micro", "config", ["--workdir={new}"], "--config is required (see --help)", 2),
    Row("tools.micro", "config", [*_MICRO, "--config.micro.hidden_units=0", "--workdir={new}"],
        "micro.hidden_units=0 is invalid: must be an integer >= 1", 2),
    Row("tools.micro", "config", [*_MICRO, "--config.micro.memory_budget_bytes=20000",
                                  "--workdir={new}"], "micro.memory_budget_bytes=20000", 2),
    Row("tools.micro", "config", [*_MICRO, "--config.model.name=mlp", "--workdir={new}"],
        "supports model.name", 2),
    Row("tools.micro", "workdir", [*_MICRO], "--workdir is required (see --help)", 2),
    Row("tools.micro", "workdir", [*_MICRO, "--workdir={files}/plain"],
        "--workdir {files}/plain cannot be used: it is a file, not a folder", 2),
    Row("tools.micro", "quiet", [*_MICRO, "--workdir={new}", "--quiet=maybe"],
        "--quiet=maybe is invalid: must be true or false", 2),
    Row("tools.micro", "verbose", [*_MICRO, "--workdir={new}", "--verbose=maybe"],
        "--verbose=maybe is invalid: must be true or false", 2),

    Row("tools.benchmark", "workdir", [], "--workdir is required (see --help)", 2),
    Row("tools.benchmark", "workdir", ["--workdir={files}/plain"],
        "--workdir {files}/plain cannot be used: it is a file, not a folder", 2),
    Row("tools.benchmark", "mode", ["--workdir={new}", "--mode=huge"], "--mode", 2),
    Row("tools.benchmark", "config_file", ["--workdir={new}", "--config_file={files}/none.py"],
        "{files}/none.py", 2),
    Row("tools.benchmark", "config_file", ["--workdir={new}",
                                           "--config_file={files}/no_get_config.py"],
        "defines no get_config() function", 2),
    Row("tools.benchmark", "presets", ["--workdir={new}", "--presets=sparcl_derpp_90"],
        "--presets must include derpp", 2),
    Row("tools.benchmark", "presets", ["--workdir={new}", "--presets=derpp,no_such"],
        "preset 'no_such' is unknown", 2),
    Row("tools.benchmark", "override", ["--workdir={new}", "--override=replay.bufer_size=5"],
        "unknown config field 'replay.bufer_size'", 2),
    Row("tools.benchmark", "override", ["--workdir={new}", "--override=seed=abc"], "seed", 2),
    Row("tools.benchmark", "override", ["--workdir={new}", "--override=replay.buffer_size=-5"],
        "replay.buffer_size=-5", 2),
    Row("tools.benchmark", "seeds", ["--workdir={new}", "--seeds=0,x"],
        "--seeds=0,x is invalid: must be integers", 2),
    Row("tools.benchmark", "seeds", ["--workdir={new}", "--seeds=1,1"],
        "--seeds=1,1 is invalid: must be distinct integers", 2),
    Row("tools.benchmark", "step_repeats", ["--workdir={new}", "--step_repeats=-1"],
        "--step_repeats", 2),
    Row("tools.benchmark", "litert_presets", ["--workdir={new}", "--litert_presets=no_such"],
        "preset 'no_such' is unknown", 2),
    Row("tools.benchmark", "litert_steps", ["--workdir={new}", "--litert_steps=0"],
        "--litert_steps", 2),
    Row("tools.benchmark", "session_repeats", ["--workdir={new}", "--session_repeats=0"],
        "--session_repeats", 2),
    Row("tools.benchmark", "sessions_only", ["--workdir={new}", "--sessions_only",
                                             "--ops_only"], "only one of", 2),
    Row("tools.benchmark", "litert_only", ["--workdir={new}", "--litert_only=maybe"],
        "--litert_only=maybe is invalid: must be true or false", 2),
    Row("tools.benchmark", "distribute_only", ["--workdir={new}", "--distribute_only",
                                               "--litert_only"], "only one of", 2),
    Row("tools.benchmark", "ops_only", ["--workdir={new}", "--ops_only=maybe"],
        "--ops_only=maybe is invalid: must be true or false", 2),
    Row("tools.benchmark", "verbose", ["--workdir={new}", "--verbose=maybe"],
        "--verbose=maybe is invalid: must be true or false", 2),

    Row("tools.task_images", "data", ["--out={new}"], "--data is required (see --help)", 2),
    Row("tools.task_images", "data", ["--data={files}/none.npz", "--out={new}"],
        "{files}/none.npz", 2),
    Row("tools.task_images", "data", ["--data={files}/nan_pixels.npz", "--out={new}"],
        "train_images_0 are float32 pixels, not uint8", 2),
    Row("tools.task_images", "out", ["--data={data}"], "--out is required (see --help)", 2),
    Row("tools.task_images", "out", ["--data={data}", "--out={files}/plain"],
        "{files}/plain cannot be used: it is a file, not a folder", 2),
    Row("tools.task_images", "out", ["--data={data}", "--out={files}"],
        "{files} exists and is not an empty folder", 2),
    Row("tools.task_images", "verbose", ["--data={data}", "--out={new}", "--verbose=maybe"],
        "--verbose=maybe is invalid: must be true or false", 2),
]


def _spoiled(files, model, data):
    """The bad files the rows name, in `files`."""
    files.mkdir()
    (files / "plain").write_text("a file where a folder belongs")
    (files / "syntax.py").write_text("def get_config(:\n")
    (files / "no_get_config.py").write_text("x = 1\n")
    (files / "returns_none.py").write_text("def get_config(preset=None):\n    return None\n")
    (files / "garbage.tflite").write_bytes(b"garbage" * 10)
    (files / "empty_folder").mkdir()
    model_bytes = open(model, "rb").read()
    for name, content in (("cut", model_bytes[:len(model_bytes) // 2]),
                          ("flipped", _flipped(model_bytes)), ("unsigned", model_bytes)):
        (files / name).mkdir()
        (files / name / "model.tflite").write_bytes(content)
        if name != "unsigned":
            shutil.copy(os.path.join(os.path.dirname(model), "signatures.json"), files / name)
    with np.load(data) as archive:
        arrays = dict(archive)
    for _, name, spoil, _, _ in DATA_FIELD_ROWS:
        spoiled = dict(arrays)
        spoil(spoiled)
        np.savez(files / f"{name}.npz", **spoiled)
    run = files / "no_checkpoint"
    run.mkdir()
    torn = files / "torn_config"
    torn.mkdir()
    (torn / "config.json").write_text("{ torn")


def _with_nan(images):
    spoiled = images.astype(np.float32)
    spoiled[0, 0, 0, 0] = np.nan
    return spoiled


def _flipped(model_bytes):
    """The model with a byte in its middle (weights) changed: only the checksum can tell."""
    spoiled = bytearray(model_bytes)
    spoiled[len(spoiled) // 2] ^= 0xFF
    return bytes(spoiled)


@pytest.fixture(scope="module")
def sandbox(idx_folder, tmp_path_factory):
    from sparcl_tf.experiment import Experiment
    from test_policy import write_unseen_tasks
    root = tmp_path_factory.mktemp("bad_inputs")
    config = tiny_config(idx_folder, "derpp", data__num_tasks=2, log__tensorboard=False,
                         checkpoint__keep=1)
    Experiment(config, str(root / "run"), verbose=0).run(stop_after_task=0)
    model = export_initial(tiny_config(idx_folder, "sparcl_derpp_90", data__num_tasks=2,
                                       log__tensorboard=False), root / "model")
    data = write_unseen_tasks(root / "tasks.npz", sizes=(40, 40))
    _spoiled(root / "files", model, data)
    shutil.copy(os.path.join(root, "run", "config.json"), root / "files" / "no_checkpoint")
    return dict(root=str(root), idx=idx_folder, run=str(root / "run"), model=model, data=data,
                files=str(root / "files"), new=str(root / "new"))


def _fill(text, places):
    return text.format(**places)


@pytest.fixture(scope="module")
def binary_outcomes(sandbox, tmp_path_factory):
    """binary -> (its flags, [outcome per row]); each binary's rows run in one process, when a
    test first asks for them."""
    outcomes = {}

    def outcome(binary):
        if binary not in outcomes:
            rows = [[_fill(a, sandbox) for a in row.input]
                    for row in _rows_by(BINARY_ROWS, binary)]
            rows_file = tmp_path_factory.mktemp("rows") / "rows.json"
            rows_file.write_text(json.dumps(rows))
            temporary = tmp_path_factory.mktemp("temporary")  # watched: other tests' not in it
            package = os.path.isdir(os.path.join(ROOT, *binary.split(".")))
            ran = subprocess.run([sys.executable, "tests/binary_rows.py",
                                  f"{binary}.__main__" if package else binary,
                                  str(rows_file), sandbox["root"]], cwd=ROOT,
                                 capture_output=True, text=True, timeout=600,
                                 env=dict(os.environ, PYTHONPATH=ROOT, TMPDIR=str(temporary)))
            assert ran.returncode == 0, ran.stderr[-3000:]
            lines = [json.loads(line) for line in ran.stdout.splitlines()
                     if line.startswith(("{", "["))]
            outcomes[binary] = (lines[0], lines[1:])
        return outcomes[binary]
    return outcome


@pytest.mark.parametrize("row", BINARY_ROWS, ids=_id)
def test_a_binary_given_a_bad_flag_says_so_in_one_line_and_changes_nothing(row, binary_outcomes,
                                                                          sandbox):
    index = _rows_by(BINARY_ROWS, row.surface).index(row)
    outcome = binary_outcomes(row.surface)[1][index]
    expected = _fill(row.expected, sandbox)
    lines = outcome["stderr"].splitlines()
    assert outcome["code"] == row.code and len(lines) == 1, outcome
    assert lines[0].startswith("error: ") and expected in lines[0], outcome
    assert "unexpected" not in lines[0]
    assert outcome["changed"] == [], outcome


def test_every_flag_of_every_binary_has_a_row(binary_outcomes):
    tools = os.path.join(ROOT, "tools")
    binaries = {f"tools.{name[:-3]}" for name in os.listdir(tools) if name.endswith(".py")
                and name not in ("__init__.py", "cli.py", "policy_golden.py")} | {
        f"tools.{name}" for name in os.listdir(tools)
        if os.path.exists(os.path.join(tools, name, "__main__.py"))}
    assert binaries == {row.surface for row in BINARY_ROWS}
    for binary in binaries:
        flags, _ = binary_outcomes(binary)
        covered = {row.argument for row in _rows_by(BINARY_ROWS, binary)}
        assert set(flags) <= covered, (binary, set(flags) - covered)


# --- the library ------------------------------------------------------------------------------
# A row's input is a call on `c` (`_Library`): c.model() a fresh user model, c.learner a learner
# that trained one task, c.device a DeviceLearner that learned one task, c.x / c.y a task,
# c.xt / c.yt its test set, c.files the spoiled files.

def _subclassed():
    import keras

    class Subclassed(keras.Model):  # its call is code: nothing to clone with masks
        def __init__(self):
            super().__init__()
            self.logits = keras.layers.Dense(10)

        def call(self, images):
            return self.logits(keras.ops.reshape(images, (-1, 784)))

    model = Subclassed()
    model(np.zeros((1, 28, 28, 1), np.float32))
    return model


def _softmax_model():
    import keras
    return keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(),
                             keras.layers.Dense(10, activation="softmax")])


def _learner(c, **arguments):
    from sparcl_tf.keras import ContinualLearner
    return ContinualLearner(arguments.pop("model", None) or c.model(), **{"verbose": 0,
                                                                           **arguments})


def _sparcl(**fields):
    from sparcl_tf.keras import SparCL
    return SparCL(**fields)


def _method(name, **arguments):
    import sparcl_tf.keras
    return getattr(sparcl_tf.keras, name)(**arguments)


_CL = "ContinualLearner"
LIBRARY_ROWS = [
    Row(_CL, "model", lambda c: _learner(c, model="model.keras"),
        "ContinualLearner needs a Keras model, got str", ValueError),
    Row(_CL, "model", lambda c: _learner(c, model=_softmax_model()), "softmax", ValueError),
    Row(_CL, "model", lambda c: _learner(c, model=_subclassed()),
        "ContinualLearner needs a functional or Sequential Keras model; .* is a subclassed "
        "Subclassed", ValueError),
    Row(_CL, "method", lambda c: _learner(c, method="derpp"),
        "method must be a sparcl_tf.keras method object", ValueError),
    Row(_CL, "buffer_size", lambda c: _learner(c, buffer_size=0), "buffer_size=0", ValueError),
    Row(_CL, "buffer_size", lambda c: _learner(c, buffer_size="500"), "buffer_size='500'",
        ValueError),
    Row(_CL, "buffer_size", lambda c: _learner(c, buffer_size=2 ** 40), "GiB", ValueError),
    Row(_CL, "sparcl", lambda c: _learner(c, sparcl=0.9),
        r"sparcl must be a SparCL\(\.\.\.\) or None", ValueError),
    Row(_CL, "sparcl", lambda c: _learner(c, sparcl=_sparcl(structured=True)),
        "registry model", ValueError),
    Row(_CL, "epochs_per_task", lambda c: _learner(c, epochs_per_task=0), "epochs_per_task=0",
        ValueError),
    Row(_CL, "epochs_per_task", lambda c: _learner(c, epochs_per_task=1.5),
        "epochs_per_task=1.5", ValueError),
    Row(_CL, "batch_size", lambda c: _learner(c, batch_size=0), "batch_size=0", ValueError),
    Row(_CL, "replay_batch_size", lambda c: _learner(c, replay_batch_size=-1),
        "batch_size=-1", ValueError),
    Row(_CL, "learning_rate", lambda c: _learner(c, learning_rate=-1.0),
        "learning_rate=-1.0", ValueError),
    Row(_CL, "learning_rate", lambda c: _learner(c, learning_rate=float("nan")),
        "learning_rate=nan", ValueError),
    Row(_CL, "momentum", lambda c: _learner(c, momentum=1.5), "momentum=1.5", ValueError),
    Row(_CL, "learning_rate_schedule", lambda c: _learner(c, learning_rate_schedule="linear"),
        "'linear'", ValueError),
    Row(_CL, "learning_rate_schedule", lambda c: _learner(
        c, learning_rate_schedule={"schedule": "step", "decay": 2}),
        "learning_rate_schedule=.* is invalid", ValueError),
    Row(_CL, "augment", lambda c: _learner(c, augment="rotate"), "'rotate'", ValueError),
    Row(_CL, "normalization", lambda c: _learner(c, normalization=([0.1, 0.2], [1.0, 1.0])),
        r"normalization must be finite .* \(1\)", ValueError),
    Row(_CL, "normalization", lambda c: _learner(c, normalization=(0.5, 0.0)),
        "std > 0", ValueError),
    Row(_CL, "seed", lambda c: _learner(c, seed=-1), "seed=-1", ValueError),
    Row(_CL, "seed", lambda c: _learner(c, seed=2 ** 32), "seed=4294967296", ValueError),
    Row(_CL, "workdir", lambda c: _learner(c, workdir=f"{c.files}/plain"),
        "it is a file, not a folder", ValueError),
    Row(_CL, "verbose", lambda c: _learner(c, verbose="loud"), "verbose='loud'", ValueError),
    Row(_CL, "strategy", lambda c: _learner(c, strategy="mirrored"),
        "strategy must be a MirroredStrategy", ValueError),

    Row(f"{_CL}.fit_task", "x", lambda c: c.learner.fit_task(c.x[..., 0], c.y), "do not fit",
        ValueError),
    Row(f"{_CL}.fit_task", "x", lambda c: c.learner.fit_task(c.x * np.float32(np.nan), c.y),
        "NaN", ValueError),
    Row(f"{_CL}.fit_task", "x", lambda c: c.learner.fit_task(c.x.astype(np.int32), c.y),
        "uint8 or float", ValueError),
    Row(f"{_CL}.fit_task", "x", lambda c: c.learner.fit_task(c.x[:3], c.y[:3]),
        "fewer than batch_size", ValueError),
    Row(f"{_CL}.fit_task", "y", lambda c: c.learner.fit_task(c.x, c.y + 10), r"\[0, 10\)",
        ValueError),
    Row(f"{_CL}.fit_task", "y", lambda c: c.learner.fit_task(c.x, c.y.astype(np.float32)),
        "integers", ValueError),
    Row(f"{_CL}.fit_task", "y", lambda c: c.learner.fit_task(c.x, c.y[:-1]), "labels",
        ValueError),
    Row(f"{_CL}.fit_task", "y", lambda c: c.learner.fit_task(c.x), "labels", ValueError),
    Row(f"{_CL}.fit_task", "test_data", lambda c: c.learner.fit_task(
        c.x, c.y, test_data=(c.xt[..., 0], c.yt)), "test_data.*do not fit", ValueError),
    Row(f"{_CL}.fit_task", "test_data", lambda c: c.learner.fit_task(
        c.x, c.y, test_data=(c.xt,)), r"test_data must be \(images, labels\)", ValueError),
    Row(f"{_CL}.fit_task", "test_data", lambda c: c.learner.fit_task(
        c.x, c.y, test_data=(c.xt, c.yt + 10)), r"test_data.*\[0, 10\)", ValueError),
    Row(f"{_CL}.fit_task", "classes", lambda c: c.learner.fit_task(c.x, c.y, classes=[0]),
        "outside classes", ValueError),
    Row(f"{_CL}.fit_task", "classes", lambda c: c.learner.fit_task(c.x, c.y, classes=[99]),
        "classes", ValueError),
    Row(f"{_CL}.fit_task", "callbacks", lambda c: c.learner.fit_task(c.x, c.y,
                                                                     callbacks="print"),
        "callbacks", ValueError),
    Row(f"{_CL}.evaluate", "x", lambda c: c.learner.evaluate(c.xt[..., 0], c.yt), "do not fit",
        ValueError),
    Row(f"{_CL}.evaluate", "y", lambda c: c.learner.evaluate(c.xt, c.yt + 10), r"\[0, 10\)",
        ValueError),
    Row(f"{_CL}.evaluate", "classes", lambda c: c.learner.evaluate(c.xt, c.yt, classes=[0]),
        "outside classes", ValueError),
    Row(f"{_CL}.export", "output_dir", lambda c: c.learner.export(f"{c.files}/plain"),
        "it is a file, not a folder", ValueError),
    Row(f"{_CL}.export", "flex", lambda c: c.learner.export(f"{c.files}/never", flex="yes"),
        "flex", ValueError),
    Row(f"{_CL}.export", "with_state", lambda c: c.learner.export(f"{c.files}/never",
                                                                  with_state="yes"),
        "with_state", ValueError),
    Row(f"{_CL}.load_device_state", "state_dir",
        lambda c: _learner(c).load_device_state(f"{c.files}/none"), "none", ValueError),
    Row(f"{_CL}.run_planned", "stop_after_task", lambda c: c.learner.run_planned(
        stop_after_task=-1), "stop_after_task", ValueError),
    Row(f"{_CL}.run_planned", "callbacks", lambda c: c.learner.run_planned(callbacks="print"),
        "callbacks", ValueError),

    Row("SparCL", "weight_sparsity", lambda c: _learner(c, sparcl=_sparcl(weight_sparsity=1.5)),
        "weight_sparsity=1.5", ValueError),
    Row("SparCL", "gradient_sparsity", lambda c: _learner(
        c, sparcl=_sparcl(gradient_sparsity=-0.1)), "gradient_sparsity=-0.1", ValueError),
    Row("SparCL", "gradient_sparsity", lambda c: _sparcl(gradient_sparsity="auto"),
        "gradient_sparsity='auto' is invalid: must be a number, 'paired' or None", ValueError),
    Row("SparCL", "removal", lambda c: _learner(c, sparcl=_sparcl(removal=1.0)),
        "total_fraction=1.0", ValueError),
    Row("SparCL", "updates_per_task", lambda c: _learner(c, sparcl=_sparcl(updates_per_task=0)),
        "updates_per_task=0", ValueError),
    Row("SparCL", "refresh_every", lambda c: _learner(c, sparcl=_sparcl(refresh_every=0)),
        "refresh_every=0", ValueError),
    Row("SparCL", "removal_stages", lambda c: _learner(c, sparcl=_sparcl(removal_stages=2.5)),
        "stages=2.5", ValueError),
    Row("SparCL", "structured", lambda c: _sparcl(structured="yes"), "structured='yes'",
        ValueError),
    Row("SparCL", "rate_scaling", lambda c: _learner(c, sparcl=_sparcl(rate_scaling="fast")),
        "rate_scaling='fast'", ValueError),
    Row("SparCL", "distribution", lambda c: _learner(c, sparcl=_sparcl(distribution="normal")),
        "distribution='normal'", ValueError),
    Row("SparCL", "gradient_min_epochs", lambda c: _learner(
        c, sparcl=_sparcl(gradient_min_epochs=-1)), "min_epochs=-1", ValueError),
    Row("SparCL", "removal_min_task_steps", lambda c: _learner(
        c, sparcl=_sparcl(removal_min_task_steps=-1)), "min_task_steps=-1", ValueError),
    *(Row(name, argument, lambda c, name=name, argument=argument, value=value: _method(
        name, **{argument: value}), f"{argument}={value!r}", ValueError)
      for name in ("DERPP", "DER", "ER", "Finetune", "Joint")
      for argument, value in (("cl_mask", "yes"), ("alpha", -1.0), ("beta", float("nan")),
                              ("shared_draw", "yes"), ("masked_logits", "soft"))),
    *(Row(name, "shared_draw", lambda c, name=name: _method(name, shared_draw=True),
          "shared_draw=True is invalid", ValueError) for name in ("DER", "ER", "Finetune")),

    Row("sparsify", "model", lambda c: _sparsify("model.keras"), "Keras model, got str",
        ValueError),
    Row("sparsify", "model", lambda c: _sparsify(_subclassed()),
        "sparsify needs a functional or Sequential Keras model; .* is a subclassed Subclassed",
        ValueError),
    Row("sparsify", "weight_sparsity", lambda c: _sparsify(c.model(), weight_sparsity=1.5),
        r"weight_sparsity of .* must be in \[0, 1\), got 1.5", ValueError),
    Row("sparsify", "layers", lambda c: _sparsify(c.model(), layers=["nope"]), "nope",
        ValueError),
    Row("sparsify", "keep_dense", lambda c: _sparsify(c.model(), keep_dense=["nope"]), "nope",
        ValueError),
    Row("strip", "model", lambda c: _strip("model.keras"), "Keras model, got str", ValueError),

    Row("DeviceLearner", "model_path", lambda c: _device(f"{c.files}/none.tflite", c),
        "none.tflite", ValueError),
    Row("DeviceLearner", "model_path", lambda c: _device(f"{c.files}/garbage.tflite", c),
        "no session plan beside", ValueError),
    Row("DeviceLearner", "model_path", lambda c: _device(f"{c.files}/cut/model.tflite", c),
        "truncated or corrupt", ValueError),
    Row("DeviceLearner", "model_path", lambda c: _device(f"{c.files}/flipped/model.tflite", c),
        "model_sha256", ValueError),
    Row("DeviceLearner", "state_dir", lambda c: _device(c.model_path, c,
                                                        state_dir=f"{c.files}/plain"),
        "it is a file, not a folder", ValueError),
    Row("DeviceLearner", "threads", lambda c: _device(c.model_path, c, threads=0), "threads",
        ValueError),
    Row("DeviceLearner", "verbose", lambda c: _device(c.model_path, c, verbose="loud"),
        "verbose='loud'", ValueError),
    Row("DeviceLearner", "trace", lambda c: _device(c.model_path, c, trace="trace.jsonl"),
        "trace", ValueError),
    Row("DeviceLearner.fit_task", "x", lambda c: c.device.fit_task(c.x[..., 0], c.y),
        "do not fit", ValueError),
    Row("DeviceLearner.fit_task", "y", lambda c: c.device.fit_task(c.x, c.y + 10),
        r"\[0, 10\)", ValueError),
    Row("DeviceLearner.fit_task", "classes", lambda c: c.device.fit_task(c.x, c.y, classes=[0]),
        "outside classes", ValueError),
    Row("DeviceLearner.fit_task", "test_data", lambda c: c.device.fit_task(
        c.x, c.y, test_data=(c.xt, c.yt + 10)), r"\[0, 10\)", ValueError),
    Row("DeviceLearner.fit_task", "cancelled", lambda c: c.device.fit_task(
        c.x, c.y, cancelled="soon"), "cancelled", ValueError),
    Row("DeviceLearner.predict", "x", lambda c: c.device.predict(c.xt[..., 0]), "do not fit",
        ValueError),
    Row("DeviceLearner.evaluate", "x", lambda c: c.device.evaluate(c.xt[..., 0], c.yt),
        "do not fit", ValueError),
    Row("DeviceLearner.evaluate", "y", lambda c: c.device.evaluate(c.xt, c.yt + 10),
        r"\[0, 10\)", ValueError),
    Row("DeviceLearner.evaluate", "classes", lambda c: c.device.evaluate(c.xt, c.yt,
                                                                         classes=[0]),
        "outside classes", ValueError),
]


def _sparsify(model, **arguments):
    from sparcl_tf.keras import sparsify
    return sparsify(model, **arguments)


def _strip(model):
    from sparcl_tf.keras import strip
    return strip(model)


def _device(model_path, c, state_dir=None, **arguments):
    from sparcl_tf.ondevice import DeviceLearner
    return DeviceLearner(model_path, state_dir or f"{c.files}/device_never", **arguments)


class _Library:
    """What the library rows call on: a learner and a device learner that learned one task."""

    def __init__(self, sandbox):
        from conftest import small_own_model
        from sparcl_tf.keras import ContinualLearner
        from sparcl_tf.ondevice import DeviceLearner
        self.files, self.model = sandbox["files"], small_own_model
        with np.load(sandbox["data"]) as arrays:
            self.x, self.y = arrays["train_images_0"], arrays["train_labels_0"].astype(np.int64)
            self.xt, self.yt = arrays["test_images_0"], arrays["test_labels_0"].astype(np.int64)
        self.learner = ContinualLearner(small_own_model(), buffer_size=40, batch_size=16,
                                        verbose=0)
        self.learner.fit_task(self.x, self.y, test_data=(self.xt, self.yt))
        self.model_path = sandbox["model"]
        self.device = DeviceLearner(self.model_path, os.path.join(sandbox["root"], "device"))
        self.device.fit_task(self.x, self.y, test_data=(self.xt, self.yt))

    def state(self):
        """Everything a bad call could change: both learners' weights, progress and results
        (but the keys that measure the machine: the process's peak memory grows with any call)."""
        from sparcl_tf.reporting.results import MACHINE_DEPENDENT

        def run_fields(results):
            return json.dumps({k: v for k, v in results.items() if k not in MACHINE_DEPENDENT})
        weights = [v.numpy().tobytes() for v in self.learner.network.variables]
        return (weights, repr(self.learner.progress), run_fields(self.learner.results()),
                run_fields(self.device.results()), repr(self.device.progress))


@pytest.fixture(scope="module")
def library(sandbox):
    library = _Library(sandbox)
    yield library
    library.device.close()


@pytest.mark.parametrize("row", LIBRARY_ROWS, ids=lambda row: f"{row.surface}-{row.argument}")
def test_a_library_call_given_a_bad_argument_raises_one_error_and_changes_nothing(
        row, library, sandbox, tmp_path, monkeypatch):
    import re
    import tempfile
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # watched: other tests' not in it
    before_files = _tree(sandbox["root"])
    before = library.state()
    with pytest.raises(row.code) as raised:
        row.input(library)
    assert re.search(row.expected, str(raised.value)), str(raised.value)
    assert "\n" not in str(raised.value)
    assert library.state() == before
    assert _tree(sandbox["root"]) == before_files


def _tree(root):
    sys.path.insert(0, os.path.dirname(__file__))
    from binary_rows import snapshot
    return {path: digest for path, digest in snapshot(root).items()
            if "/device/" not in path or "litert" not in path}


def test_the_learners_train_on_after_every_bad_call(library):
    """Run last in the file: a good call after the table's bad ones trains as usual."""
    steps = library.learner.progress.global_step
    assert library.learner.fit_task(library.x, library.y + 2)["steps"] > steps
    assert library.device.fit_task(library.x, library.y + 2)["steps"] > 0


def _public_arguments():
    """(surface, argument) of every public library call a user makes."""
    import inspect

    import sparcl_tf.keras
    from sparcl_tf.ondevice import DeviceLearner
    calls = {_CL: sparcl_tf.keras.ContinualLearner, "DeviceLearner": DeviceLearner,
             **{name: getattr(sparcl_tf.keras, name) for name in (
                 "SparCL", "DERPP", "DER", "ER", "Finetune", "Joint", "sparsify", "strip")}}
    for owner, cls in ((_CL, sparcl_tf.keras.ContinualLearner), ("DeviceLearner",
                                                                  DeviceLearner)):
        calls.update({f"{owner}.{name}": getattr(cls, name) for name in dir(cls)
                      if not name.startswith("_") and callable(getattr(cls, name))
                      and name != "from_config"})  # the binaries' path: their config rows
    for surface, call in calls.items():
        for name in inspect.signature(call).parameters:
            if name not in ("self", "cls"):
                yield surface, name


def test_every_argument_of_every_public_call_has_a_row():
    covered = {(row.surface, row.argument) for row in LIBRARY_ROWS}
    assert set(_public_arguments()) - covered == set()


# --- the Kotlin hosts -------------------------------------------------------------------------
# The session host (tflite/android/session.sh) and the app (app_example.sh), same flags but the
# app's --cancel_after_step; {litert}: libLiteRt.so.

def _kotlin_rows(host):
    base = ["--model={model}", "--data={data}", "--state_dir={new}", "--litert={litert}"]

    def without(flag, *extra):
        return [a for a in base if not a.startswith(f"--{flag}=")] + list(extra)
    rows = [
        ("model", without("model"), "--model is required"),
        ("model", without("model", "--model={files}/none.tflite"),
         "no signatures.json beside {files}/none.tflite"),
        ("model", without("model", "--model={files}/cut/model.tflite"),
         "{files}/cut/model.tflite is truncated or corrupt"),
        ("model", without("model", "--model={files}/flipped/model.tflite"),
         "does not match the model_sha256"),
        ("data", without("data"), "--data is required"),
        ("data", without("data", "--data={files}/none.npz"),
         "cannot read data file {files}/none.npz: no such file"),
        ("data", without("data", "--data={files}/garbage.tflite"), "cannot read data file"),
        ("data", without("data", "--data={files}/empty_folder"), "task_1"),
        *(("data", without("data", f"--data={{files}}/{name}.npz"), kotlin)
          for _, name, _, _, kotlin in DATA_FIELD_ROWS),
        ("state_dir", without("state_dir"), "--state_dir is required"),
        ("state_dir", without("state_dir", "--state_dir={files}/plain"),
         "{files}/plain cannot be used: it is a file, not a folder"),
        ("litert", without("litert", "--litert={files}/none.so"), "{files}/none.so"),
        ("litert", without("litert", "--litert={files}/garbage.tflite"), "garbage.tflite"),
        ("checkpoint_every", base + ["--checkpoint_every=soon"],
         "--checkpoint_every must be an integer >= 0, got 'soon'"),
        ("trace", base + ["--trace={files}"],
         "--trace {files} cannot be used: it is a folder, not a file"),
        ("trace", base + ["--trace={files}/plain/trace.jsonl"], "{files}/plain"),
        ("halt_after_step", base + ["--halt_after_step=-3"],
         "--halt_after_step must be an integer >= 0, got '-3'"),
        ("(unknown)", base + ["--epochs=3"], "unknown flags [epochs]"),
        ("(unknown)", base + ["model.tflite"], "unknown argument 'model.tflite'"),
    ]
    if host == "kotlin app":
        rows.append(("cancel_after_step", base + ["--cancel_after_step=soon"],
                     "--cancel_after_step must be an integer >= 0, got 'soon'"))
    return [Row(host, argument, arguments, expected, 2) for argument, arguments, expected in rows]


KOTLIN_ROWS = _kotlin_rows("kotlin session") + _kotlin_rows("kotlin app")


@pytest.fixture(scope="module")
def kotlin_outcomes(sandbox, session_build, tmp_path_factory):
    """host -> (its flags, [outcome per row]), each host's rows run in one JVM."""
    from conftest import JARS, litert_library
    places = dict(sandbox, litert=litert_library())
    outcomes = {}
    for host, name in (("kotlin session", "session"), ("kotlin app", "app")):
        rows_file = tmp_path_factory.mktemp("kotlin_rows") / "rows.json"
        rows_file.write_text(json.dumps([[_fill(a, places) for a in row.input]
                                         for row in _rows_by(KOTLIN_ROWS, host)]))
        ran = subprocess.run(["java", "-cp", ":".join(JARS), "dev.sparcl.ondevice.jvm.RowsKt",
                              name, str(rows_file), sandbox["root"]], capture_output=True,
                             text=True, timeout=600)
        assert ran.returncode == 0, ran.stderr[-3000:]
        lines = [json.loads(line) for line in ran.stdout.splitlines()]
        outcomes[host] = (lines[0], lines[1:])
    return outcomes


@pytest.mark.parametrize("row", KOTLIN_ROWS, ids=_id)
def test_a_kotlin_host_given_a_bad_flag_or_data_field_says_so_in_one_line_and_changes_nothing(
        row, kotlin_outcomes, sandbox):
    outcome = kotlin_outcomes[row.surface][1][_rows_by(KOTLIN_ROWS, row.surface).index(row)]
    lines = outcome["stderr"].splitlines()
    assert outcome["code"] == row.code and len(lines) == 1, outcome
    assert lines[0].startswith("error: ") and _fill(row.expected, sandbox) in lines[0], outcome
    assert outcome["changed"] == [], outcome


def test_every_flag_of_the_kotlin_hosts_and_every_data_field_has_a_row(kotlin_outcomes):
    for host, (flags, _) in kotlin_outcomes.items():
        assert set(flags) <= {row.argument for row in _rows_by(KOTLIN_ROWS, host)}, host
    fields = {"train_images", "train_labels", "train_ids", "classes", "test_images",
              "test_labels"}
    assert {f"{field}_t" for field in fields} <= {row[0] for row in DATA_FIELD_ROWS}
