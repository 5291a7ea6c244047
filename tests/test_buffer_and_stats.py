import numpy as np

from sparcl_tf.sparsity.example_stats import ExampleStats, margin
from sparcl_tf.session.buffer import ReservoirBuffer


def _offer(buffer, start, count, num_classes=3):
    ids = np.arange(start, start + count)
    images = np.broadcast_to(ids[:, None, None, None], (count, 2, 2, 1)).astype(np.float32)
    logits = np.broadcast_to(ids[:, None], (count, num_classes)).astype(np.float32) * 0.5
    buffer.add(images, ids % num_classes, logits, np.full(count, 7), ids)


def _new_buffer(capacity, seed=0):
    return ReservoirBuffer(capacity, (2, 2, 1), 3, seed)


def test_buffer_fills_in_order_until_capacity():
    buffer = _new_buffer(10)
    _offer(buffer, 0, 6)
    assert buffer.size() == 6 and int(buffer.seen) == 6
    np.testing.assert_array_equal(buffer.example_ids[:6], np.arange(6))
    np.testing.assert_array_equal(buffer.example_ids[6:], -1)


def test_buffer_never_exceeds_capacity_and_keeps_entries_whole():
    buffer = _new_buffer(8)
    for start in range(0, 200, 16):
        _offer(buffer, start, 16)
    assert int(buffer.seen) == 208 and buffer.size() == 8
    ids = buffer.example_ids
    assert len(set(ids)) == 8 and ids.min() >= 0 and ids.max() < 208
    np.testing.assert_array_equal(buffer.labels, ids % 3)
    np.testing.assert_array_equal(buffer.images[:, 0, 0, 0], ids)
    np.testing.assert_array_equal(buffer.logits[:, 0], ids * 0.5)
    np.testing.assert_array_equal(buffer.task_ids, 7)


def test_reservoir_keeps_every_example_with_equal_probability():
    capacity, stream, trials = 10, 100, 400
    kept = np.zeros(stream)
    for seed in range(trials):  # each seed is an independent reservoir stream
        buffer = _new_buffer(capacity, seed=seed)
        for start in range(0, stream, 20):
            _offer(buffer, start, 20)
        kept[buffer.example_ids] += 1
    probability = kept / trials
    # Expected 0.1 each; with 400 trials the standard error is 0.015: early and late examples
    # (the classic bug is keeping too many of either) must both be near 0.1.
    assert kept.sum() == capacity * trials
    assert abs(probability[:20].mean() - 0.1) < 0.02 and abs(probability[-20:].mean() - 0.1) < 0.02
    assert probability.min() > 0.03 and probability.max() < 0.2


def test_a_batch_equals_its_examples_offered_one_by_one():
    batched, single = _new_buffer(5, seed=3), _new_buffer(5, seed=3)
    for start in range(0, 64, 16):
        _offer(batched, start, 16)
    for index in range(64):
        _offer(single, index, 1)
    np.testing.assert_array_equal(batched.example_ids, single.example_ids)


def test_sample_draws_distinct_stored_entries_and_cycles_when_fewer_are_stored():
    buffer = _new_buffer(12)
    _offer(buffer, 100, 5)
    images, labels, logits = buffer.sample(8, step=0, draw=0)
    ids = images[:, 0, 0, 0]
    assert sorted(ids[:5]) == list(range(100, 105))  # only what is stored, then repeated
    np.testing.assert_array_equal(ids[5:], ids[:3])
    _offer(buffer, 200, 20)
    images, labels, _ = buffer.sample(4, step=1, draw=0)
    ids = images[:, 0, 0, 0].astype(int)
    assert len(set(ids)) == 4 and set(ids) <= set(buffer.example_ids)
    np.testing.assert_array_equal(labels, ids % 3)
    np.testing.assert_array_equal(buffer.sample(4, 1, 0)[0], images)  # keyed, not stateful
    assert not np.array_equal(buffer.sample(4, 1, 1)[0], images)


def test_forgetting_events_count_correct_then_wrong_transitions():
    stats = ExampleStats(4)
    sequence = {0: [1, 0, 1, 0], 1: [1, 1, 1, 1], 2: [0, 0, 0, 0], 3: [0, 1, 1, 0]}
    for presentation in range(4):
        correct = np.array([bool(sequence[i][presentation]) for i in range(4)])
        stats.observe(np.array([0, 1, 2, 3]), correct,
                      np.array([0.5, 1.0, -2.0, float(presentation)]))
    snapshot = stats.snapshot([0, 1, 2, 3])
    np.testing.assert_array_equal(snapshot["last_margin"], [0.5, 1.0, -2.0, 3.0])
    np.testing.assert_array_equal(snapshot["forgetting_events"], [2, 0, 0, 1])
    np.testing.assert_array_equal(snapshot["presentations"], [4, 4, 4, 4])
    np.testing.assert_array_equal(snapshot["correct"], [2, 4, 0, 2])
    stats.reset()
    assert stats.snapshot([0, 1, 2, 3])["presentations"].sum() == 0


def test_margin_is_the_true_logit_minus_the_best_other():
    logits = np.array([[2.0, 5.0, 1.0], [0.0, -1.0, 3.0]], np.float32)
    np.testing.assert_array_equal(margin(logits, np.array([1, 0])), [3.0, -3.0])
