"""The Kotlin session of tflite/android, compiled by its build.sh and run by its JVM host on
libLiteRt.so (the runtime the Android AAR wraps), against the Python LiteRT session given the same
.tflite, session plan and data: the same steps, removals, mask updates and accuracies; a kill and
restart that loses nothing; bad inputs refused in one line with the state files untouched."""

import json
import os
import shutil

import numpy as np
import pytest

from conftest import FASHION_MNIST_DIR, assert_same_steps, run_kotlin, tiny_config
from sparcl_tf.reporting.results import MACHINE_DEPENDENT


def kotlin(model_dir, state_dir, *flags):
    return run_kotlin(model_dir / "model.tflite", model_dir / "task_data.npz", state_dir, *flags)


def convert_with_data(config, directory):
    """What `tools.convert --state=initial --task_data` writes: model, signatures.json, data."""
    from sparcl_tf.experiment import Experiment
    from sparcl_tf.export import convert, training_module
    from sparcl_tf.export.files import write_model_files
    from sparcl_tf.ondevice.task_data import write_task_data
    run = Experiment(config, str(directory / "run"), verbose=0)
    module = training_module(config, run.network, run.kind)
    model_dir = directory / "model"
    write_model_files(convert(module, str(directory / "saved")), module, run.plan, str(model_dir))
    write_task_data(str(model_dir / "task_data.npz"), run.tasks, run.engine.method)
    return model_dir


def python_trace(model_dir, config, workdir):
    from sparcl_tf.ondevice import OnDeviceSession
    from sparcl_tf.session.trace import TraceFile, read_trace
    trace = TraceFile(str(workdir / "trace.jsonl"))
    results = OnDeviceSession(str(model_dir / "model.tflite"), config, str(workdir), verbose=0,
                              trace=trace).run()
    trace.close()
    return read_trace(str(workdir / "trace.jsonl")), results


def kotlin_trace(model_dir, workdir, *flags):
    from sparcl_tf.session.trace import read_trace
    ran = kotlin(model_dir, workdir, f"--trace={workdir}/trace.jsonl", *flags)
    assert ran.returncode == 0 and ran.stderr == "", ran.stderr
    with open(workdir / "results.json") as handle:
        return read_trace(str(workdir / "trace.jsonl")), json.load(handle)


def fmnist_config():
    from configs.split_fmnist import get_config
    config = get_config("paper_sparcl_derpp_90")
    config.data.dir = FASHION_MNIST_DIR
    config.data.num_tasks = 3
    config.data.train_per_task = 300
    config.data.test_per_task = 100
    config.epochs_per_task = 1
    config.log.progress = False
    config.log.tensorboard = False
    config.checkpoint.every_steps = 0
    return config


@pytest.fixture(scope="module")
def fmnist(tmp_path_factory, session_build):
    """SparCL-DER++ 0.90 on 3 Split Fashion-MNIST tasks (300 / 100 images each, one epoch), by
    the Python LiteRT session and by the Kotlin one, from the same converted model."""
    if not os.path.isdir(FASHION_MNIST_DIR):
        pytest.skip("Debian's dataset-fashion-mnist is not installed (.ci/run installs it)")
    directory = tmp_path_factory.mktemp("android_fmnist")
    config = fmnist_config()
    model_dir = convert_with_data(config, directory)
    python, python_results = python_trace(model_dir, config, directory / "python")
    kotlin_records, kotlin_results = kotlin_trace(model_dir, directory / "kotlin")
    return dict(model_dir=model_dir, directory=directory, python=python,
                python_results=python_results, kotlin=kotlin_records,
                kotlin_results=kotlin_results)


@pytest.mark.slow
def test_kotlin_session_takes_the_python_sessions_steps(fmnist):
    python, kotlin_records = fmnist["python"], fmnist["kotlin"]
    assert_same_steps(python, kotlin_records)
    kinds = [r["kind"] for r in python]
    removed = [i for r in python if r["kind"] == "removal" for i in r["removed"]]
    assert kinds.count("task_end") == 3 and kinds.count("mask_update") >= 3 and removed
    results, mine = fmnist["python_results"], fmnist["kotlin_results"]
    for key in ("class_il_matrix", "task_il_matrix", "class_il", "task_il", "steps",
                "examples_presented", "examples_removed", "training_examples"):
        assert mine[key] == results[key], key
    assert [i for task in mine["removed_example_ids"] for i in task] == removed


