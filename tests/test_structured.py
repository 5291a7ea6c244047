"""Channel-structured SparCL: compacted layers, filter-level TDM, full view, resume, export."""

import numpy as np
import pytest
import tensorflow as tf
from conftest import run_until_interrupted

from sparcl_tf.errors import ConfigError
from sparcl_tf.experiment import Experiment
from sparcl_tf.layers import channel_masks, sparsifiable_layers
from sparcl_tf.models import build_model
from sparcl_tf.sparsity.schedule import tdm_phase
from sparcl_tf.sparsity.structured import filter_counts, full_view


def test_filter_counts_open_and_swap_at_least_one_filter():
    assert filter_counts(64, 0.9, 0.01, 0.01) == (6, 1, 1)      # 1 % of 64 rounds up to 1
    assert filter_counts(128, 0.75, 0.01, 0.01) == (32, 1, 1)
    assert filter_counts(16, 0.9, 0.0, 0.0) == (2, 0, 0)
    assert filter_counts(4, 0.0, 0.5, 0.01) == (4, 0, 1)        # nothing left to open
    counts = [tdm_phase(i, 10, 6, 1, 1) for i in range(10)]
    assert counts == [(6, 7)] + [(5, 6)] * 8 + [(6, 6)]


def _experiment(make_config, tmp_path, preset="sparcl_derpp_f90", **overrides):
    config = make_config(preset, **{"model__width": 1.0, **overrides})
    return Experiment(config, str(tmp_path), verbose=0)


@pytest.mark.parametrize("model, width, filter_sparsity", [("edge_cnn", 1.0, 1 - 0.1 ** 0.5),
                                                         ("resnet18", 0.25, 0.9)])
def test_structured_presets_remove_their_share_of_weights(make_config, tmp_path, model, width,
                                                          filter_sparsity):
    # s90: 90 % fewer weights in the layers the unstructured preset sparsifies; the edge CNN's
    # pruned layers feed each other (filters kept: sqrt(0.1)), ResNet's feed unpruned convs.
    run = _experiment(make_config, tmp_path, preset="paper_sparcl_derpp_s90", model__name=model,
                      model__width=width)
    targets = {name: filter_counts(full, filter_sparsity, 0.01, 0.01)[0]
               for name, full in run.kind.full_filters.items()}
    assert run.engine.updater.active_filters() == targets
    full = build_model(model, (28, 28, 1), 10, width=width)
    names = [layer.name for layer in sparsifiable_layers(full)]
    kept = sum(int(np.count_nonzero(run.network.get_layer(n).kernel.numpy())) for n in names)
    total = sum(int(np.prod(full.get_layer(n).kernel.shape)) for n in names)
    assert abs(kept / total - 0.10) < 0.01, kept / total
    # structured DGM updates the share of the active filters unstructured DGM updates of the
    # active weights: 0.08 / 0.10 (ResNet at 0.90 / 0.92: n - round(0.92 n) filters)
    keep = [max(1, round((1 - filter_sparsity) * 0.8 * run.kind.full_filters[layer.name]))
            for layer in sparsifiable_layers(run.network)]
    assert run.model.masking.keep == keep


def _check_slots(run):
    """Inactive slots pass nothing: zero filter and outgoing weights, BN reset."""
    for group in channel_masks(run.network):
        mask = group.mask.numpy()
        inactive = mask == 0
        kernel = run.network.get_layer(group.producer).kernel.numpy()
        assert np.all(kernel[..., inactive] == 0), group.producer
        if group.norm:
            norm = run.network.get_layer(group.norm)
            assert np.all(norm.gamma.numpy()[inactive] == 1)
            assert np.all(norm.beta.numpy()[inactive] == 0)
        for consumer in group.consumers:
            weights = run.network.get_layer(consumer).kernel.numpy()
            rows = weights.reshape(-1, len(mask), weights.shape[-1])
            assert np.all(rows[:, inactive, :] == 0), consumer
        active_logical = group.logical.numpy()[~inactive]
        assert len(set(active_logical)) == len(active_logical)
        assert active_logical.max() < run.kind.full_filters[group.producer]


