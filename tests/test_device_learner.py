"""The device learner (`sparcl_tf.ondevice.DeviceLearner`): tasks learned from the .tflite alone as
they arrive, the same session as the LiteRT host over a file, bad arguments refused with the
state folder untouched, one learner per folder, resume, and a host run continued on the device."""

import json
import os
import shutil

import numpy as np
import pytest

from conftest import (Interrupt, class_pattern_images, export_initial, small_own_model,
                      tiny_config)
from sparcl_tf.errors import CheckpointError, ConfigError, DataError, ExportError
from sparcl_tf.ondevice import DeviceLearner, OnDeviceSession
from sparcl_tf.session.loop import SessionLoop

SIZES = (237, 300, 411)


def unseen_tasks(sizes=SIZES, seed=5, first_class=0):
    """[(x, y, x_test, y_test)] of 2 classes each (uint8 pixels, NHWC)."""
    rng = np.random.default_rng(seed)
    tasks = []
    for t, size in enumerate(sizes):
        low = first_class + 2 * t
        arrays = []
        for count in (size, 30):
            labels = rng.integers(low, low + 2, count).astype(np.int64)
            arrays += [class_pattern_images(labels, rng)[..., None], labels]
        tasks.append(tuple(arrays))
    return tasks


@pytest.fixture(scope="module")
def model(idx_folder, tmp_path_factory):
    config = tiny_config(idx_folder, "paper_sparcl_derpp_90", data__num_tasks=2,
                         sparsity__updates_per_task=4, ddr__stages=2, log__tensorboard=False,
                         checkpoint__every_steps=5)
    return export_initial(config, tmp_path_factory.mktemp("device_learner_model"))


def test_tasks_learned_as_they_come_equal_the_litert_session_over_a_file(model, tmp_path):
    tasks = unseen_tasks()
    arrays = {}
    for t, (x, y, x_test, y_test) in enumerate(tasks):
        arrays.update({f"train_images_{t}": x, f"train_labels_{t}": y,
                       f"test_images_{t}": x_test, f"test_labels_{t}": y_test})
    np.savez(tmp_path / "tasks.npz", **arrays)
    expected = OnDeviceSession(model, None, str(tmp_path / "session"), verbose=0,
                               data=str(tmp_path / "tasks.npz")).run()
    with DeviceLearner(model, str(tmp_path / "learner")) as learner:
        for x, y, x_test, y_test in tasks:
            results = learner.fit_task(x, y, test_data=(x_test, y_test))
        predicted = np.argmax(learner.predict(tasks[2][2]), axis=1)
        accuracy = learner.evaluate(tasks[2][2], tasks[2][3])
    for key in ("class_il_matrix", "task_il_matrix", "steps", "examples_removed",
                "examples_presented", "training_examples", "training_flops", "layer_sparsity"):
        assert results[key] == expected[key], key
    assert accuracy["class_il"] == pytest.approx(100 * np.mean(predicted == tasks[2][3]))
    assert accuracy["class_il"] == results["class_il_matrix"][2][2]


def test_test_data_is_optional(model, tmp_path):
    x, y, _, _ = unseen_tasks(sizes=(64,))[0]
    with DeviceLearner(model, str(tmp_path / "s")) as learner:
        results = learner.fit_task(x, y)
    assert results["class_il_matrix"] == [[None]] and results["class_il"] is None
    assert results["steps"] > 0


def test_a_second_learner_on_the_same_folder_is_refused(model, tmp_path):
    with DeviceLearner(model, str(tmp_path / "s")):
        with pytest.raises(ConfigError, match="held by another learner"):
            DeviceLearner(model, str(tmp_path / "s"))
    DeviceLearner(model, str(tmp_path / "s")).close()  # released


def _folder(path):
    return sorted((os.path.relpath(os.path.join(root, name), path),
                   os.path.getsize(os.path.join(root, name)))
                  for root, _, names in os.walk(path) for name in names)


@pytest.mark.parametrize("change, message", [
    (lambda x, y: (x, y + 10), r"labels must lie in \[0, 10\)"),
    (lambda x, y: (x[:10], y[:10]), "fewer than one batch"),
    (lambda x, y: (x[..., 0], y), "do not fit the model's input"),
    (lambda x, y: (np.full(x.shape, np.nan, np.float32), y), "NaN or Inf"),
    (lambda x, y: (x.astype(np.int32), y), "must be uint8 or float"),
    (lambda x, y: (x, y.astype(np.float32)), "labels must be integers"),
])
def test_bad_arguments_are_one_error_and_change_nothing(model, tmp_path, change, message):
    (x, y, x_test, y_test), second = unseen_tasks(sizes=(64, 64))[:2]
    with DeviceLearner(model, str(tmp_path / "s")) as learner:
        learner.fit_task(x, y, test_data=(x_test, y_test))
        before, progress = _folder(tmp_path / "s"), learner.results()
        with pytest.raises(ValueError, match=message):
            learner.fit_task(*change(second[0], second[1]))
        with pytest.raises(ValueError, match="labels outside classes"):
            learner.fit_task(second[0], second[1], classes=[2])
        assert _folder(tmp_path / "s") == before and learner.results() == progress
        assert learner.fit_task(second[0], second[1])["steps"] > progress["steps"]


