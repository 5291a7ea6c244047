"""Per-example training statistics keyed by stable example id, kept in variables.

The train step records, for every current-task example it trains on, whether the training forward
pass classified it correctly (argmax over all logits, no CL mask) and by what margin. From that
follow presentation counts, correct counts and forgetting events (correct at one presentation, wrong
at the next), which dynamic data removal ranks examples by.
"""

import numpy as np
import tensorflow as tf


class ExampleStats:
    def __init__(self, num_example_ids):
        size = max(int(num_example_ids), 1)

        def table(name, dtype=tf.int32):
            return tf.Variable(tf.zeros((size,), dtype), trainable=False, name=name)

        self.presentations = table("stats_presentations")
        self.correct = table("stats_correct")
        self.last_correct = table("stats_last_correct")
        self.forgetting_events = table("stats_forgetting_events")
        self.last_margin = table("stats_last_margin", tf.float32)

    def state(self):
        return {v.name.split(":")[0]: v for v in (
            self.presentations, self.correct, self.last_correct, self.forgetting_events,
            self.last_margin)}

    def observe(self, example_ids, correct, margin):
        """Records one presentation of each example in the batch (ids distinct within a batch).

        `margin`: the true class's logit minus the largest other logit, per example.
        """
        index = tf.cast(example_ids, tf.int64)[:, None]
        correct = tf.cast(correct, tf.int32)
        seen_before = tf.gather(self.presentations, index[:, 0]) > 0
        was_correct = tf.gather(self.last_correct, index[:, 0])
        forgot = tf.cast(seen_before, tf.int32) * was_correct * (1 - correct)
        self.presentations.scatter_nd_add(index, tf.ones_like(correct))
        self.correct.scatter_nd_add(index, correct)
        self.forgetting_events.scatter_nd_add(index, forgot)
        self.last_correct.scatter_nd_update(index, correct)
        self.last_margin.scatter_nd_update(index, tf.cast(margin, tf.float32))

    def reset(self):
        for variable in self.state().values():
            variable.assign(tf.zeros_like(variable))

    def snapshot(self, example_ids):
        """numpy dict of every statistic for `example_ids`."""
        example_ids = np.asarray(example_ids)
        return {name.removeprefix("stats_"): variable.numpy()[example_ids]
                for name, variable in self.state().items()}


def margin(logits, labels):
    """True-class logit minus the largest other logit (positive = correct with room to spare)."""
    labels = tf.cast(labels, tf.int32)
    true = tf.gather(logits, labels, axis=1, batch_dims=1)
    others = tf.where(tf.one_hot(labels, tf.shape(logits)[1]) > 0, -np.inf, logits)
    return true - tf.reduce_max(others, axis=1)