def test_compacted_run_meets_targets_and_keeps_inactive_slots_zero(make_config, tmp_path):
    run = _experiment(make_config, tmp_path, data__num_tasks=2)
    capacities = {g.producer: int(g.mask.shape[0]) for g in channel_masks(run.network)}
    assert capacities == {"conv2": 4, "conv3": 7, "conv4": 7, "fc1": 14}
    results = run.run()
    targets = {name: filter_counts(full, 0.9, 0.01, 0.01)[0]
               for name, full in run.kind.full_filters.items()}
    assert run.engine.updater.active_filters() == targets  # frozen at the target
    assert results["layer_sparsity"] == {name: 1 - targets[name] / full
                                         for name, full in run.kind.full_filters.items()}
    _check_slots(run)
    # FLOPs: the compacted model is charged; the dense reference is the full model
    assert results["dense_training_flops"] / results["training_flops"] > 5


def test_growth_keeps_the_function_and_starts_outgoing_weights_at_zero(make_config, tmp_path):
    run = _experiment(make_config, tmp_path)
    images = np.random.default_rng(0).normal(size=(8, 28, 28, 1)).astype(np.float32)
    before = run.network(images, training=False).numpy()
    masks = {g.producer: g.mask.numpy().copy() for g in channel_masks(run.network)}
    gradients = [np.ones(layer.kernel.shape, np.float32) for layer in run.model.sparse]
    counts = [filter_counts(run.kind.full_filters[g.producer], 0.9, 0.01, 0.01)
              for g in channel_masks(run.network)]
    prune_to, grow_to = zip(*[tdm_phase(0, 10, *c) for c in counts])
    run.engine.updater.update(prune_to, grow_to, 11, gradients)  # opening: target -> +1
    for group in channel_masks(run.network):
        grown = (group.mask.numpy() > 0) & (masks[group.producer] == 0)
        assert grown.sum() == 1, group.producer
        kernel = run.network.get_layer(group.producer).kernel.numpy()
        assert np.any(kernel[..., grown] != 0)  # a fresh filter, so it can learn
    np.testing.assert_allclose(run.network(images, training=False).numpy(), before, atol=1e-6)
    _check_slots(run)


def test_compact_model_equals_its_full_view(make_config, tmp_path):
    run = _experiment(make_config, tmp_path, data__num_tasks=2)
    run.run()
    full = build_model("edge_cnn", (28, 28, 1), 10)
    full_view(run.network, full)
    images = np.random.default_rng(2).normal(size=(16, 28, 28, 1)).astype(np.float32)
    np.testing.assert_allclose(full(images, training=False).numpy(),
                               run.network(images, training=False).numpy(), rtol=1e-4,
                               atol=1e-4)


def test_resnet_prunes_only_inner_block_convs(make_config, tmp_path):
    run = _experiment(make_config, tmp_path, model__name="resnet18", model__width=0.25)
    producers = [g.producer for g in channel_masks(run.network)]
    assert len(producers) == 8 and all(p.endswith("_conv1") for p in producers)
    assert [g.consumers for g in channel_masks(run.network)][0] == ("stage1_block1_conv2",)
    conv2 = run.network.get_layer("stage1_block1_conv2")
    assert conv2.kernel.shape[-2] == 3 and conv2.kernel.shape[-1] == 16  # input compacted only


def test_structured_run_resumes_to_the_same_result(make_config, tmp_path, monkeypatch):
    config = make_config("paper_sparcl_derpp_s90", data__num_tasks=2, checkpoint__every_steps=2,
                         model__width=1.0)
    expected = Experiment(config, str(tmp_path / "reference"), verbose=0).run()
    run_until_interrupted(config, str(tmp_path / "resumed"), 5, monkeypatch)
    results = Experiment(config, str(tmp_path / "resumed"), verbose=0).run()
    for key in ("class_il_matrix", "training_flops", "examples_removed", "layer_sparsity"):
        assert results[key] == expected[key], key


