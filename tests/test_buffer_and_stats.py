import numpy as np
import tensorflow as tf

from sparcl_tf.example_stats import ExampleStats
from sparcl_tf.replay import ReservoirBuffer


def _offer(buffer, start, count, num_classes=3):
    ids = np.arange(start, start + count)
    images = np.broadcast_to(ids[:, None, None, None], (count, 2, 2, 1)).astype(np.float32)
    logits = np.broadcast_to(ids[:, None], (count, num_classes)).astype(np.float32) * 0.5
    buffer.add(tf.constant(images), tf.constant(ids % num_classes), tf.constant(logits),
               tf.fill([count], 7), tf.constant(ids))


def _new_buffer(capacity, seed=0):
    return ReservoirBuffer(capacity, (2, 2, 1), 3, tf.random.Generator.from_seed(seed))


def test_buffer_fills_in_order_until_capacity():
    buffer = _new_buffer(10)
    _offer(buffer, 0, 6)
    assert int(buffer.size()) == 6 and int(buffer.num_seen) == 6
    np.testing.assert_array_equal(buffer.example_ids.numpy()[:6], np.arange(6))
    np.testing.assert_array_equal(buffer.example_ids.numpy()[6:], -1)


def test_buffer_never_exceeds_capacity_and_keeps_entries_whole():
    buffer = _new_buffer(8)
    for start in range(0, 200, 16):
        _offer(buffer, start, 16)
    assert int(buffer.num_seen) == 208 and int(buffer.size()) == 8
    ids = buffer.example_ids.numpy()
    assert len(set(ids)) == 8 and ids.min() >= 0 and ids.max() < 208
    np.testing.assert_array_equal(buffer.labels.numpy(), ids % 3)
    np.testing.assert_array_equal(buffer.images.numpy()[:, 0, 0, 0], ids)
    np.testing.assert_array_equal(buffer.logits.numpy()[:, 0], ids * 0.5)
    np.testing.assert_array_equal(buffer.task_ids.numpy(), 7)


def test_reservoir_keeps_every_example_with_equal_probability():
    capacity, stream, trials = 10, 100, 400
    buffer = _new_buffer(capacity, seed=5)
    ids = tf.reshape(tf.range(stream, dtype=tf.int64), (5, 20))

    @tf.function
    def fill_from_empty():
        buffer.num_seen.assign(0)
        for chunk in tf.unstack(ids):
            buffer.add(tf.zeros((20, 2, 2, 1)), chunk % 3, tf.zeros((20, 3)),
                       tf.zeros(20, tf.int32), chunk)
        return buffer.example_ids.read_value()

    kept = np.zeros(stream)
    for _ in range(trials):
        kept[fill_from_empty().numpy()] += 1
    probability = kept / trials
    # Expected 0.1 each; with 400 trials the standard error is 0.015: early and late examples
    # (the classic bug is keeping too many of either) must both be near 0.1.
    assert kept.sum() == capacity * trials
    assert abs(probability[:20].mean() - 0.1) < 0.02 and abs(probability[-20:].mean() - 0.1) < 0.02
    assert probability.min() > 0.03 and probability.max() < 0.2


def test_sample_draws_distinct_stored_entries_and_at_most_the_size():
    buffer = _new_buffer(12)
    _offer(buffer, 100, 5)
    images, labels, logits, task_ids = buffer.sample(32)
    assert images.shape[0] == 5  # only what is stored
    ids = images.numpy()[:, 0, 0, 0]
    assert sorted(ids) == list(range(100, 105))
    _offer(buffer, 200, 20)
    images, labels, _, _ = buffer.sample(4)
    ids = images.numpy()[:, 0, 0, 0].astype(int)
    assert len(set(ids)) == 4 and set(ids) <= set(buffer.example_ids.numpy())
    np.testing.assert_array_equal(labels.numpy(), ids % 3)


def test_forgetting_events_count_correct_then_wrong_transitions():
    stats = ExampleStats(4)
    sequence = {0: [1, 0, 1, 0], 1: [1, 1, 1, 1], 2: [0, 0, 0, 0], 3: [0, 1, 1, 0]}
    for presentation in range(4):
        ids = tf.constant([0, 1, 2, 3])
        correct = tf.constant([bool(sequence[i][presentation]) for i in range(4)])
        stats.observe(ids, correct, tf.constant([0.5, 1.0, -2.0, float(presentation)]))
    snapshot = stats.snapshot([0, 1, 2, 3])
    np.testing.assert_array_equal(snapshot["last_margin"], [0.5, 1.0, -2.0, 3.0])
    np.testing.assert_array_equal(snapshot["forgetting_events"], [2, 0, 0, 1])
    np.testing.assert_array_equal(snapshot["presentations"], [4, 4, 4, 4])
    np.testing.assert_array_equal(snapshot["correct"], [2, 4, 0, 2])
    stats.reset()
    assert stats.snapshot([0, 1, 2, 3])["presentations"].sum() == 0
