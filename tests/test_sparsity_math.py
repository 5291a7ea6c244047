"""Mask math, schedules, gradient-mask thresholds, removal ranking and the FLOPs ledger."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from sparcl_tf.reporting.flops import FlopsLedger, flops_table, layer_forward_flops
from sparcl_tf.layers import MaskedConv2D, MaskedDense
from sparcl_tf.session.plan import PlannedEvent, removal_targets
from sparcl_tf.sparsity import ddr, dgm, growth, masks, schedule, tdm


def test_magnitude_mask_keeps_exactly_the_largest_weights():
    weights = np.random.default_rng(1).normal(size=(7, 9))
    mask = masks.magnitude_mask(weights, 0.75)
    assert mask.sum() == 63 - round(0.75 * 63)
    assert np.abs(weights[mask == 1]).min() > np.abs(weights[mask == 0]).max()


def test_prune_keeps_the_highest_scores_among_active_entries_only():
    mask = np.array([1, 1, 1, 1, 0, 0, 1, 1], np.float32)
    scores = np.array([5, 1, 7, 2, 100, 100, 3, 8], np.float32)
    pruned = masks.prune(mask, scores, keep=4)
    np.testing.assert_array_equal(pruned, [1, 0, 1, 0, 0, 0, 1, 1])  # inactive 100s never kept
    # A mask with no more active entries than `keep` is left as it is.
    np.testing.assert_array_equal(masks.prune(pruned, scores, 6), pruned)


def test_growth_activates_the_highest_scores_among_inactive_up_to_the_count():
    mask = np.array([1, 0, 0, 0, 0, 1], np.float32)
    scores = np.array([9, 1, 4, 3, 0.5, 9], np.float32)
    np.testing.assert_array_equal(masks.grow(mask, scores, 4), [1, 0, 1, 1, 0, 1])
    np.testing.assert_array_equal(masks.grow(mask, scores, 2), mask)  # already there


def test_random_growth_is_the_seeded_hash_and_hits_the_count():
    mask = np.zeros(100, np.float32)
    mask[:10] = 1
    kernel = np.where(mask > 0, 1.0, 0.0).astype(np.float32)
    _, grown = tdm.prune_and_grow(kernel, mask, np.zeros(100), 10, 20, seed=5, layer_index=0)
    assert grown.sum() == 20 and np.all(grown[:10] == 1)
    picked = np.flatnonzero(grown[10:]) + 10
    scores = growth.scores(np.arange(100), 5, 0)
    assert scores[picked].min() > np.delete(scores[10:], picked - 10).max()
    _, other = tdm.prune_and_grow(kernel, mask, np.zeros(100), 10, 20, seed=6, layer_index=0)
    assert not np.array_equal(grown, other)


def test_ties_go_to_the_lower_index_as_on_the_device():
    np.testing.assert_array_equal(masks.magnitude_mask(np.ones(10), 0.5), [1] * 5 + [0] * 5)


def test_tdm_targets_open_swap_and_freeze():
    assert schedule.tdm_targets(0, 10, 0.9, 0.01, 0.01) == (0.9, pytest.approx(0.89))
    assert schedule.tdm_targets(4, 10, 0.9, 0.01, 0.01) == (pytest.approx(0.91), 0.9)
    assert schedule.tdm_targets(9, 10, 0.9, 0.01, 0.01) == (0.9, 0.9)


def test_official_schedule_at_50_epochs_updates_every_5_and_removes_at_5_to_20():
    events = schedule.task_events(10, True, 4, epochs=50)
    assert [e.progress for e in events] == [0, 5, 10, 15, 20, 25, 30, 35, 40, 45]
    assert [e.progress for e in events if e.removal_stage] == [5, 10, 15, 20]
    assert all(e.mask_update for e in events)


def test_short_schedules_place_events_inside_epochs_and_static_has_only_removals():
    events = schedule.task_events(10, True, 4, epochs=2)
    assert [e.progress for e in events] == pytest.approx([0.2 * i for i in range(10)])
    static = schedule.task_events(10, False, 4, epochs=2)
    assert [e.removal_stage for e in static] == [1, 2, 3, 4]
    assert not any(e.mask_update for e in static)
    assert schedule.task_events(10, False, 0, epochs=2) == []


def test_removal_targets_are_cumulative_and_round_halves_up():
    assert removal_targets(10000, 0.3, 4) == [750, 1500, 2250, 3000]
    assert removal_targets(100, 0.3, 4) == [8, 15, 23, 30]  # 7.5 -> 8, 22.5 -> 23
    assert removal_targets(1001, 0.3, 4)[-1] == 300


def test_event_positions_round_halves_up():
    event = PlannedEvent(0, 1, 4, 1, True, 0, (), (), 0, 0)
    assert [event.position(n) for n in (10, 6, 2)] == [3, 2, 1]  # 2.5, 1.5, 0.5 round up


def test_rigl_drop_fraction_decays_to_nothing():
    prune_start, grow = schedule.rigl_targets(0.0, 0.9, 0.3, 0.75)
    assert prune_start == pytest.approx(0.9 + 0.3 * 0.1) and grow == 0.9
    assert schedule.rigl_targets(0.8, 0.9, 0.3, 0.75) == (0.9, 0.9)
    assert schedule.rigl_targets(0.5, 0.9, 0.3, 0.75)[0] < prune_start


def test_erk_keeps_the_global_budget_and_makes_small_layers_denser():
    shapes = {"fc1": (784, 100), "fc2": (100, 100)}
    targets = schedule.erk_sparsities(shapes, 0.9)
    sizes = {name: np.prod(shape) for name, shape in shapes.items()}
    kept = sum((1 - targets[n]) * sizes[n] for n in shapes)
    assert kept == pytest.approx(0.1 * sum(sizes.values()), rel=1e-12)
    # densities in proportion to sum(shape) / prod(shape)
    ratio = (1 - targets["fc2"]) / (1 - targets["fc1"])
    assert ratio == pytest.approx((200 / 10000) / (884 / 78400), rel=1e-12)
    # a layer that would keep more than all of its weights is dense; the rest share the budget
    capped = schedule.erk_sparsities({"big": (1000, 1000), "tiny": (2, 3)}, 0.5)
    assert capped["tiny"] == 0.0
    assert (1 - capped["big"]) * 1e6 + 6 == pytest.approx(0.5 * (1e6 + 6), rel=1e-12)
    # one layer: the global target
    assert schedule.erk_sparsities({"head": (64, 32)}, 0.75)["head"] == pytest.approx(0.75)


def test_erk_fc_spreads_the_target_over_fully_connected_layers_only():
    import ml_collections
    config = ml_collections.ConfigDict({"model": {"name": "m"}, "sparsity": {
        "weight_sparsity": 0.9, "layer_sparsity": {}, "distribution": "erk_fc"}})
    shapes = {"conv": (3, 3, 16, 32), "fc1": (784, 100), "fc2": (100, 100)}
    targets = schedule.layer_targets(config, shapes)
    assert targets["conv"] == 0.9
    assert [targets["fc1"], targets["fc2"]] == list(schedule.erk_sparsities(
        {"fc1": (784, 100), "fc2": (100, 100)}, 0.9).values())
    config.sparsity.layer_sparsity = {"fc2": 0.5}  # a layer's own target wins
    assert schedule.layer_targets(config, shapes)["fc2"] == 0.5
    config.sparsity.distribution = "uniform"
    assert set(schedule.layer_targets(config, shapes).values()) == {0.9, 0.5}


def test_topk_gradient_mask_keeps_exactly_keep_entries():
    gradient = tf.constant(np.random.default_rng(2).normal(size=(3, 3, 8, 16)), tf.float32)
    mask = dgm.gradient_mask(gradient, 115, "topk").numpy()
    assert mask.sum() == 115
    assert np.abs(gradient.numpy()[mask == 1]).min() >= np.abs(gradient.numpy()[mask == 0]).max()


def test_bisection_gradient_mask_is_within_a_few_entries_of_exact():
    gradient = tf.constant(np.random.default_rng(3).normal(size=(4000,)), tf.float32)
    kept = dgm.gradient_mask(gradient, 800, "bisection").numpy().sum()
    assert 790 <= kept <= 800


def test_gradient_mask_fills_with_active_zero_gradients_never_inactive_ones():
    gradient = tf.constant([0.0, 0.0, 3.0, -1.0, 0.0, 0.0])
    active = tf.constant([0.0, 1.0, 1.0, 1.0, 0.0, 1.0])
    topk = dgm.gradient_mask(gradient, 4, "topk", active).numpy()
    np.testing.assert_array_equal(topk, [0, 1, 1, 1, 0, 1])
    # Bisection (the exportable threshold) keeps only non-zero gradients, at most `keep`.
    np.testing.assert_array_equal(dgm.gradient_mask(gradient, 4, "bisection"), [0, 0, 1, 1, 0, 0])


def test_removal_ranks_by_events_then_margin_and_keeps_never_correct_last():
    ids = np.array([10, 11, 12, 13, 14, 15])
    stats = {"presentations": np.array([2, 2, 2, 2, 2, 0]),
             "correct": np.array([2, 1, 0, 2, 1, 0]),
             "forgetting_events": np.array([0, 1, 0, 0, 0, 0]),
             "last_margin": np.array([0.5, 2.0, -1.0, 3.0, -0.2, 9.0])}
    order = ddr.removal_order(ids, stats, tie_break=np.arange(6))
    # 0 events: 13 (margin 3), 10 (0.5), 14 (-0.2); then 1 event: 11; never correct: 12.
    # 15 was not presented in the window: not a candidate.
    np.testing.assert_array_equal(order, [13, 10, 14, 11, 12])
    np.testing.assert_array_equal(ddr.select_removals(ids, stats, 2, np.arange(6)), [13, 10])
    # exact ties follow the tie-break permutation
    tied = dict(stats, last_margin=np.zeros(6), correct=np.full(6, 2),
                forgetting_events=np.zeros(6, int), presentations=np.full(6, 2))
    np.testing.assert_array_equal(ddr.removal_order(ids, tied, [5, 4, 3, 2, 1, 0]), ids[::-1])


def test_flops_ledger_matches_a_hand_computed_two_layer_network():
    inputs = keras.Input((4,))
    hidden = MaskedDense(3, name="sparse")(inputs)
    outputs = MaskedDense(2, sparsifiable=False, name="dense")(hidden)
    ledger = FlopsLedger(flops_table(keras.Model(inputs, outputs)))
    assert ledger.layer_flops == {"sparse": 12, "dense": 6}
    # 5 examples; sparse layer at weight density 0.5 and gradient density 0.25:
    # 5 * (12 * (0.5 + 0.5 + 0.25) + 6 * 3) = 5 * 33 = 165; dense reference 5 * 3 * 18 = 270.
    ledger.charge(5, tf.constant([0.5, 1.0]), tf.constant([0.25, 1.0]))
    assert float(ledger.training_flops) == 165.0 and float(ledger.dense_flops) == 270.0


def test_conv_forward_flops_count_output_positions_times_kernel_size():
    inputs = keras.Input((5, 5, 2))
    same = MaskedConv2D(4, 3, padding="same", name="same")(inputs)
    MaskedConv2D(1, 3, strides=2, padding="valid", name="strided")(same)
    flops = layer_forward_flops(keras.Model(inputs, same))
    assert flops == {"same": 25 * 3 * 3 * 2 * 4}
    model = keras.Model(inputs, MaskedConv2D(1, 3, strides=2, padding="valid", name="s2")(inputs))
    assert layer_forward_flops(model) == {"s2": 2 * 2 * 3 * 3 * 2 * 1}
