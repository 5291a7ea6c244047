"""The board's C code (tflite/micro/) compiled with the system compiler and checked against the
Python head: one train step on the same inputs and state, plus its own unit tests."""

import os
import shutil
import subprocess

import numpy as np
import pytest
import tensorflow as tf

from sparcl_tf.micro.head import TRAIN_OUTPUTS, Head

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MICRO = os.path.join(ROOT, "tflite", "micro")
F, H, C, B, R = 32, 48, 10, 16, 16
TERMS = [("mse", 0.1), ("ce", 0.5)]


def _golden(path, refresh):
    head = Head(F, H, C, 0.04, -128, B, R, TERMS, gradient_keep=600)
    rng = np.random.default_rng(3)
    params = head.initial_parameters(1)
    mask = (rng.random((F, H)) < 0.5).astype(np.float32)
    params["w1"] *= mask
    gradient_mask = (rng.random((F, H)) < 0.7).astype(np.float32)
    inputs = dict(
        features=rng.integers(-128, 127, (B, F)).astype(np.int8),
        labels=rng.integers(4, 6, B).astype(np.int32),
        class_mask=np.isin(np.arange(C), [4, 5]).astype(np.float32),
        replay_features=rng.integers(-128, 127, (2, R, F)).astype(np.int8),
        replay_labels=rng.integers(0, 4, (2, R)).astype(np.int32),
        replay_logits=rng.normal(size=(2, R, C)).astype(np.float32))
    function = head.train_function()
    feed = dict(inputs, labels_onehot=np.eye(C, dtype=np.float32)[inputs["labels"]],
                replay_onehot=np.eye(C, dtype=np.float32)[inputs["replay_labels"]],
                replay_weight=np.float32(1.0), refresh=np.float32(refresh),
                learning_rate=np.float32(0.05), mask=mask,
                gradient_mask=gradient_mask, **params)
    out = dict(zip(TRAIN_OUTPUTS, function(*[tf.constant(feed[s.name])
                                             for s in function.input_signature])))
    out = {k: v.numpy() for k, v in out.items()}
    with open(path, "wb") as handle:
        for array in (np.array([F, H, C, B, R, 2, -128, 600, refresh], np.int32),
                      np.array([0.04, 0.05, 1.0], np.float32)):
            handle.write(array.tobytes())
        for kind, weight in TERMS:
            handle.write(np.int32(0 if kind == "mse" else 1).tobytes())
            handle.write(np.float32(weight).tobytes())
        for name in ("features", "labels", "class_mask", "replay_features", "replay_labels",
                     "replay_logits"):
            handle.write(np.ascontiguousarray(inputs[name]).tobytes())
        for name in ("w1", "b1", "w2", "b2"):
            handle.write(params[name].tobytes())
        handle.write(mask.astype(np.uint8).tobytes())
        handle.write(gradient_mask.astype(np.uint8).tobytes())
        for name in ("new_w1", "new_b1", "new_w2", "new_b2"):
            handle.write(out[name].astype(np.float32).tobytes())
        handle.write(out["new_gradient_mask"].astype(np.uint8).tobytes())
        handle.write(np.float32(out["loss"]).tobytes())
        handle.write(out["logits"].astype(np.float32).tobytes())
        handle.write(out["correct"].astype(np.uint8).tobytes())
        handle.write(out["gradient_w1"].astype(np.float32).tobytes())


@pytest.fixture(scope="module")
def binary(tmp_path_factory):
    if shutil.which(os.environ.get("CC", "cc")) is None:
        pytest.skip("no C compiler on this machine")
    build = tmp_path_factory.mktemp("micro_build")
    result = subprocess.run(["make", "-C", MICRO, f"BUILD={build}",
                             f"{build}/test_sparcl_micro"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return str(build / "test_sparcl_micro")


@pytest.mark.parametrize("refresh", [1, 0])
def test_c_train_step_matches_the_python_head(binary, tmp_path, refresh):
    golden = tmp_path / "golden.bin"
    _golden(golden, refresh)
    result = subprocess.run([binary, str(golden)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "all checks passed" in result.stdout


def test_c_tests_fail_on_a_wrong_golden_step(binary, tmp_path):
    golden = tmp_path / "golden.bin"
    _golden(golden, 1)
    data = bytearray(golden.read_bytes())
    data[-4 * F * H - B - 4 * B * C - 4:-4 * F * H - B - 4 * B * C] = np.float32(123.0).tobytes()
    golden.write_bytes(bytes(data))  # the expected loss is now wrong
    result = subprocess.run([binary, str(golden)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and "loss" in result.stderr
