"""Continual learning through the .tflite alone: the LiteRT session, its state files, bad inputs."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from sparcl_tf.errors import ConfigError, DataError
from sparcl_tf.ondevice import DeviceModel, OnDeviceSession
from sparcl_tf.sparsity.masks import active_count

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _config(idx_folder, preset="paper_sparcl_derpp_90", **overrides):
    from tests.conftest import tiny_config
    return tiny_config(idx_folder, preset, data__num_tasks=2, data__train_per_task=96,
                       log__tensorboard=False, **overrides)


def _convert(config, directory):
    """The run's initial state as a training .tflite (what `tools.convert --state=initial` does)."""
    from sparcl_tf.experiment import Experiment
    from sparcl_tf.export import convert, training_module
    run = Experiment(config, str(directory / "run"), verbose=0)
    path = str(directory / "model.tflite")
    with open(path, "wb") as handle:
        handle.write(convert(training_module(config, run.network, run.kind),
                             str(directory / "saved")))
    return path


@pytest.fixture(scope="module")
def model_path(idx_folder, tmp_path_factory):
    return _convert(_config(idx_folder), tmp_path_factory.mktemp("model"))


@pytest.fixture(scope="module")
def finished(idx_folder, model_path, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("session")
    results = OnDeviceSession(model_path, _config(idx_folder), str(workdir), verbose=0).run()
    return results, workdir


def test_session_trains_every_task_with_exact_masks_and_data_removal(finished, model_path):
    results, workdir = finished
    assert len(results["class_il_matrix"]) == 2 and results["steps"] > 0
    assert results["runtime"] == "litert"
    state = np.load(workdir / "device_state" / "task_1.npz")
    for name in ("conv2", "conv3", "conv4", "fc1"):
        kernel, mask = state[f"{name}__kernel"], state[f"{name}__mask"]
        assert np.all(kernel[~mask] == 0.0)
        assert mask.sum() == active_count(mask.size, 0.90)  # the last update freezes the target
        assert results["layer_sparsity"][name] >= 0.90
    assert 0 < results["examples_removed"] <= 2 * round(0.3 * 96)  # only presented ones go
    assert 0 < results["training_flops"] < results["dense_training_flops"]
    assert os.path.exists(workdir / "accuracy_matrix.png")
    # the model file is untouched: the session's state lives in its own files
    untouched = DeviceModel(model_path).get_state()
    assert not np.array_equal(untouched["conv3__kernel"], state["conv3__kernel"])


def test_session_follows_the_trainers_schedule_and_results_schema(finished, idx_folder,
                                                                  tmp_path):
    from sparcl_tf.experiment import run_experiment
    trainer = run_experiment(_config(idx_folder), str(tmp_path), verbose=0)
    results, _ = finished
    assert set(results) - set(trainer) == {"runtime", "model_file"}
    assert set(trainer) <= set(results)
    for key in ("steps", "examples_presented", "examples_removed", "dense_training_flops",
                "parameters"):
        assert results[key] == trainer[key], key


def test_interrupted_session_resumes_to_the_same_results(finished, idx_folder, model_path,
                                                         tmp_path):
    assert OnDeviceSession(model_path, _config(idx_folder), str(tmp_path), verbose=0).run(
        stop_after_task=0) is None
    resumed = OnDeviceSession(model_path, _config(idx_folder), str(tmp_path), verbose=0)
    assert resumed.progress.task == 1
    results = resumed.run()
    assert sorted(os.listdir(tmp_path / "device_state")) == ["task_0.npz", "task_1.npz"]
    expected, _ = finished
    for key in ("class_il_matrix", "task_il_matrix", "training_flops", "examples_removed",
                "layer_sparsity", "gradient_density", "steps"):
        assert results[key] == expected[key], key


def test_a_corrupt_model_is_a_data_error(tmp_path, idx_folder):
    path = tmp_path / "model.tflite"
    path.write_bytes(b"TFL3" + bytes(range(200)))
    with pytest.raises(DataError, match="not a readable .tflite"):
        DeviceModel(str(path))
    with pytest.raises(DataError, match="cannot read model"):
        DeviceModel(str(tmp_path / "missing.tflite"))


def test_a_damaged_or_cut_model_is_refused_before_litert_loads_it(model_path, tmp_path):
    """Damage in the weights' bytes, which no structural check sees, fails the model_sha256 of
    the signatures.json beside the model; a cut file fails the flatbuffer checks."""
    from sparcl_tf.export.model_file import checksum
    with open(model_path, "rb") as handle:
        model = bytearray(handle.read())
    (tmp_path / "signatures.json").write_text(json.dumps({"model_sha256": checksum(model)}))
    model[len(model) // 2] ^= 0xFF
    (tmp_path / "model.tflite").write_bytes(bytes(model))
    with pytest.raises(DataError, match="does not match the model_sha256 of the signatures.json"):
        DeviceModel(str(tmp_path / "model.tflite"))
    (tmp_path / "cut").mkdir()  # no signatures.json beside it: structure alone
    (tmp_path / "cut" / "model.tflite").write_bytes(bytes(model[:len(model) // 3]))
    with pytest.raises(DataError, match="truncated or corrupt"):
        DeviceModel(str(tmp_path / "cut" / "model.tflite"))


def test_a_model_without_the_training_signatures_is_refused(tmp_path):
    module = tf.Module()
    module.scale = tf.Variable(2.0)
    module.infer = tf.function(lambda images: {"logits": images * module.scale},
                               input_signature=[tf.TensorSpec((1, 4), tf.float32)])
    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [module.infer.get_concrete_function()], module)
    path = tmp_path / "infer_only.tflite"
    path.write_bytes(converter.convert())
    with pytest.raises(DataError, match=r"lacks the signatures \['infer', 'train', 'get_state', "
                                        r"'set_state'\] \(has \['serving_default'\]\)"):
        DeviceModel(str(path))


def test_set_state_refuses_wrong_names_shapes_and_dtypes(model_path, tmp_path):
    device = DeviceModel(model_path)
    state = device.get_state()
    wrong_shape = dict(state, conv2__kernel=state["conv2__kernel"][..., :1])
    with pytest.raises(DataError, match=r"'conv2__kernel' is float32\[3, 3, 8, 1\]"):
        device.set_state(wrong_shape)
    with pytest.raises(DataError, match="'conv2__mask' is float32"):
        device.set_state(dict(state, conv2__mask=state["conv2__mask"].astype(np.float32)))
    with pytest.raises(DataError, match=r"missing \['conv2__kernel'\]"):
        device.set_state({k: v for k, v in state.items() if k != "conv2__kernel"})
    (tmp_path / "state.npz").write_bytes(b"not an npz")
    with pytest.raises(DataError, match="cannot read state file"):
        device.load_state(str(tmp_path / "state.npz"))
    np.testing.assert_array_equal(device.get_state()["conv2__kernel"], state["conv2__kernel"])


def test_a_model_converted_for_another_config_is_a_config_error(model_path, idx_folder,
                                                                tmp_path):
    config = _config(idx_folder, batch_size=8)
    with pytest.raises(ConfigError, match="batch_size: model 16, plan 8"):
        OnDeviceSession(model_path, config, str(tmp_path), verbose=0)
    with pytest.raises(ConfigError, match="replay draws: model 2, plan 1"):
        OnDeviceSession(model_path, _config(idx_folder, "paper_sparcl_er"), str(tmp_path),
                        verbose=0)


def test_results_file_is_valid_json(finished):
    _, workdir = finished
    assert json.loads((workdir / "results.json").read_text())["preset"] == "paper_sparcl_derpp_90"
