"""The board's C code (tflite/micro/) compiled with the system compiler and checked against the
Python head: one train step on the same inputs and state, plus its own unit tests."""

import json
import os
import shutil
import subprocess

import numpy as np
import pytest
import tensorflow as tf

from sparcl_tf.micro.head import TRAIN_OUTPUTS, Head
from sparcl_tf.session.random import growth_seed
from sparcl_tf.sparsity.tdm import prune_and_grow

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MICRO = os.path.join(ROOT, "tflite", "micro")
F, H, C, B, R = 32, 48, 10, 16, 16
TERMS = [("mse", 0.1), ("ce", 0.5)]
W1_RATE = 2.5  # sparsity.rate_scaling's factor on the sparse kernel's rate (density 0.4)
GROWTH_SEED = 102700  # a growth seed of the session policy: growth_seed(42, 3, 9)
UPDATE_BYTES = 4 * 4 + F * H * (4 + 1 + 4 + 1)  # the mask-update block after the step


def _golden(path, refresh):
    head = Head(F, H, C, 0.04, -128, B, R, TERMS, gradient_keep=600, w1_rate_scale=W1_RATE)
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
                      np.array([0.04, 0.05, 1.0, W1_RATE], np.float32)):
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
        # a TDM mask update with the plan's growth hash, as the Python head makes it
        w1 = rng.normal(size=(F, H)).astype(np.float32) * mask
        gradient = rng.normal(size=(F, H)).astype(np.float32)
        active = int(mask.sum())
        prune_to, grow_to, seed = active - active // 10, active, GROWTH_SEED
        _, grown = prune_and_grow(w1, mask, gradient, prune_to, grow_to, seed, 0,
                                  importance_lambda=0.5)
        handle.write(np.array([seed, prune_to, grow_to], np.int32).tobytes())
        handle.write(np.float32(0.5).tobytes())
        for array in (w1, mask.astype(np.uint8), gradient, grown.astype(np.uint8)):
            handle.write(np.ascontiguousarray(array).tobytes())


def _golden_buffer(path, capacity=10, seed=12345):
    """What the Python host's buffer does with 100 offers in batches of 7, and its draws."""
    from sparcl_tf.session.buffer import ReservoirBuffer
    buffer = ReservoirBuffer(capacity, (1,), 3, seed, np.int8)
    offered = np.arange(100, dtype=np.int32) % 120
    for start in range(0, 100, 7):
        labels = offered[start:start + 7]
        buffer.add(labels.astype(np.int8)[:, None], labels,
                   np.stack([labels, 0 * labels, 0 * labels], 1).astype(np.float32),
                   np.zeros(len(labels)), labels)
    draws = [(5, 0, 6), (5, 1, 6), (17, 0, 10), (3, 1, 13)]
    with open(path, "wb") as handle:
        handle.write(np.array([seed, capacity, 3, len(offered)], np.int32).tobytes())
        handle.write(offered.tobytes())
        handle.write(buffer.labels.astype(np.int32).tobytes())
        handle.write(np.int32(len(draws)).tobytes())
        for step, draw, rows in draws:
            handle.write(np.array([step, draw, rows], np.int32).tobytes())
            handle.write(buffer.sample(rows, step, draw)[1].astype(np.int32).tobytes())