def test_compacted_model_trains_in_litert_with_inactive_slots_zero(make_config, tmp_path):
    from ai_edge_litert.interpreter import Interpreter

    from sparcl_tf.export import convert, training_module
    from sparcl_tf.export.audit import op_audit
    run = _experiment(make_config, tmp_path)
    module = training_module(run.config, run.network, run.kind)
    model = convert(module, str(tmp_path / "saved"))
    assert all(not entry["flex_ops"] for entry in op_audit(model).values())
    lite = Interpreter(model_content=model)
    rng = np.random.default_rng(3)
    inputs = {name: (rng.integers(0, 2, d["shape"]) if d["dtype"] == np.int32 else rng.normal(
        size=d["shape"])).astype(d["dtype"]) for name, d in
        lite.get_signature_runner("train").get_input_details().items()}
    inputs["replay_weight"] = np.float32(1.0)
    out = lite.get_signature_runner("train")(**inputs)
    reference = module.train(*[tf.constant(inputs[s.name]) for s in module.train.input_signature])
    assert abs(out["loss"] - reference["loss"].numpy()) <= 1e-5 * abs(out["loss"])
    state = lite.get_signature_runner("get_state")(dummy=np.int32(0))
    for group in channel_masks(run.network):
        inactive = state[f"{group.name}__mask"] == 0
        assert inactive.any()
        assert np.all(state[f"{group.producer}__kernel"][..., inactive] == 0)


def test_exported_structured_steps_match_the_keras_steps(make_config, tmp_path):
    """A refresh step (every filter's gradient) then a selected-filters step: the same updates
    and the same last gradients (the next slot update's importance) in LiteRT as in Keras."""
    from ai_edge_litert.interpreter import Interpreter

    from sparcl_tf.export import convert, training_module
    run = _experiment(make_config, tmp_path, preset="paper_sparcl_derpp_s75")
    lite = Interpreter(model_content=convert(training_module(run.config, run.network, run.kind),
                                             str(tmp_path / "saved")))
    train, get_state = lite.get_signature_runner("train"), lite.get_signature_runner(
        "get_state")
    # Inputs whose pre-activations stay clear of 0 by more than float32 rounding: where one does
    # not, ReLU's derivative flips between runtimes and the gradients part by ~1e-3 (measured).
    rng = np.random.default_rng(6)
    for refresh in (1.0, 0.0):
        inputs = {name: (rng.integers(0, 2, d["shape"]) if d["dtype"] == np.int32 else
                         rng.normal(size=d["shape"])).astype(d["dtype"])
                  for name, d in train.get_input_details().items()}
        inputs.update(replay_weight=np.float32(1.0), refresh_gradient_masks=np.float32(refresh),
                      learning_rate=np.float32(run.config.optimizer.learning_rate))
        train(**inputs)
        run.model.step(inputs["images"], inputs["labels"], inputs["class_mask"],
                       inputs["replay_images"], inputs["replay_labels"], inputs["replay_logits"],
                       1.0, bool(refresh))
        state = get_state(dummy=np.int32(0))
        for layer, stored, keep in zip(run.model.sparse, run.model.last_gradients,
                                       run.model.masking.keep):
            kernel, gradient = layer.kernel.numpy(), stored.numpy()
            error = np.linalg.norm(state[f"{layer.name}__kernel"] - kernel)
            assert error <= 1e-5 * np.linalg.norm(kernel), layer.name
            device = state[f"last_gradient__{layer.name}"]
            assert np.linalg.norm(device - gradient) <= 1e-4 * np.linalg.norm(gradient), (
                layer.name, refresh)
            computed = int((np.abs(gradient).reshape(-1, gradient.shape[-1]).sum(0) > 0).sum())
            assert computed > keep if refresh else computed <= keep, (layer.name, computed)