@pytest.mark.slow
def test_a_killed_kotlin_session_resumes_to_the_same_results(fmnist, tmp_path):
    from sparcl_tf.session.trace import read_trace
    state_dir = tmp_path / "state"
    killed = kotlin(fmnist["model_dir"], state_dir, "--checkpoint_every=4", "--halt_after_step=13")
    assert killed.returncode == 137, killed.stderr  # halted mid-task 2, between two saves
    assert not (state_dir / "results.json").exists()
    assert len(list(state_dir.glob("state-*.bin"))) == 2  # older ones pruned
    resumed = kotlin(fmnist["model_dir"], state_dir, "--checkpoint_every=4",
                     f"--trace={tmp_path}/resumed.jsonl")
    assert resumed.returncode == 0 and resumed.stderr == "", resumed.stderr
    first_step = next(r["step"] for r in read_trace(str(tmp_path / "resumed.jsonl"))
                      if r["kind"] == "step")
    assert 0 < first_step <= 13  # it went on from a state file, not from the start
    with open(state_dir / "results.json") as handle:
        results = json.load(handle)
    uninterrupted = fmnist["kotlin_results"]
    assert {k: v for k, v in results.items() if k not in MACHINE_DEPENDENT} == {
        k: v for k, v in uninterrupted.items() if k not in MACHINE_DEPENDENT}


def _variant(model_dir, target, edit=None, signatures_text=None):
    """A copy of `model_dir` whose signatures.json `edit` changed (a plan dict -> None)."""
    shutil.copytree(model_dir, target)
    path = target / "signatures.json"
    if signatures_text is not None:
        path.write_text(signatures_text)
    elif edit is not None:
        described = json.loads(path.read_text())
        edit(described)
        path.write_text(json.dumps(described))
    return target


def _refused(ran, *words):
    assert ran.returncode == 2, ran.stdout + ran.stderr
    assert ran.stderr.count("\n") == 1 and ran.stderr.startswith("error: "), ran.stderr
    for word in words:
        assert word in ran.stderr, ran.stderr


def _with_extra_record(content, name):
    """A Kotlin state file's bytes with one more int record (count and CRC32 made right)."""
    import struct
    import zlib
    body = bytearray(content[:-8])
    count_at = len(b"SPARCLST") + 4 + 4 + 8 + 8
    struct.pack_into(">i", body, count_at, struct.unpack_from(">i", body, count_at)[0] + 1)
    body += struct.pack(">H", len(name)) + name.encode() + b"I" + struct.pack(">ii", 1, 7)
    return bytes(body) + struct.pack(">q", zlib.crc32(body))