def test_a_learner_stopped_in_a_task_and_made_again_ends_as_an_uninterrupted_one(
        model, tmp_path, monkeypatch):
    tasks = unseen_tasks()
    with DeviceLearner(model, str(tmp_path / "straight")) as learner:
        for x, y, x_test, y_test in tasks[:2]:
            expected = learner.fit_task(x, y, test_data=(x_test, y_test))
    original = SessionLoop._after_step

    def stop(self, *args):
        original(self, *args)
        if self.progress.global_step == 20:  # in the second task, after a periodic checkpoint
            raise Interrupt()

    monkeypatch.setattr(SessionLoop, "_after_step", stop)
    learner = DeviceLearner(model, str(tmp_path / "stopped"))
    learner.fit_task(*tasks[0][:2], test_data=tasks[0][2:])
    with pytest.raises(Interrupt):
        learner.fit_task(*tasks[1][:2], test_data=tasks[1][2:])
    learner.close()
    monkeypatch.setattr(SessionLoop, "_after_step", original)
    with DeviceLearner(model, str(tmp_path / "stopped")) as again:
        assert again.progress.task == 1 and again.progress.global_step == 20
        with pytest.raises(ValueError, match="give it the same images and labels again"):
            again.fit_task(*tasks[2][:2])
        results = again.fit_task(*tasks[1][:2], test_data=tasks[1][2:])
    for key in ("class_il_matrix", "steps", "examples_removed", "training_flops",
                "layer_sparsity"):
        assert results[key] == expected[key], key


def _learner(seed=0):
    from sparcl_tf.keras import DERPP, ContinualLearner, SparCL
    return ContinualLearner(small_own_model(), method=DERPP(), buffer_size=60, batch_size=16,
                            sparcl=SparCL.paper(weight_sparsity=0.9, gradient_sparsity=0.92,
                                          updates_per_task=4, removal_stages=2),
                            learning_rate=0.05, normalization=(0.2, 0.3), seed=seed, verbose=0)


def test_a_host_run_continues_on_the_device_with_its_buffer_and_statistics(tmp_path):
    tasks = unseen_tasks(sizes=(96, 112, 128, 96, 112))
    host = _learner()
    for x, y, x_test, y_test in tasks:
        all_on_host = host.fit_task(x, y, test_data=(x_test, y_test))
    first = _learner()
    for x, y, x_test, y_test in tasks[:2]:
        handed = first.fit_task(x, y, test_data=(x_test, y_test))
    model, _ = first.export(str(tmp_path / "export"), with_state=True)
    with DeviceLearner(model, str(tmp_path / "export" / "state")) as device:
        assert device.progress.task == 2 and device.results()["class_il_matrix"] == handed[
            "class_il_matrix"]
        np.testing.assert_array_equal(device.session.buffer.images,
                                      first.buffer.images)
        for x, y, x_test, y_test in tasks[2:]:
            continued = device.fit_task(x, y, test_data=(x_test, y_test))
    for key in ("steps", "examples_presented", "examples_removed", "training_examples"):
        assert continued[key] == all_on_host[key], key
    assert continued["class_il_matrix"][:2] == all_on_host["class_il_matrix"][:2]
    with pytest.raises(ExportError, match="not empty"):
        first.export(str(tmp_path / "export"), with_state=True)
    with open(tmp_path / "export" / "state" / "tasks.json") as handle:
        assert [t["examples"] for t in json.load(handle)["tasks"]] == [96, 112, 128, 96, 112]


def test_a_device_folder_loads_into_a_keras_learner_to_inspect_and_go_on(tmp_path):
    tasks = unseen_tasks(sizes=(237, 300, 411))
    model, _ = _learner().export(str(tmp_path / "export"))
    with DeviceLearner(model, str(tmp_path / "phone")) as device:
        for x, y, x_test, y_test in tasks[:2]:
            on_device = device.fit_task(x, y, test_data=(x_test, y_test))
        state = device.device.get_state()
        unit_masks = device.plan.model["unit_masks"]
    host = _learner()  # another build of the model: Keras names its layers anew
    loaded = host.load_device_state(str(tmp_path / "phone"))
    assert loaded["class_il_matrix"] == on_device["class_il_matrix"]
    assert loaded["steps"] == on_device["steps"]
    for layer, mask in zip(host.model.sparse, unit_masks):  # the device's masks, exactly
        np.testing.assert_array_equal(layer.mask.numpy() > 0, state[mask])
        assert np.count_nonzero(layer.kernel.numpy()[layer.mask.numpy() == 0]) == 0
    x_test, y_test = tasks[1][2:]
    inputs = ((x_test.astype(np.float32) / 255 - 0.2) / 0.3)
    np.testing.assert_allclose(host.strip()(inputs).numpy(), host.network(inputs).numpy(),
                               rtol=1e-5, atol=1e-5)
    assert host.evaluate(x_test, y_test)["class_il"] == pytest.approx(
        on_device["class_il_matrix"][1][1], abs=100 / len(y_test) + 1e-9)
    assert host.fit_task(*tasks[2][:2], test_data=tasks[2][2:])["training_examples"] == 948
    with pytest.raises(RuntimeError, match="trained nothing"):
        host.load_device_state(str(tmp_path / "phone"))
    other = _learner(seed=3)
    with pytest.raises(CheckpointError, match="another config"):
        other.load_device_state(str(tmp_path / "phone"))
    with pytest.raises(DataError, match="no readable plan.json"):
        _learner().load_device_state(str(tmp_path / "export"))  # a model folder, not a device's
    (tmp_path / "lonely").mkdir()
    shutil.copy(model, tmp_path / "lonely" / "model.tflite")  # no signatures.json beside it
    with pytest.raises(DataError, match="no session plan beside"):
        DeviceLearner(str(tmp_path / "lonely" / "model.tflite"), str(tmp_path / "x"))
    assert not (tmp_path / "x").exists()
