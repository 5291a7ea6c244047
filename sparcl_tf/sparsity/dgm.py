"""Dynamic gradient masks: update only the largest-magnitude kernel gradients of sparse layers.

A refresh computes, per layer, the threshold that keeps `keep` entries of |weight-masked gradient|
(the layer's total gradient sparsity: 0.80 at weight sparsity 0.75 keeps 20 % of all entries) and
stores the surviving pattern; the steps in between multiply gradients by the stored pattern. The
official code refreshes every 30 iterations and at each epoch's first batch; a refresh also follows
every mask update. Thresholds are exact top-k (`topk`) or a 16-step bisection (`bisection`, builtin
ops only: what an exported .tflite or a microcontroller can run); refreshing rarely is what makes
either cheap (an exact top-k every step triples the step time).
"""

import tensorflow as tf

BISECTION_STEPS = 16


def threshold_topk(magnitudes, keep):
    """The `keep`-th largest value of `magnitudes` (flattened)."""
    flat = tf.reshape(magnitudes, [-1])
    keep = tf.clip_by_value(keep, 1, tf.size(flat))
    return tf.math.top_k(flat, k=keep, sorted=True).values[keep - 1]


def threshold_bisection(magnitudes, keep, steps=BISECTION_STEPS):
    """A threshold t with count(|g| >= t) <= keep, within max|g| / 2**steps of the exact one."""
    flat = tf.reshape(magnitudes, [-1])
    low, high = tf.zeros([], flat.dtype), tf.reduce_max(flat) * (1 + 1e-6)
    keep = tf.cast(keep, tf.int32)
    for _ in range(steps):  # unrolled: no while loop in the exported graph
        middle = (low + high) / 2
        too_many = tf.reduce_sum(tf.cast(flat >= middle, tf.int32)) > keep
        low, high = tf.where(too_many, middle, low), tf.where(too_many, high, middle)
    return high


def gradient_mask(masked_gradient, keep, method="topk"):
    """1.0 where |masked_gradient| is among the `keep` largest (and non-zero), else 0.0."""
    magnitudes = tf.abs(masked_gradient)
    find = threshold_topk if method == "topk" else threshold_bisection
    threshold = find(magnitudes, keep)
    return tf.cast((magnitudes >= threshold) & (magnitudes > 0), masked_gradient.dtype)