def test_c_buffer_keeps_and_draws_what_the_python_buffer_does(binary, tmp_path):
    _golden(tmp_path / "golden.bin", 1)
    _golden_buffer(tmp_path / "buffer.bin")
    result = subprocess.run([binary, str(tmp_path / "golden.bin"), str(tmp_path / "buffer.bin")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "golden buffer: 10 slots, 4 draws equal" in result.stdout
    data = bytearray((tmp_path / "buffer.bin").read_bytes())
    data[-4:] = np.int32(-1).tobytes()  # Python's last draw ends in another label
    (tmp_path / "buffer.bin").write_bytes(bytes(data))
    result = subprocess.run([binary, str(tmp_path / "golden.bin"), str(tmp_path / "buffer.bin")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and "draw (3, 1) row 12" in result.stderr


def _make(tmp_path_factory, target):
    """tflite/micro's `target` built with the system compiler (skipped without one)."""
    if shutil.which(os.environ.get("CC", "cc")) is None:
        pytest.skip("no C compiler on this machine")
    build = tmp_path_factory.mktemp(f"{target}_build")
    result = subprocess.run(["make", "-C", MICRO, f"BUILD={build}", f"{build}/{target}"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return str(build / target)


@pytest.fixture(scope="module")
def binary(tmp_path_factory):
    return _make(tmp_path_factory, "test_sparcl_micro")


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
    end = len(data) - UPDATE_BYTES - 4 * F * H - B - 4 * B * C
    data[end - 4:end] = np.float32(123.0).tobytes()
    golden.write_bytes(bytes(data))  # the expected loss is now wrong
    result = subprocess.run([binary, str(golden)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and "loss" in result.stderr


def test_c_mask_update_grows_what_the_python_head_grows(binary, tmp_path):
    assert GROWTH_SEED == growth_seed(42, 3, 9)
    golden = tmp_path / "golden.bin"
    _golden(golden, 1)
    data = bytearray(golden.read_bytes())
    expected = np.frombuffer(bytes(data[-F * H:]), np.uint8)
    grown = int(np.flatnonzero(expected)[-1])
    data[len(data) - F * H + grown] = 0  # Python's mask now lacks a position it grew
    data[len(data) - F * H + int(np.flatnonzero(expected == 0)[0])] = 1
    golden.write_bytes(bytes(data))
    result = subprocess.run([binary, str(golden)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and "2 mask entries differ from Python's" in result.stderr


# --- the board's task loop against the Python micro engine ------------------------------------

def _feature_stream(config, seed=5):
    """The config's task stream with int8 "backbone features" made up per class (no backbone:
    the loop is under test), as `micro.session.Features` holds them."""
    from types import SimpleNamespace

    from sparcl_tf.data import build_tasks, load_source
    tasks = build_tasks(load_source(config.data), config.data, config.seed)
    rng = np.random.default_rng(seed)
    prototypes = rng.normal(0, 40, (tasks.num_classes, 24))

    def features(labels):
        x = prototypes[labels] + rng.normal(0, 45, (len(labels), 24))
        return np.clip(np.rint(x), -128, 127).astype(np.int8)

    return tasks, SimpleNamespace(
        size=24, scale=0.05, zero_point=-3, arena_bytes=0,
        train=[features(t.y_train) for t in tasks.tasks],
        test=[features(t.y_test) for t in tasks.tasks])


@pytest.fixture(scope="module")
def board_session(tmp_path_factory):
    return _make(tmp_path_factory, "board_session")


@pytest.mark.parametrize("preset,overrides", [
    ("micro", {"optimizer__schedule": "cosine"}),
    ("micro", {"sparsity__schedule": "rigl", "sparsity__grow": "gradient",
               "optimizer__schedule": "step", "optimizer__milestones": (0.5,)}),
])
def test_board_loop_gives_the_python_micro_trace(idx_folder, tmp_path, board_session, preset,
                                                 overrides):
    """Three tasks of 90 examples (not a multiple of the batch), 3 epochs, 4 mask updates and 3
    removal stages a task, DER++ from the feature buffer, DGM refreshes: the board's C loop and
    the Python micro engine (TFLM) write the same trace; cancelled every 7 steps with a power
    cycle each time, the C loop writes it again."""
    from sparcl_tf.micro.board import write_board_session
    from sparcl_tf.micro.session import MicroSession
    from tests.conftest import assert_same_steps, tiny_config
    config = tiny_config(idx_folder, preset, data__num_tasks=3, data__train_per_task=90,
                         epochs_per_task=3, sparsity__updates_per_task=4, ddr__stages=3,
                         micro__hidden_units=16, micro__compare_steps=0, dgm__refresh_every=3,
                         **overrides)
    tasks, features = _feature_stream(config)
    records = []
    session = MicroSession(config, tasks, features, verbose=0, trace=records.append)
    write_board_session(tmp_path / "session.txt", session)
    session.run()
    kinds = {r["kind"] for r in records}
    assert kinds == {"step", "mask_update", "removal", "task_end"}
    assert sum(len(r["removed"]) for r in records if r["kind"] == "removal") > 0
    for cancel_every, trace in ((0, "trace.jsonl"), (7, "cancelled.jsonl")):
        result = subprocess.run([board_session, str(tmp_path / "session.txt"),
                                 str(tmp_path / trace), str(cancel_every)],
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stdout + result.stderr
        assert_same_steps(records, [json.loads(line) for line in
                                    (tmp_path / trace).read_text().splitlines()])
    assert (tmp_path / "trace.jsonl").read_text() == (tmp_path / "cancelled.jsonl").read_text()
    assert f"{len(tasks)} tasks" in result.stdout and "power cycles" in result.stdout