@pytest.mark.slow
def test_bad_plans_models_and_state_files_are_one_line_each(fmnist, tmp_path):
    model_dir = fmnist["model_dir"]
    state = tmp_path / "state"
    _refused(kotlin(_variant(model_dir, tmp_path / "no_plan",
                             edit=lambda d: d.pop("session_plan")), state), "no session_plan")
    _refused(kotlin(_variant(model_dir, tmp_path / "not_json", signatures_text="{"), state),
             "not JSON")
    _refused(kotlin(_variant(model_dir, tmp_path / "v9",
                             edit=lambda d: d["session_plan"].update(version=9)), state),
             "version 9")
    _refused(kotlin(_variant(model_dir, tmp_path / "batch",
                             edit=lambda d: d["session_plan"].update(batch_size=16)), state),
             "does not match its session plan", "train images")
    # Model files checked before LiteRT loads them: a truncated one would crash the JVM inside
    # libLiteRt.so; damage in the weights is caught by signatures.json's model_sha256.
    model = (model_dir / "model.tflite").read_bytes()
    truncated = _variant(model_dir, tmp_path / "truncated", edit=lambda d: d.pop("model_sha256"))
    (truncated / "model.tflite").write_bytes(model[:len(model) // 3])
    _refused(kotlin(truncated, state), "truncated or corrupt")
    damaged = _variant(model_dir, tmp_path / "damaged")
    middle = bytearray(model)
    middle[len(model) // 2] ^= 0xFF
    (damaged / "model.tflite").write_bytes(bytes(middle))
    _refused(kotlin(damaged, state), "does not match the model_sha256")
    foreign = _variant(model_dir, tmp_path / "foreign", edit=lambda d: d.pop("model_sha256"))
    (foreign / "model.tflite").write_bytes(b"PK" + model[2:4] + b"ZIP!" + model[8:100])
    _refused(kotlin(foreign, state), "not a .tflite model (file identifier 'ZIP!'")
    assert not list(state.glob("state-*"))  # nothing was started

    # A state file of another plan, and a truncated one: refused, and left as they were.
    killed = kotlin(model_dir, state, "--checkpoint_every=4", "--halt_after_step=9")
    assert killed.returncode == 137
    files = sorted(state.glob("state-*.bin"), key=lambda p: int(p.stem.split("-")[1]))
    assert len(files) == 2
    before = {p: p.read_bytes() for p in files}
    other = _variant(model_dir, tmp_path / "seed",
                     edit=lambda d: d["session_plan"].update(seed=1))
    _refused(kotlin(other, state), "another session plan")
    files[-1].write_bytes(_with_extra_record(before[files[-1]], "extra"))
    _refused(kotlin(model_dir, state), "records this session does not know: [extra]")
    files[-1].write_bytes(before[files[-1]])
    with open(files[-1], "r+b") as handle:
        handle.truncate(len(before[files[-1]]) // 2)
    truncated = files[-1].read_bytes()
    _refused(kotlin(model_dir, state), "truncated")
    assert files[-1].read_bytes() == truncated and files[-2].read_bytes() == before[files[-2]]
    assert sorted(state.glob("state-*.bin")) == sorted(files)
    files[-1].write_bytes(b"not a state file at all")
    _refused(kotlin(model_dir, state), "not a sparcl session state file")


@pytest.mark.slow
def test_a_signature_the_java_api_cannot_call_is_refused(fmnist, tmp_path, session_build):
    """A model with an input-less signature: LiteRT's Java runSignature would throw on a phone,
    so the desktop adapter refuses it when it loads the model."""
    import tensorflow as tf
    variable = tf.Variable(1.0)
    read = tf.function(lambda: {"value": variable.read_value()}, input_signature=[])
    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [read.get_concrete_function()], tf.Module())
    target = _variant(fmnist["model_dir"], tmp_path / "no_inputs",
                      edit=lambda d: d.pop("model_sha256"))  # another model, on purpose
    (target / "model.tflite").write_bytes(converter.convert())
    _refused(kotlin(target, tmp_path / "state"), "no inputs", "runSignature")


@pytest.mark.parametrize("preset,augment,rate,shared", [
    ("paper_sparcl_derpp_s90", "crop_flip", "cosine", False),
    ("rigl_derpp_90", "crop", "step", True)])
def test_kotlin_follows_structured_and_rigl_plans_with_augmentation(idx_folder, tmp_path, preset,
                                                                     augment, rate, shared,
                                                                     session_build):
    """Filter-slot counts (channel-structured SparCL) and RigL's per-task events, on augmented
    current and replayed batches (DER++'s terms on one shared draw in the RigL case), under a
    learning-rate schedule: the same steps as the Python session."""
    config = tiny_config(idx_folder, preset, data__num_tasks=2, data__augment=augment,
                         data__crop_padding=2, log__tensorboard=False, optimizer__schedule=rate,
                         optimizer__milestones=(0.3, 0.6), method__shared_draw=shared)
    model_dir = convert_with_data(config, tmp_path)
    python, _ = python_trace(model_dir, config, tmp_path / "python")
    kotlin_records, _ = kotlin_trace(model_dir, tmp_path / "kotlin")
    assert_same_steps(python, kotlin_records)
    assert any(r["kind"] == "mask_update" for r in python)


def test_task_data_file_holds_the_stream_the_loop_trains_on(idx_folder, tmp_path):
    from sparcl_tf.data import build_tasks, load_source
    from sparcl_tf.methods import build_method
    from sparcl_tf.ondevice.task_data import write_task_data
    config = tiny_config(idx_folder, "derpp", data__num_tasks=2)
    tasks = build_tasks(load_source(config.data), config.data, config.seed)
    method = build_method(config.method)
    path = write_task_data(str(tmp_path / "data.npz"), tasks, method)
    with np.load(path) as data:
        assert sorted(data.files) == sorted(
            [f"{split}_{what}_{t}" for t in range(2) for split, what in (
                ("train", "images"), ("train", "labels"), ("train", "ids"), ("test", "images"),
                ("test", "labels"))] + ["classes_0", "classes_1"])
        for t in range(2):
            x, y, ids = method.task_training_data(tasks, t)
            assert data[f"train_images_{t}"].dtype == x.dtype
            np.testing.assert_array_equal(data[f"train_images_{t}"], x)
            np.testing.assert_array_equal(data[f"train_ids_{t}"], ids)
            np.testing.assert_array_equal(data[f"test_labels_{t}"], tasks.tasks[t].y_test)
            np.testing.assert_array_equal(data[f"classes_{t}"], tasks.tasks[t].classes)
