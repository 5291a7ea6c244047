"""tools.convert and the op audit."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from sparcl_tf.errors import DataError
from sparcl_tf.export.audit import op_audit
from sparcl_tf.session.plan import SessionPlan

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _tool(*args):
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)


def test_convert_writes_a_builtins_only_model_with_its_interface(tmp_path, idx_folder):
    from sparcl_tf.experiment import run_experiment
    from tests.conftest import tiny_config
    workdir = tmp_path / "run"
    run_experiment(tiny_config(idx_folder, "paper_sparcl_derpp_90", data__train_per_task=48,
                               data__num_tasks=2, batch_size=32, replay__batch_size=32,
                               replay__buffer_size=500, log__tensorboard=False),
                   str(workdir), verbose=0)
    result = _tool("tools.convert", f"--workdir={workdir}")
    assert result.returncode == 0, result.stderr
    audit = json.loads((workdir / "op_audit.json").read_text())
    assert set(audit) == {"infer", "train", "update_masks", "get_state", "set_state"}
    assert all(entry["flex_ops"] == [] for entry in audit.values())
    # width 0.25: conv1-3 (<= 128 weights per kernel offset) stay CONV_2D / TRANSPOSE_CONV;
    # conv4 and the dense layers are batch matmuls
    assert {"CONV_2D", "TRANSPOSE_CONV", "BATCH_MATMUL"} <= set(audit["train"]["ops"])
    signatures = json.loads((workdir / "signatures.json").read_text())
    assert signatures["train"]["inputs"]["images"]["shape"] == [32, 28, 28, 1]
    assert signatures["train"]["inputs"]["class_mask"]["meaning"].startswith("1.0 for")
    assert set(signatures["train"]["outputs"]) == {"loss", "logits", "correct",
                                                   "gradient_density"}
    assert signatures["sparse_layers"] == ["conv2", "conv3", "conv4", "fc1"]
    plan = signatures["session_plan"]
    assert plan["version"] == 4 and plan["unit"] == "weights" and "tasks" not in plan
    assert plan["schedule"]["removal"] == {"fraction": 0.3, "stages": 4, "min_task_steps": 0}
    events = SessionPlan.from_json(plan).task_events(1, 48)  # a task's events, when it begins
    assert [e.update_index for e in events] == list(range(10))
    assert [e.removal_stage for e in events] == [0, 1, 2, 3, 4, 0, 0, 0, 0, 0]
    assert [e.removal_target for e in events if e.removal_stage] == [4, 7, 11, 14]
    sizes = [3 * 3 * 8 * 8, 3 * 3 * 8 * 16, 3 * 3 * 16 * 16, 7 * 7 * 16 * 32]
    assert plan["layer_units"] == sizes and plan["replay"]["buffer_size"] == 500
    last = events[-1]
    assert list(last.prune_to) == list(last.grow_to) == [n - round(0.9 * n) for n in sizes]
    assert plan["dgm_refresh_every"] == 30 and plan["momentum_reset_per_task"]
    assert signatures["get_state"]["outputs"]["conv2__mask"]["dtype"] == "bool"
    trained_state = _model_state(workdir / "model.tflite")

    initial = _tool("tools.convert", f"--workdir={workdir}", "--state=initial", "--task_data")
    assert initial.returncode == 0, initial.stderr
    with np.load(workdir / "task_data.npz") as data:  # the stream, for the Kotlin session's host
        assert len(data["train_ids_1"]) == 48 and data["train_images_0"].dtype == np.uint8
    initial_state = _model_state(workdir / "model.tflite")
    from sparcl_tf.experiment import Experiment
    fresh = Experiment(_run_config(workdir), str(tmp_path / "fresh"), verbose=0)
    for variable in fresh.network.variables:
        name = variable.path.replace("/", "__")
        assert (initial_state[name] == (variable.numpy() > 0 if variable.dtype == "bool"
                                        else variable.numpy())).all(), name
    assert not (initial_state["conv3__kernel"] == trained_state["conv3__kernel"]).all()


def _model_state(path):
    from ai_edge_litert.interpreter import Interpreter
    return Interpreter(model_path=str(path)).get_signature_runner("get_state")(dummy=np.int32(0))


def _run_config(workdir):
    import ml_collections
    return ml_collections.ConfigDict(json.loads((workdir / "config.json").read_text()))


def test_flex_variant_adds_save_and_restore_only_there(tmp_path, idx_folder):
    # Flex ops cannot run in this interpreter: the variant is checked by its conversion only.
    result = _tool("tools.convert", f"--workdir={tmp_path}",
                   "--config=configs/split_fmnist.py:sparcl_derpp",
                   f"--config.data.dir={idx_folder}",
                   "--config.model.width=0.25", "--flex")
    assert result.returncode == 0, result.stderr
    audit = json.loads((tmp_path / "op_audit.json").read_text())
    assert audit["save"]["flex_ops"] == ["FlexSave"]
    assert audit["restore"]["flex_ops"] == ["FlexRestore"]
    assert all(not entry["flex_ops"] for key, entry in audit.items()
               if key not in ("save", "restore"))
    signatures = json.loads((tmp_path / "signatures.json").read_text())
    assert "Select-TF" in signatures["save"]["inputs"]["checkpoint_path"]["meaning"]
    assert signatures["train"]["inputs"]["images"]["shape"] == [32, 28, 28, 1]


def test_flex_save_and_restore_round_trip_in_tensorflow(idx_folder, tmp_path):
    from sparcl_tf.experiment import Experiment
    from sparcl_tf.export import training_module
    from tests.conftest import tiny_config
    config = tiny_config(idx_folder, "paper_sparcl_derpp")
    run = Experiment(config, str(tmp_path / "run"), verbose=0)
    module = training_module(config, run.network, run.kind, flex=True)
    path = tf.constant(str(tmp_path / "state.ckpt"))
    saved = {k: v.numpy() for k, v in module.get_state(tf.constant(0)).items()}
    module.save(path)
    module.set_state({k: tf.zeros_like(v) for k, v in saved.items()})
    module.restore(path)
    for name, value in module.get_state(tf.constant(0)).items():
        assert (value.numpy() == saved[name]).all(), name


def test_convert_without_a_run_or_config_is_one_line(tmp_path):
    result = _tool("tools.convert", f"--workdir={tmp_path}")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.splitlines() == [
        f"error: {tmp_path} holds no run (no config.json): pass --config=FILE:PRESET for a "
        f"fresh model"]


def test_audit_lists_flex_ops_of_a_stock_gradient_model():
    module = tf.Module()
    kernel = tf.Variable(tf.ones((3, 3, 1, 2)))
    module.kernel = kernel

    @tf.function(input_signature=[tf.TensorSpec((1, 5, 5, 1), tf.float32)])
    def step(images):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(tf.nn.relu(tf.nn.conv2d(images, kernel, 1, "SAME")))
        return {"gradient": tape.gradient(loss, kernel)}

    module.step = step
    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [step.get_concrete_function()], module)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS,
                                           tf.lite.OpsSet.SELECT_TF_OPS]
    converter.experimental_enable_resource_variables = True
    audit = op_audit(converter.convert())
    (entry,) = audit.values()
    assert "FlexReluGrad" in entry["flex_ops"] and "FlexConv2DBackpropFilter" in entry["flex_ops"]


def test_audit_of_a_corrupt_file_is_a_data_error():
    with pytest.raises(DataError, match="tflite"):
        op_audit(b"\x00\x01not a flatbuffer at all")


def test_a_graph_needing_flex_ops_is_reported_by_op_and_layer(idx_folder, tmp_path):
    from sparcl_tf.experiment import Experiment
    from sparcl_tf.export import convert, training_module
    from sparcl_tf.export.audit import flex_ops_by_layer
    from sparcl_tf.layers import use_builtin_gradients
    from tests.conftest import tiny_config
    config = tiny_config(idx_folder, "derpp")
    run = Experiment(config, str(tmp_path / "run"), verbose=0)
    module = training_module(config, run.network, run.kind)
    use_builtin_gradients(module._network, False)  # stock TF gradients: ReluGrad & co.
    with pytest.raises(Exception) as failure:
        convert(module, str(tmp_path / "saved"))
    needs = flex_ops_by_layer(failure.value, [layer.name for layer in module._network.layers])
    assert needs["ReluGrad"] == ["conv1_relu", "conv2_relu", "conv3_relu", "conv4_relu",
                                 "fc1_relu"]
    assert set(needs["Conv2DBackpropFilter"]) <= {"conv1", "conv2", "conv3", "conv4"}
    assert needs["Conv2DBackpropFilter"]
