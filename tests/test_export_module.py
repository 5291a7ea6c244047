"""The exported training module, run in LiteRT, does what the Keras trainer does."""

import numpy as np
import pytest
import tensorflow as tf

from sparcl_tf.export import convert, training_module
from sparcl_tf.session.plan import state_name
from sparcl_tf.sparsity import growth
from sparcl_tf.sparsity.masks import active_count

BATCH = 16  # tiny_config's batch and replay batch
STEP_LEARNING_RATE = 0.0123  # the train input, not the config's: the step must use it


def _relative_error(actual, expected):
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    return np.linalg.norm(actual - expected) / max(np.linalg.norm(expected), 1e-12)


@pytest.fixture(scope="module")
def exported(tmp_path_factory, idx_folder):
    """A sparcl_derpp_90 run (momentum 0.5) before training, its module and its .tflite."""
    from ai_edge_litert.interpreter import Interpreter

    from sparcl_tf.experiment import Experiment
    from tests.conftest import tiny_config
    config = tiny_config(idx_folder, "paper_sparcl_derpp_90", optimizer__momentum=0.5)
    run = Experiment(config, str(tmp_path_factory.mktemp("run")), verbose=0)
    module = training_module(config, run.network, run.kind)
    model = convert(module, str(tmp_path_factory.mktemp("saved")))
    return run, module, model, Interpreter(model_content=model)


def _batch(run, seed, task_classes=(2, 3)):
    rng = np.random.default_rng(seed)
    shape = run.tasks.image_shape
    return dict(
        images=rng.normal(size=(BATCH,) + shape).astype(np.float32),
        labels=rng.choice(task_classes, BATCH).astype(np.int32),
        class_mask=np.isin(np.arange(10), task_classes).astype(np.float32),
        replay_images=rng.normal(size=(2, BATCH) + shape).astype(np.float32),
        replay_labels=rng.integers(0, 2, (2, BATCH)).astype(np.int32),
        replay_logits=rng.normal(size=(2, BATCH, 10)).astype(np.float32),
        replay_weight=np.float32(1.0), refresh_gradient_masks=np.float32(1.0),
        learning_rate=np.float32(STEP_LEARNING_RATE))


def test_signatures_are_builtins_only_with_narrow_masks(exported):
    from sparcl_tf.export.audit import op_audit
    _, _, model, interpreter = exported
    audit = op_audit(model)
    assert set(audit) == {"infer", "train", "update_masks", "get_state", "set_state"}
    assert all(not entry["flex_ops"] for entry in audit.values())
    state = interpreter.get_signature_runner("get_state")(dummy=np.int32(0))
    assert state["conv2__mask"].dtype == np.bool_
    assert state["gradient_mask__fc1"].dtype == np.bool_
    assert "momentum__conv2__kernel" in state and "last_gradient__conv3" in state


# What LiteRT's Java `Interpreter.runSignature` accepts (and what the Kotlin session relies on):
# non-empty input and output maps, static shapes (buffers of exact byte counts), Java's dtypes.
JAVA_DTYPES = {np.float32, np.int32, np.int64, np.uint8, np.int8, np.int16, np.bool_}


def test_every_signature_follows_the_java_api_rules(exported):
    _, module, _, interpreter = exported
    signatures = interpreter.get_signature_list()
    assert set(signatures) == set(module.signatures())
    for key in signatures:
        runner = interpreter.get_signature_runner(key)
        for kind, details in (("inputs", runner.get_input_details()),
                              ("outputs", runner.get_output_details())):
            assert details, (key, kind)
            for name, detail in details.items():
                assert detail["dtype"] in JAVA_DTYPES, (key, name, detail["dtype"])
                assert all(d > 0 for d in detail["shape_signature"]), (
                    key, name, detail["shape_signature"])  # scalars: no dims, nothing dynamic
                assert np.array_equal(detail["shape"], detail["shape_signature"]), (key, name)


