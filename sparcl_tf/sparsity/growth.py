"""Seeded random growth scores: one integer hash, in numpy for the host engines and in TFLite
builtins for the exported `update_masks`, so Keras, LiteRT and an app grow the same positions.

Park-Miller "minimal standard" generator (x -> 48271 x mod (2**31 - 1)), three rounds from a
seeded offset; in TF it is evaluated with Schrage's method so every intermediate fits in int32. A
bijection on [1, M - 1]: distinct positions get distinct scores, so a ranking has no ties. Seeds
come from `session.random.growth_seed` (below 2**17), which keeps every int32 sum exact.
"""

import numpy as np
import tensorflow as tf

M, A = 2147483647, 48271
_Q, _R = M // A, M % A
ROUNDS = 3
FRESH_FILTER_LAYER_OFFSET = 7919  # layer index offset of the hash that draws grown filters


def _offset(seed, layer_index):
    return (seed * 7919 + layer_index * 104729) % (M - 1)


def scores(positions, seed, layer_index):
    """numpy: the int64 score of each position (0..n-1) of sparse layer `layer_index`."""
    x = (np.asarray(positions, np.int64) + _offset(int(seed), int(layer_index))) % (M - 1) + 1
    for _ in range(ROUNDS):
        x = (A * x) % M
    return x


def scores_tf(positions, seed, layer_index):
    """TF builtins (int32 only): the same scores as `scores`."""
    offset = tf.math.floormod(seed * 7919 + layer_index * 104729, M - 1)
    x = tf.math.floormod(positions + offset, M - 1) + 1
    for _ in range(ROUNDS):
        x = A * tf.math.floormod(x, _Q) - _R * tf.math.floordiv(x, _Q)
        x = tf.where(x < 0, x + M, x)
    return x


def fresh_filter_values(shape, seed, layer_index):
    """numpy float32: the He-uniform values a grown filter slot starts from, entry by entry of
    the flattened kernel (the device computes the same from `scores_tf`)."""
    fan_in = int(np.prod(shape[:-1]))
    limit = np.float32(np.sqrt(6.0 / fan_in))
    hashed = scores(np.arange(int(np.prod(shape))), seed,
                    layer_index + FRESH_FILTER_LAYER_OFFSET).astype(np.float32)
    unit = hashed / np.float32(M) * np.float32(2.0) - np.float32(1.0)
    return (unit * limit).reshape(shape).astype(np.float32)
