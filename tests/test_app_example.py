"""The app-shaped examples (examples/device_learner_app.py and tflite/android's AppExample.kt): a
device learner fed tasks one at a time, the same steps in Python and Kotlin, a task cancelled in
the middle and called again ending as an uninterrupted run, one learner per state folder."""

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from conftest import JARS, ROOT, assert_same_steps, export_initial, litert_library, tiny_config
from sparcl_tf.session.trace import read_trace
from test_policy import write_unseen_tasks


@pytest.fixture(scope="module")
def app(idx_folder, tmp_path_factory, session_build):
    directory = tmp_path_factory.mktemp("app_example")
    config = tiny_config(idx_folder, "paper_sparcl_derpp_90", data__num_tasks=2,
                         sparsity__updates_per_task=4, ddr__stages=2, log__tensorboard=False,
                         checkpoint__every_steps=10)
    model = export_initial(config, directory / "model")
    data = write_unseen_tasks(directory / "arriving.npz")
    return model, data, directory


def python_app(model, data, state_dir, *flags):
    return subprocess.run(
        [sys.executable, os.path.join(ROOT, "examples", "device_learner_app.py"),
         f"--model={model}", f"--data={data}", f"--state_dir={state_dir}",
         f"--trace={state_dir}.jsonl", *flags], capture_output=True, text=True, timeout=600)


def kotlin_app(model, data, state_dir, *flags, wait=True):
    command = ["java", "-cp", ":".join(JARS), "dev.sparcl.ondevice.jvm.AppExampleKt",
               f"--model={model}", f"--data={data}", f"--state_dir={state_dir}",
               f"--litert={litert_library()}", f"--trace={state_dir}.jsonl", *flags]
    if not wait:
        return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
    return subprocess.run(command, capture_output=True, text=True, timeout=600)


def results(state_dir):
    with open(os.path.join(state_dir, "results.json")) as handle:
        return json.load(handle)


def assert_apps_agree(directory):
    """The python/ and kotlin/ apps in `directory` took the same steps to the same results;
    returns the results."""
    assert_same_steps(read_trace(f"{directory}/python.jsonl"),
                      read_trace(f"{directory}/kotlin.jsonl"))
    mine, theirs = results(directory / "kotlin"), results(directory / "python")
    for key in ("class_il_matrix", "task_il_matrix", "steps", "examples_removed",
                "examples_presented", "training_examples"):
        assert mine[key] == theirs[key], key
    return theirs


@pytest.fixture(scope="module")
def straight(app):
    model, data, directory = app
    python = python_app(model, data, directory / "python")
    kotlin = kotlin_app(model, data, directory / "kotlin")
    assert python.returncode == 0 and kotlin.returncode == 0, python.stderr + kotlin.stderr
    return python, kotlin


def test_the_python_and_kotlin_apps_take_the_same_steps(app, straight):
    _, _, directory = app
    python, kotlin = straight
    assert python.stdout.splitlines()[:6] == kotlin.stdout.splitlines()[:6]
    assert assert_apps_agree(directory)["training_examples"] == 237 + 300 + 411


def test_tasks_arriving_as_image_files_are_learned_as_from_the_data_file(app, straight):
    """The app's photos: the same tasks as PNG folders (tools.task_images) take the Kotlin app
    through the same steps as the data file; a PNG of the wrong size is one line, nothing
    learned."""
    model, data, directory = app
    written = subprocess.run([sys.executable, "-m", "tools.task_images", f"--data={data}",
                              f"--out={directory / 'photos'}"], cwd=ROOT, capture_output=True,
                             text=True, timeout=300)
    assert written.returncode == 0, written.stderr
    state = directory / "kotlin_photos"
    ran = kotlin_app(model, directory / "photos", state)
    assert ran.returncode == 0, ran.stderr
    assert read_trace(f"{state}.jsonl") == read_trace(f"{directory}/kotlin.jsonl")
    assert results(state)["class_il_matrix"] == results(directory / "kotlin")["class_il_matrix"]

    import shutil
    shutil.copytree(directory / "photos", directory / "bad_photos")
    odd = directory / "bad_photos" / "task_1" / "train" / "1" / "zzz.png"
    odd.write_bytes(tf.io.encode_png(np.zeros((20, 28, 1), np.uint8)).numpy())
    ran = kotlin_app(model, directory / "bad_photos", directory / "bad_state")
    assert ran.returncode == 2 and ran.stderr.splitlines() == [
        f"error: {odd} is 28x20 pixels with 1 channels; the model takes 28x28 with 1"]
    assert not os.path.exists(directory / "bad_state" / "tasks.json")