@pytest.mark.parametrize("overrides, message", [
    ({"sparsity__granularity": "block"}, "sparsity.granularity='block' must be"),
    ({"sparsity__schedule": "rigl"}, "needs sparsity.schedule tdm or static"),
    ({"model__name": "mlp"}, "supports model.name in"),
    ({"sparsity__structured_target": "channels"}, "must be 'weights' or 'filters'"),
])
def test_structured_config_errors(make_config, tmp_path, overrides, message):
    with pytest.raises(ConfigError, match=message):
        Experiment(make_config("paper_sparcl_derpp_s90", **overrides), str(tmp_path), verbose=0)


def _device_slots(state, run):
    return {g.producer: state[f"{g.name}__mask"] > 0 for g in channel_masks(run.network)}


@pytest.mark.parametrize("model", ["edge_cnn", pytest.param("mobilenet_v2",
                                                             marks=pytest.mark.heavy)])
def test_update_masks_on_device_switches_slots_exactly(make_config, tmp_path, model):
    from ai_edge_litert.interpreter import Interpreter

    from sparcl_tf.export import convert, training_module
    from sparcl_tf.sparsity.structured import filter_counts
    run = _experiment(make_config, tmp_path, model__name=model,
                      model__width=1.0 if model == "edge_cnn" else 0.35)
    model = convert(training_module(run.config, run.network, run.kind), str(tmp_path / "saved"))
    lite = Interpreter(model_content=model)
    images = np.random.default_rng(4).normal(size=(16, 28, 28, 1)).astype(np.float32)
    infer = lite.get_signature_runner("infer")
    before_logits = infer(images=images)["logits"]
    before = lite.get_signature_runner("get_state")(dummy=np.int32(0))
    names = [g.producer for g in channel_masks(run.network)]
    counts = [filter_counts(run.kind.full_filters[n], 0.9, 0.01, 0.01) for n in names]
    opening = [tdm_phase(0, 10, *c) for c in counts]  # grow one slot per layer
    active = lite.get_signature_runner("update_masks")(
        prune_to=np.array([p for p, _ in opening], np.int32),
        grow_to=np.array([g for _, g in opening], np.int32), seed=np.int32(5))["active"]
    np.testing.assert_array_equal(active, [g for _, g in opening])
    after = lite.get_signature_runner("get_state")(dummy=np.int32(0))
    old, new = _device_slots(before, run), _device_slots(after, run)
    for group, (prune_to, grow_to) in zip(channel_masks(run.network), opening):
        grown = new[group.producer] & ~old[group.producer]
        assert grown.sum() == grow_to - prune_to >= 1  # the opening: 1 % of the filters, >= 1
        kernel = after[f"{group.producer}__kernel"]
        assert np.any(kernel[..., grown] != 0)
        for consumer in group.consumers:
            rows = after[f"{consumer}__kernel"]
            rows = rows.reshape(-1, len(grown), rows.shape[-1])
            assert np.all(rows[:, ~new[group.producer], :] == 0)
            # outgoing weights start at zero, except into a filter grown in the same update
            # (whose own outgoing weights are zero, so the function is still unchanged)
            old_columns = old[consumer] if consumer in old else np.ones(rows.shape[-1], bool)
            assert np.all(rows[:, grown, :][:, :, old_columns] == 0)
    # growth only: the function is unchanged
    np.testing.assert_allclose(infer(images=images)["logits"], before_logits, atol=1e-5)
    # a swap: prune one slot below the target
    swap = [tdm_phase(1, 10, *c) for c in counts]
    lite.get_signature_runner("update_masks")(
        prune_to=np.array([p for p, _ in swap], np.int32),
        grow_to=np.array([p for p, _ in swap], np.int32), seed=np.int32(6))
    pruned_state = lite.get_signature_runner("get_state")(dummy=np.int32(0))
    for group, (prune_to, _) in zip(channel_masks(run.network), swap):
        slots = _device_slots(pruned_state, run)[group.producer]
        assert slots.sum() == prune_to
        assert np.all(pruned_state[f"{group.producer}__kernel"][..., ~slots] == 0)
        if group.norm:
            assert np.all(pruned_state[f"{group.norm}__gamma"][~slots] == 1)
            assert np.all(pruned_state[f"{group.norm}__beta"][~slots] == 0)


