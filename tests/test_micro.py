"""The microcontroller path: TFLM-only head models, the budgeted session, bad input."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from sparcl_tf.errors import ConfigError
from sparcl_tf.export.audit import op_audit
from sparcl_tf.micro.head import TRAIN_OUTPUTS, Head, convert_function
from sparcl_tf.micro.runtime import LiteModel, MicroModel, minimum_arena_bytes
from sparcl_tf.sparsity.masks import active_count

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TFLM_MISSING = {"ONE_HOT", "TOPK_V2", "SELECT"}


def _config(idx_folder, **overrides):
    from tests.conftest import tiny_config
    return tiny_config(idx_folder, "micro", data__num_tasks=3, micro__pretrain_epochs=1,
                       micro__hidden_units=16, micro__compare_steps=2, replay__buffer_size=40,
                       **overrides)


def test_head_step_runs_in_tflm_like_tensorflow_and_litert():
    head = Head(24, 16, 10, 0.05, -128, 8, 8, [("mse", 0.1), ("ce", 0.5)], 150)
    function = head.train_function()
    model = convert_function(function)
    (entry,) = op_audit(model).values()  # one subgraph: what TFLM runs
    assert not TFLM_MISSING & set(entry["ops"])
    rng = np.random.default_rng(0)
    params = head.initial_parameters(0)
    mask = (rng.random((24, 16)) < 0.5).astype(np.float32)
    params["w1"] *= mask
    inputs = dict(
        features=rng.integers(-128, 127, (8, 24)).astype(np.int8),
        labels_onehot=np.eye(10, dtype=np.float32)[rng.integers(2, 4, 8)],
        class_mask=np.isin(np.arange(10), [2, 3]).astype(np.float32),
        replay_features=rng.integers(-128, 127, (2, 8, 24)).astype(np.int8),
        replay_onehot=np.eye(10, dtype=np.float32)[rng.integers(0, 2, (2, 8))],
        replay_logits=rng.normal(size=(2, 8, 10)).astype(np.float32),
        replay_weight=np.float32(1.0), refresh=np.float32(1.0), learning_rate=np.float32(0.05),
        mask=mask,
        gradient_mask=np.ones((24, 16), np.float32), **params)
    reference = dict(zip(TRAIN_OUTPUTS, (t.numpy() for t in function(
        *[tf.constant(inputs[s.name]) for s in function.input_signature]))))
    micro = MicroModel(model, TRAIN_OUTPUTS, minimum_arena_bytes(model))(**inputs)
    lite = LiteModel(model, TRAIN_OUTPUTS)(**inputs)
    for out in (micro, lite):
        assert abs(out["loss"] - reference["loss"]) <= 1e-5 * abs(reference["loss"])
        for name in ("new_w1", "new_b1", "new_w2", "new_b2"):
            np.testing.assert_allclose(out[name], reference[name], rtol=1e-5, atol=1e-6)
    assert micro["new_gradient_mask"].sum() <= 150
    assert np.all(micro["new_w1"][mask == 0] == 0)


def test_arena_search_finds_the_smallest_arena_that_allocates():
    head = Head(8, 4, 3, 0.1, 0, 2, 2, [], 32)
    model = convert_function(head.infer_function())
    arena = minimum_arena_bytes(model, granularity=16)
    MicroModel(model, ["logits"], arena)
    with pytest.raises(RuntimeError):
        MicroModel(model, ["logits"], arena - 32)


@pytest.fixture(scope="module")
def micro_results(idx_folder, tmp_path_factory):
    from sparcl_tf.micro.session import run_micro
    workdir = tmp_path_factory.mktemp("micro")
    return run_micro(_config(idx_folder), str(workdir), verbose=0), workdir


def test_micro_session_fits_the_budget_and_agrees_with_litert(micro_results):
    results, workdir = micro_results
    assert len(results["class_il_matrix"]) == 3 and results["runtime"] == "tflm"
    assert results["arena_bytes"] == results["backbone_arena_bytes"] + max(
        results["head_arena_bytes"].values())
    assert results["arena_plus_buffer_bytes"] == results["arena_bytes"] + results["buffer_bytes"]
    assert results["arena_plus_buffer_bytes"] <= results["memory_budget_bytes"]
    assert results["buffer_bytes"] == 40 * (results["feature_size"] + 1 + 4 * 10)
    assert results["litert_compared_steps"] == 3 * 2
    assert results["litert_max_relative_loss_difference"] < 1e-5
    # TFLM and LiteRT's reference kernels agree exactly (XNNPACK rounds int8 differently)
    assert results["backbone_tflm_vs_litert_reference_max_steps"] == 0
    size = results["feature_size"] * 16
    assert results["mask_sparsity"]["head_hidden"] == pytest.approx(
        1 - active_count(size, 0.5) / size)
    assert results["layer_sparsity"]["head_hidden"] >= results["mask_sparsity"]["head_hidden"]
    assert 0 < results["examples_removed"] and "finetune_class_il" in results
    for name in ("backbone_int8.tflite", "head_train.tflite", "head_infer.tflite",
                 "results.json"):
        assert os.path.getsize(workdir / name) > 0
    assert results["model_bytes"] == sum(
        os.path.getsize(workdir / f) for f in ("backbone_int8.tflite", "head_train.tflite",
                                               "head_infer.tflite"))


def test_a_budget_too_small_is_refused_before_training(idx_folder, tmp_path):
    from sparcl_tf.micro.session import run_micro
    with pytest.raises(ConfigError, match="micro.memory_budget_bytes=20000: the TFLM arenas"):
        run_micro(_config(idx_folder, micro__memory_budget_bytes=20000), str(tmp_path),
                  verbose=0)


def test_micro_path_refuses_other_models_and_no_tasks_left(idx_folder, tmp_path):
    from sparcl_tf.micro.session import run_micro
    with pytest.raises(ConfigError, match="supports model.name"):
        run_micro(_config(idx_folder, model__name="mlp"), str(tmp_path), verbose=0)
    with pytest.raises(ConfigError, match="micro.pretrain_tasks=3 must be below"):
        run_micro(_config(idx_folder, micro__pretrain_tasks=3), str(tmp_path), verbose=0)
    with pytest.raises(ConfigError, match="method.masked_logits 'excluded'"):
        run_micro(_config(idx_folder, method__masked_logits="constant"), str(tmp_path),
                  verbose=0)
    with pytest.raises(ConfigError, match="method.shared_draw=true is not on the micro path"):
        run_micro(_config(idx_folder, method__shared_draw=True), str(tmp_path), verbose=0)


def test_results_json_is_written(micro_results):
    _, workdir = micro_results
    assert json.loads((workdir / "results.json").read_text())["preset"] == "micro"
