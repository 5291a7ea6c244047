"""tools.convert and the op audit."""

import json
import os
import subprocess
import sys

import pytest
import tensorflow as tf

from sparcl_tf.errors import DataError
from sparcl_tf.export.audit import op_audit

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _tool(*args):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True,
                          text=True, env=env, timeout=600)


def test_convert_writes_a_builtins_only_model_with_its_interface(tmp_path, idx_folder):
    workdir = tmp_path / "run"
    trained = _tool("tools.train", "--config=configs/split_fmnist.py:sparcl_derpp_90",
                    f"--workdir={workdir}", f"--config.data.dir={idx_folder}",
                    "--config.data.train_per_task=48", "--config.data.num_tasks=2",
                    "--config.model.width=0.25", "--config.epochs_per_task=1", "--quiet")
    assert trained.returncode == 0, trained.stderr
    result = _tool("tools.convert", f"--workdir={workdir}")
    assert result.returncode == 0, result.stderr
    audit = json.loads((workdir / "op_audit.json").read_text())
    assert set(audit) == {"infer", "train", "get_state", "set_state"}
    assert all(entry["flex_ops"] == [] for entry in audit.values())
    assert "CONV_2D" in audit["train"]["ops"] and "TRANSPOSE_CONV" in audit["train"]["ops"]
    signatures = json.loads((workdir / "signatures.json").read_text())
    assert signatures["train"]["inputs"]["images"]["shape"] == [32, 28, 28, 1]
    assert signatures["train"]["inputs"]["class_mask"]["meaning"].startswith("1.0 for")
    assert set(signatures["train"]["outputs"]) == {"loss", "logits", "correct"}
    assert (workdir / "model.tflite").stat().st_size > 0


def test_convert_without_a_run_or_config_is_one_line(tmp_path):
    result = _tool("tools.convert", f"--workdir={tmp_path}")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert [l for l in result.stderr.splitlines() if l.startswith("error:")] == [
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
