"""The session plan as a policy: a task's events follow from its index and size when it begins,
the same in Python, Kotlin and (for the board) C, so a model exported before any task learns
tasks nobody saw at export time, of any size, alike on every host."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import (JARS, ROOT, assert_same_steps, class_pattern_images, export_initial,
                      run_kotlin, small_own_model, tiny_config)
from sparcl_tf.errors import DataError
from sparcl_tf.ondevice import OnDeviceSession
from sparcl_tf.session.plan import SessionPlan, removal_targets
from sparcl_tf.session.trace import TraceFile, read_trace
from tools import policy_golden

GOLDEN = os.path.join(ROOT, policy_golden.JSON_PATH)
SIZES = (237, 300, 411)


def test_the_golden_file_is_what_the_planner_computes():
    with open(GOLDEN) as handle:
        assert json.load(handle) == policy_golden.golden_vectors(), (
            "regenerate it: python -m tools.policy_golden tflite/session_golden.json")


def test_kotlin_computes_the_golden_events(session_build):
    ran = subprocess.run(["java", "-cp", ":".join(JARS), "dev.sparcl.ondevice.jvm.GoldenCheckKt",
                          GOLDEN], capture_output=True, text=True, timeout=120)
    assert ran.returncode == 0, ran.stderr
    events = sum(len(task["events"]) for case in policy_golden.golden_vectors()["cases"]
                 for task in case["tasks"])
    assert ran.stdout.strip() == f"golden: 7 cases, {events} events equal"


def test_the_board_c_code_computes_the_golden_events(tmp_path):
    with open(os.path.join(ROOT, policy_golden.TEXT_PATH)) as handle:
        assert handle.read() == policy_golden.golden_text(policy_golden.golden_vectors())
    micro = os.path.join(ROOT, "tflite", "micro")
    built = subprocess.run(["make", "-C", micro, f"BUILD={tmp_path}",
                            f"{tmp_path}/test_sparcl_policy"], capture_output=True, text=True)
    assert built.returncode == 0, built.stderr
    ran = subprocess.run([f"{tmp_path}/test_sparcl_policy", policy_golden.TEXT_PATH], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    weight_events = sum(len(task["events"]) for case in policy_golden.golden_vectors()["cases"]
                        if case["plan"]["unit"] == "weights" for task in case["tasks"])
    assert ran.returncode == 0 and ran.stdout.strip() == (
        f"policy: {weight_events} golden events equal"), ran.stderr


def test_a_plan_file_of_an_older_version_says_to_convert_again():
    with pytest.raises(DataError, match="version 3 is not 4: convert the model again"):
        SessionPlan.from_json({"version": 3, "tasks": []})


def write_unseen_tasks(path, sizes=SIZES, seed=5, ids=False):
    """Tasks of 2 classes each with `sizes` training examples (test sets of 30), the last task
    with its own ids when `ids`."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for t, size in enumerate(sizes):
        for split, count in (("train", size), ("test", 30)):
            labels = rng.integers(2 * t, 2 * t + 2, count).astype(np.int32)
            arrays[f"{split}_images_{t}"] = class_pattern_images(labels, rng)[..., None]
            arrays[f"{split}_labels_{t}"] = labels
    if ids:
        arrays[f"train_ids_{len(sizes) - 1}"] = 5000 + np.arange(sizes[-1], dtype=np.int64)
    np.savez(path, **arrays)
    return str(path)


def litert_trace(model, data, workdir):
    trace = TraceFile(str(workdir / "trace.jsonl"))
    results = OnDeviceSession(str(model), None, str(workdir), verbose=0, trace=trace,
                              data=str(data)).run()
    trace.close()
    return read_trace(str(workdir / "trace.jsonl")), results


def kotlin_trace(model, data, workdir):
    ran = run_kotlin(model, data, workdir, f"--trace={workdir}/trace.jsonl")
    assert ran.returncode == 0 and ran.stderr == "", ran.stderr
    with open(workdir / "results.json") as handle:
        return read_trace(str(workdir / "trace.jsonl")), json.load(handle)


# 237, 300 and 411 examples in batches of 16 are tasks of 14, 18 and 25 steps: from 18 steps on
# a task removes data, which the plan decides when the task begins (ddr.min_task_steps).
@pytest.mark.parametrize("preset, min_task_steps, removing_tasks", [
    ("paper_sparcl_derpp_90", 0, (0, 1, 2)), ("paper_sparcl_derpp_s90", 18, (1, 2)),
    ("rigl_derpp_90", 0, (0, 1, 2))])