def test_litert_session_runs_a_structured_config(make_config, tmp_path):
    from sparcl_tf.experiment import run_experiment
    from sparcl_tf.ondevice import OnDeviceSession
    from tests.test_ondevice import _convert
    config = make_config("paper_sparcl_derpp_s90", model__width=1.0, data__num_tasks=2,
                         log__tensorboard=False)
    path = _convert(config, tmp_path / "model")
    results = OnDeviceSession(path, config, str(tmp_path / "device"), verbose=0).run()
    trainer = run_experiment(config, str(tmp_path / "keras"), verbose=0)
    for key in ("layer_sparsity", "steps", "examples_removed", "training_flops",
                "dense_training_flops"):
        assert results[key] == trainer[key], key


def test_structured_dgm_updates_only_the_selected_filters(make_config, tmp_path):
    # Few updates per task, so that steps between refreshes exist (every slot update refreshes).
    run = _experiment(make_config, tmp_path, data__num_tasks=2, dgm__refresh_every=3,
                      epochs_per_task=2, sparsity__updates_per_task=2, ddr__stages=1,
                      dgm__min_epochs=0)  # DGM at any schedule, as the paper's
    model = run.model
    assert model.masking.keep == [3, 5, 5, 10]  # n - round(0.92 n), within the slots
    results = run.run()
    selections = model.masking.groups["filter_selection"]
    for selection, slots, keep in zip(selections, model.masking.slot_masks, model.masking.keep):
        chosen = np.flatnonzero(selection.numpy())
        assert len(chosen) == keep and np.all(slots.numpy()[chosen] > 0)
    density = results["gradient_density"]
    assert all(0 < value < 1 for value in density.values())
    # between refreshes the kernel gradient of unselected filters is not computed at all
    layer = model.sparse[1]
    images = np.random.default_rng(5).normal(size=(4, 28, 28, 1)).astype(np.float32)
    with model.masking.selecting(False), tf.GradientTape() as tape:
        loss = tf.reduce_sum(run.network(images, training=True) ** 2)
    gradient = tape.gradient(loss, layer.kernel.value).numpy()
    computed = np.flatnonzero(np.abs(gradient).reshape(-1, gradient.shape[-1]).sum(0))
    assert set(computed) <= set(np.flatnonzero(selections[1].numpy()))


def test_mobilenet_v2_prunes_its_expansion_channels(make_config, tmp_path):
    run = _experiment(make_config, tmp_path, model__name="mobilenet_v2", model__width=0.35,
                      data__num_tasks=2)
    groups = channel_masks(run.network)
    assert len(groups) == 16 and all(
        g.producer.endswith("_expand") and g.consumers == (g.producer[:-7] + "_project",)
        for g in groups)
    results = run.run()
    targets = {name: filter_counts(full, 0.9, 0.01, 0.01)[0]
               for name, full in run.kind.full_filters.items()}
    assert run.engine.updater.active_filters() == targets
    assert results["training_flops"] < 0.35 * results["dense_training_flops"]
    _check_slots(run)
    full = build_model("mobilenet_v2", (28, 28, 1), 10, width=0.35)
    full_view(run.network, full)
    images = np.random.default_rng(2).normal(size=(8, 28, 28, 1)).astype(np.float32)
    np.testing.assert_allclose(full(images, training=False).numpy(),
                               run.network(images, training=False).numpy(), rtol=1e-4,
                               atol=1e-4)