@pytest.mark.parametrize("host", ["kotlin", "python"])
def test_a_task_cancelled_and_called_again_ends_as_an_uninterrupted_run(app, straight, host):
    model, data, directory = app
    run = kotlin_app if host == "kotlin" else python_app
    state = directory / f"{host}_cancelled"
    first = run(model, data, state, "--cancel_after_step=25")
    assert first.returncode == 3, first.stdout + first.stderr
    assert "cancelled: task 2 was cancelled after step 25; its state is saved" in first.stdout
    again = run(model, data, state)
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines()[0].startswith("task 2 arrives")
    assert read_trace(f"{state}.jsonl") == read_trace(f"{directory}/{host}.jsonl")
    mine, straight_results = results(state), results(directory / host)
    for key in ("class_il_matrix", "steps", "examples_removed", "losses"):
        if key in straight_results:
            assert mine[key] == straight_results[key], key


def test_a_second_kotlin_learner_on_the_same_folder_is_refused(app):
    model, data, directory = app
    state = directory / "held"
    holder = kotlin_app(model, data, state, wait=False)
    try:
        deadline = time.time() + 120
        while not os.path.exists(f"{state}.jsonl") and time.time() < deadline:
            time.sleep(0.2)
        second = kotlin_app(model, data, state)
        assert second.returncode == 2
        assert second.stderr.splitlines() == [
            f"error: {state} is held by another learner; one learner at a time may use a state "
            f"folder"]
    finally:
        holder.kill()
        holder.wait()


def test_a_host_run_goes_on_alike_in_the_python_and_kotlin_device_learners(tmp_path,
                                                                          session_build):
    import shutil

    from sparcl_tf.keras import DERPP, ContinualLearner, SparCL
    from conftest import small_own_model
    data = write_unseen_tasks(tmp_path / "arriving.npz", sizes=(237, 300, 411, 237))
    with np.load(data) as arrays:
        host_tasks = [(arrays[f"train_images_{t}"], arrays[f"train_labels_{t}"],
                       arrays[f"test_images_{t}"], arrays[f"test_labels_{t}"]) for t in range(2)]
    host = ContinualLearner(small_own_model(), method=DERPP(), buffer_size=60, batch_size=16,
                            sparcl=SparCL.paper(weight_sparsity=0.9, gradient_sparsity=0.92,
                                          updates_per_task=4, removal_stages=2),
                            learning_rate=0.05, normalization=(0.2, 0.3), verbose=0)
    for x, y, x_test, y_test in host_tasks:
        handed = host.fit_task(x, y, test_data=(x_test, y_test))
    model, _ = host.export(str(tmp_path / "export"), with_state=True)
    for name in ("python", "kotlin"):
        shutil.copytree(tmp_path / "export" / "state", tmp_path / name)
    python = python_app(model, data, tmp_path / "python")
    kotlin = kotlin_app(model, data, tmp_path / "kotlin")
    assert python.returncode == 0 and kotlin.returncode == 0, python.stderr + kotlin.stderr
    assert kotlin.stdout.splitlines()[0].startswith("task 3 arrives")
    mine = assert_apps_agree(tmp_path)
    assert mine["class_il_matrix"][:2] == [row + [None] * 2 for row in
                                           handed["class_il_matrix"]]
    assert mine["examples_removed"] > handed["examples_removed"] > 0


def test_a_kotlin_learners_folder_loads_into_a_keras_learner(tmp_path, session_build):
    from sparcl_tf.keras import DERPP, ContinualLearner, SparCL
    from conftest import small_own_model

    def learner():
        return ContinualLearner(small_own_model(), method=DERPP(), buffer_size=60,
                                batch_size=16, sparcl=SparCL.paper(weight_sparsity=0.9,
                                                             gradient_sparsity=0.92,
                                                             updates_per_task=4,
                                                             removal_stages=2),
                                learning_rate=0.05, normalization=(0.2, 0.3), verbose=0)

    data = write_unseen_tasks(tmp_path / "arriving.npz", sizes=(237, 300))
    model, _ = learner().export(str(tmp_path / "export"))
    ran = kotlin_app(model, data, tmp_path / "phone")
    assert ran.returncode == 0, ran.stderr
    phone = results(tmp_path / "phone")
    host = learner()
    loaded = host.load_device_state(str(tmp_path / "phone"))
    assert loaded["class_il_matrix"] == phone["class_il_matrix"]
    for key in ("steps", "examples_presented", "examples_removed", "training_examples"):
        assert loaded[key] == phone[key], key
    with np.load(data) as arrays:
        x_test, y_test = arrays["test_images_1"], arrays["test_labels_1"]
        x_new, y_new = arrays["train_images_0"], arrays["train_labels_0"] + 4  # a third task
    assert host.evaluate(x_test, y_test)["class_il"] == pytest.approx(
        phone["class_il_matrix"][1][1], abs=100 / len(y_test) + 1e-9)
    assert all(np.count_nonzero(layer.kernel.numpy()[layer.mask.numpy() == 0]) == 0
               for layer in host.model.sparse)
    assert host.fit_task(x_new, y_new)["steps"] > phone["steps"]