def test_infer_matches_tf_before_training(exported):
    run, module, _, interpreter = exported
    images = _batch(run, 0)["images"]
    lite = interpreter.get_signature_runner("infer")(images=images)["logits"]
    keras_logits = run.network(images, training=False).numpy()
    np.testing.assert_allclose(lite, keras_logits, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(module.infer(images)["logits"], keras_logits, rtol=1e-5, atol=1e-6)


def test_one_litert_train_step_matches_the_keras_trainer_step(exported):
    run, _, _, interpreter = exported
    inputs = _batch(run, 1)
    start = interpreter.get_signature_runner("get_state")(dummy=np.int32(0))
    lite = interpreter.get_signature_runner("train")(**inputs)
    after = interpreter.get_signature_runner("get_state")(dummy=np.int32(0))
    interpreter.get_signature_runner("set_state")(**start)  # leave the interpreter as found

    model = run.model  # the trainer's train step on the same inputs, at the same rate
    model.optimizer.learning_rate.assign(STEP_LEARNING_RATE)
    before = {v.path: v.numpy() for v in run.network.variables}
    keras_out = model.step(inputs["images"], inputs["labels"], inputs["class_mask"],
                           inputs["replay_images"], inputs["replay_labels"],
                           inputs["replay_logits"], inputs["replay_weight"], refresh=True)
    assert _relative_error(lite["loss"], keras_out["loss"].numpy()) < 1e-5
    np.testing.assert_allclose(lite["gradient_density"], keras_out["gradient_density"].numpy(),
                               rtol=1e-6)
    for variable in run.network.variables:
        name = state_name(variable)
        assert _relative_error(after[name], variable.numpy()) < 1e-5, name
        if variable.trainable:
            assert not np.array_equal(variable.numpy(), before[variable.path]), name
    for layer in model.sparse:
        kernel, mask = after[f"{layer.name}__kernel"], after[f"{layer.name}__mask"]
        assert np.all(kernel[~mask] == 0.0)
        keep = active_count(mask.size, 0.92)
        gradient_mask = after[f"gradient_mask__{layer.name}"]
        assert gradient_mask.sum() == keep and np.all(mask[gradient_mask])
        np.testing.assert_array_equal(gradient_mask, model.masking.groups["gradient_mask"][
            model.sparse.index(layer)].numpy() > 0)
        # float32 sums in another order: per-entry noise ~1e-6, so compare the whole tensor
        assert _relative_error(after[f"last_gradient__{layer.name}"],
                               model.last_gradients[model.sparse.index(layer)].numpy()) < 1e-4
    np.testing.assert_allclose(lite["gradient_density"],
                               [keep_fraction(layer, after) for layer in model.sparse], rtol=1e-6)


def keep_fraction(layer, state):
    mask = state[f"gradient_mask__{layer.name}"] & state[f"{layer.name}__mask"]
    return mask.mean()


def test_update_masks_hits_exact_counts_and_zeroes_dropped_weights(exported):
    run, _, _, interpreter = exported
    start = interpreter.get_signature_runner("get_state")(dummy=np.int32(0))
    interpreter.get_signature_runner("train")(**_batch(run, 2))
    before = interpreter.get_signature_runner("get_state")(dummy=np.int32(0))
    names = [layer.name for layer in run.model.sparse]
    sizes = [before[f"{name}__mask"].size for name in names]
    prune_to = np.array([active_count(n, 0.92) for n in sizes], np.int32)
    grow_to = np.array([active_count(n, 0.90) for n in sizes], np.int32)
    update = interpreter.get_signature_runner("update_masks")
    pruned_active = update(prune_to=prune_to, grow_to=prune_to, seed=np.int32(7))["active"]
    pruned = interpreter.get_signature_runner("get_state")(dummy=np.int32(0))
    grown_active = update(prune_to=grow_to, grow_to=grow_to + 5, seed=np.int32(7))["active"]
    after = interpreter.get_signature_runner("get_state")(dummy=np.int32(0))
    interpreter.get_signature_runner("set_state")(**start)
    np.testing.assert_array_equal(pruned_active, prune_to)
    np.testing.assert_array_equal(grown_active, grow_to + 5)
    for name, kept in zip(names, prune_to):
        old, survivors, new = (state[f"{name}__mask"] for state in (before, pruned, after))
        assert survivors.sum() == kept and np.all(old[survivors])
        kernel = pruned[f"{name}__kernel"]
        assert np.all(kernel[~survivors] == 0)
        assert np.all(pruned[f"momentum__{name}__kernel"][~survivors] == 0)
        np.testing.assert_array_equal(kernel[survivors], before[f"{name}__kernel"][survivors])
        importance = np.abs(before[f"{name}__kernel"]) + 0.5 * np.abs(
            before[f"last_gradient__{name}"] * old)
        assert importance[survivors].min() >= importance[old & ~survivors].max()
        # growth only adds positions, and they start at exactly zero
        assert new.sum() == kept + (grow_to - prune_to)[names.index(name)] + 5
        assert np.all(new[survivors])
        grown = new & ~survivors
        assert np.all(after[f"{name}__kernel"][grown] == 0)
        assert np.all(after[f"momentum__{name}__kernel"][grown] == 0)


def test_random_growth_scores_are_distinct_seeded_and_the_same_on_host_and_device():
    positions = tf.range(50_000)
    first = growth.scores_tf(positions, tf.constant(3), 1).numpy()
    assert len(np.unique(first)) == first.size and first.min() >= 1
    np.testing.assert_array_equal(first, growth.scores(np.arange(50_000), 3, 1))
    assert not np.array_equal(first, growth.scores_tf(positions, tf.constant(4), 1).numpy())
    # the largest seed the plan hands out keeps every int32 sum exact, fresh filters included
    top = growth.GROWTH_SEEDS - 1 if hasattr(growth, "GROWTH_SEEDS") else (1 << 17) - 1
    layer = 40 + growth.FRESH_FILTER_LAYER_OFFSET
    np.testing.assert_array_equal(growth.scores_tf(positions, tf.constant(top), layer).numpy(),
                                  growth.scores(np.arange(50_000), top, layer))


def test_state_round_trips_through_set_and_get(exported):
    _, _, _, interpreter = exported
    state = interpreter.get_signature_runner("get_state")(dummy=np.int32(0))
    changed = {k: ~v if v.dtype == np.bool_ else (v + 1.0).astype(v.dtype)
               for k, v in state.items()}
    assert interpreter.get_signature_runner("set_state")(**changed)["variables"] == len(state)
    back = interpreter.get_signature_runner("get_state")(dummy=np.int32(0))
    for name, value in changed.items():
        np.testing.assert_array_equal(back[name], value)
    interpreter.get_signature_runner("set_state")(**state)



def test_derpp_on_a_shared_draw_trains_in_litert_like_keras(tmp_path):
    """One replay draw fed to both DER++ terms: the exported step takes one draw and equals the
    Keras step."""
    import keras

    from sparcl_tf.export.module import TrainingModule, export_network
    from sparcl_tf.methods import DERPP
    from sparcl_tf.models import build_model
    from sparcl_tf.sparsity.kind import WeightMasks
    from tests.conftest import assert_litert_step_equals_keras
    keras.utils.set_random_seed(1)
    network = build_model("edge_cnn", (28, 28, 1), 10, width=0.25)
    method, batch = DERPP(alpha=0.1, beta=0.5, shared_draw=True), 8
    module = TrainingModule(export_network(network), method, batch, batch,
                            WeightMasks(mask_rule="tdm"))
    model = convert(module, str(tmp_path))
    assert module.train.input_signature[3].shape[0] == 1  # replay_images: one draw
    assert_litert_step_equals_keras(model, network, method, batch, 0.05)


def test_rate_scaled_sparse_layers_train_in_litert_like_keras(tmp_path, idx_folder):
    """sparsity.rate_scaling: the sparse kernels' factors are constants of the exported step."""
    import keras

    from sparcl_tf.config import validate
    from sparcl_tf.export.module import TrainingModule, export_network
    from sparcl_tf.methods import DERPP
    from sparcl_tf.models import build_model
    from sparcl_tf.sparsity.kind import WeightMasks
    from tests.conftest import assert_litert_step_equals_keras, tiny_config
    config = validate(tiny_config(idx_folder, "static_derpp_90",
                                  sparsity__rate_scaling="inverse_density"))
    kind = WeightMasks(config, mask_rule="tdm")
    keras.utils.set_random_seed(2)
    network = build_model("edge_cnn", (28, 28, 1), 10, width=0.25)
    assert kind.gradient_masking(network).rate_scales == pytest.approx([10.0] * 4)
    method, batch = DERPP(alpha=0.1, beta=0.5), 8
    model = convert(TrainingModule(export_network(network), method, batch, batch, kind),
                    str(tmp_path))
    assert_litert_step_equals_keras(model, network, method, batch, 0.05, kind=kind)