def test_a_model_exported_before_any_task_learns_unseen_tasks_of_any_size_alike_on_both_hosts(
        preset, min_task_steps, removing_tasks, idx_folder, tmp_path, session_build):
    config = tiny_config(idx_folder, preset, data__num_tasks=2, sparsity__updates_per_task=4,
                         ddr__stages=2, ddr__enabled=True, ddr__min_task_steps=min_task_steps,
                         log__tensorboard=False)
    model = export_initial(config, tmp_path / "model")  # trained on nothing: 2 tasks planned
    data = write_unseen_tasks(tmp_path / "unseen.npz", ids=True)
    python, results = litert_trace(model, data, tmp_path / "python")
    kotlin_records, kotlin_results = kotlin_trace(model, data, tmp_path / "kotlin")
    assert_same_steps(python, kotlin_records)
    assert [r["kind"] for r in python].count("task_end") == 3  # one more task than planned
    assert [r["kind"] for r in python].count("mask_update") == 3 * 4
    removed = [r for r in python if r["kind"] == "removal"]
    assert [(r["task"], r["stage"]) for r in removed] == [(t, k) for t in removing_tasks
                                                          for k in (1, 2)]
    for t, size in enumerate(SIZES):
        taken = [i for r in removed if r["task"] == t for i in r["removed"]]
        assert len(taken) <= removal_targets(size, 0.3, 2)[-1]
        assert all(5000 <= i < 5000 + size if t == 2 else i < sum(SIZES) for i in taken)
    assert results["training_examples"] == kotlin_results["training_examples"] == sum(SIZES)
    for key in ("class_il_matrix", "task_il_matrix", "examples_removed", "steps"):
        assert kotlin_results[key] == results[key], key
    assert results["task_il_matrix"][2][2] > 60  # the last task was learned


def test_an_own_model_exported_before_any_task_learns_a_file_through_both_binaries(
        tmp_path, session_build):
    from sparcl_tf.keras import DERPP, ContinualLearner, SparCL
    learner = ContinualLearner(small_own_model(), method=DERPP(), buffer_size=60, batch_size=16,
                               sparcl=SparCL.paper(weight_sparsity=0.9, gradient_sparsity=0.92,
                                             updates_per_task=4, removal_stages=2),
                               learning_rate=0.05, normalization=(0.2, 0.3), verbose=0)
    model, _ = learner.export(str(tmp_path / "model"))
    data = write_unseen_tasks(tmp_path / "unseen.npz")
    ran = subprocess.run(
        [sys.executable, "-m", "tools.ondevice", f"--model={model}", f"--data={data}",
         f"--workdir={tmp_path / 'python'}", f"--trace={tmp_path / 'python' / 'trace.jsonl'}",
         "--quiet"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert ran.returncode == 0, ran.stderr
    python = read_trace(str(tmp_path / "python" / "trace.jsonl"))
    kotlin_records, kotlin_results = kotlin_trace(model, data, tmp_path / "kotlin")
    assert_same_steps(python, kotlin_records)
    with open(tmp_path / "python" / "results.json") as handle:
        results = json.load(handle)
    assert results["class_il_matrix"] == kotlin_results["class_il_matrix"]
    assert results["training_examples"] == sum(SIZES) and results["training_flops"] > 0
    without_data = subprocess.run(
        [sys.executable, "-m", "tools.ondevice", f"--model={model}",
         f"--workdir={tmp_path / 'w'}"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert without_data.returncode == 2
    assert without_data.stderr.splitlines() == [
        f"error: {model} was exported by a ContinualLearner, whose data the model does not "
        f"name: give the tasks with --data=FILE.npz"]
    with np.load(data) as arrays:
        bad = dict(arrays, train_labels_2=arrays["train_labels_2"] + 9)
    np.savez(tmp_path / "bad.npz", **bad)
    for flags, line in (
            ([f"--data={data}", "--config=configs/split_fmnist.py:sparcl_derpp_90"],
             "error: --data trains the file's tasks under the model's own session plan and run "
             "config: drop --config"),
            ([f"--data={tmp_path / 'bad.npz'}"],
             f"error: {tmp_path / 'bad.npz'} task 2: train_labels_2 lie in [13, 14]; the model "
             f"has classes 0..9")):
        refused = subprocess.run(
            [sys.executable, "-m", "tools.ondevice", f"--model={model}",
             f"--workdir={tmp_path / 'refused'}", *flags], cwd=ROOT, capture_output=True,
            text=True, timeout=300)
        assert refused.returncode == 2 and refused.stderr.splitlines() == [line]
        assert not (tmp_path / "refused" / "checkpoints").exists()


@pytest.mark.parametrize("change, message", [
    (lambda a: a.update(train_labels_1=a["train_labels_1"] + 9), "lie in \\[11, 12\\]"),
    (lambda a: a.update(train_images_0=a["train_images_0"][:10],
                        train_labels_0=a["train_labels_0"][:10]), "fewer than one batch"),
    (lambda a: a.update(train_images_2=a["train_images_2"][..., 0]), "has shape"),
    (lambda a: a.update(train_images_1=np.full(a["train_images_1"].shape, np.nan, np.float32)),
     "NaN or Inf"),
    (lambda a: a.update(train_ids_1=np.zeros(300, np.int64)), "example ids repeat"),
    (lambda a: a.update(train_ids_0=2 ** 31 - 237 + np.arange(237)), "\\[0, 2\\^24\\)"),
    (lambda a: a.update(train_ids_0=np.arange(237), train_ids_1=2 ** 24 - 300 + np.arange(300)),
     "task 2: example ids must lie in \\[0, 2\\^24\\)"),  # task 2 numbered on past it
    (lambda a: a.update(extra=np.zeros(3)), "that are no task's"),
])
def test_bad_task_data_is_one_clear_error(idx_folder, tmp_path, change, message):
    from sparcl_tf.ondevice.task_data import read_task_data
    plan = SessionPlan.from_json(json.loads(json.dumps(_plan(idx_folder).to_json())))
    path = write_unseen_tasks(tmp_path / "good.npz")
    with np.load(path) as archive:
        arrays = dict(archive)
    read_task_data(path, plan)
    change(arrays)
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(DataError, match=message):
        read_task_data(str(tmp_path / "bad.npz"), plan)


def _plan(idx_folder):
    from sparcl_tf.experiment import Experiment
    return Experiment(tiny_config(idx_folder, "paper_sparcl_derpp_90"), None, verbose=0).plan


def _write_png(path, pixels):
    import tensorflow as tf
    path.write_bytes(tf.io.encode_png(pixels).numpy())


@pytest.mark.parametrize("change, message", [
    (lambda f: _write_png(f / "task_2" / "train" / "3" / "odd.png",
                          np.zeros((28, 27, 1), np.uint8)),
     "odd.png is 27x28 pixels with 1 channels; the model takes 28x28 with 1"),
    (lambda f: _write_png(f / "task_1" / "train" / "1" / "rgb.png",
                          np.zeros((28, 28, 3), np.uint8)), "rgb.png is 28x28 pixels with 3"),
    (lambda f: (f / "task_1" / "train" / "1" / "broken.png").write_bytes(b"\x89PNG no"),
     "broken.png is not a readable PNG"),
    (lambda f: (f / "task_1" / "train" / "cats").mkdir(), "class folder 'cats' is not a class"),
    (lambda f: (f / "task_5").mkdir(), "task_5 does not follow task_1 .. task_3 without a gap"),
    (lambda f: (f / "task_3" / "train").rename(f / "task_3" / "training"), "has no train folder"),
])
def test_tasks_as_image_files_read_as_the_data_file_and_bad_ones_are_one_line(
        idx_folder, tmp_path, change, message):
    """A task-image folder (tools.task_images) reads as the data file it came from: pixels,
    labels, order, ids, classes (an empty class folder counts); a bad one is one DataError."""
    from sparcl_tf.ondevice.task_data import read_task_data, write_task_images
    plan = SessionPlan.from_json(json.loads(json.dumps(_plan(idx_folder).to_json())))
    data = write_unseen_tasks(tmp_path / "tasks.npz")
    folder = tmp_path / "photos"
    write_task_images(data, str(folder))
    (folder / "task_1" / "train" / "7").mkdir()
    expected, read = read_task_data(data, plan), read_task_data(str(folder), plan)
    for mine, theirs in zip(read.tasks, expected.tasks):
        for name in ("x_train", "y_train", "ids_train", "x_test", "y_test"):
            np.testing.assert_array_equal(getattr(mine, name), getattr(theirs, name))
    assert [list(t.classes) for t in read.tasks] == [[0, 1, 7], [2, 3], [4, 5]]
    with pytest.raises(DataError, match="not an empty folder"):
        write_task_images(data, str(folder))
    change(folder)
    with pytest.raises(DataError, match=message):
        read_task_data(str(folder), plan)


@pytest.fixture(scope="module")
def initial_model(idx_folder, tmp_path_factory):
    config = tiny_config(idx_folder, "paper_sparcl_derpp_90", data__num_tasks=2,
                         log__tensorboard=False)
    return export_initial(config, tmp_path_factory.mktemp("initial") / "model")


def _nan_images(arrays):
    images = arrays["train_images_1"].astype(np.float32) / 255
    images[3, 5, 5] = np.nan
    arrays["train_images_1"] = images


def test_the_kotlin_hosts_stderr_stays_empty_when_its_native_log_cannot_be_opened(
        initial_model, tmp_path, session_build):
    """LiteRT's own lines go to state/litert.log, or nowhere when that cannot be opened (here a
    folder of that name): never to stderr."""
    (tmp_path / "state" / "litert.log").mkdir(parents=True)
    ran = run_kotlin(initial_model, write_unseen_tasks(tmp_path / "tasks.npz", sizes=(32, 32)),
                     tmp_path / "state")
    assert ran.returncode == 0 and ran.stderr == "", ran.stderr
