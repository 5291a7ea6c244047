"""Batching over a task's arrays: normalisation, the full batches of an epoch's segment, and
evaluation batches. Incomplete last batches are dropped, as in the paper's code."""

import numpy as np
import tensorflow as tf


class Normalizer:
    """uint8 or [0, 1]-float images -> float32 (x / scale - mean) / std, per channel.

    Works on numpy arrays (the training pipeline normalises a segment's images up front, so no
    tf.data function is traced per segment) and on tensors.
    """

    def __init__(self, mean, std):
        self.mean = np.asarray(mean, np.float32)
        self.std = np.asarray(std, np.float32)

    def __call__(self, images):
        if isinstance(images, np.ndarray):
            scale = np.float32(255.0 if images.dtype == np.uint8 else 1.0)
            return (images.astype(np.float32) / scale - self.mean) / self.std
        scale = 255.0 if images.dtype == tf.uint8 else 1.0
        return (tf.cast(images, tf.float32) / scale - self.mean) / self.std

    @property
    def zero_value(self):
        """What a black (0) pixel becomes: the fill for padding during augmentation."""
        return -self.mean / self.std


def segment_batches(order, cursor, boundary, kept, batch_size):
    """The full batches an epoch trains between positions `cursor` and `boundary` of `order`.

    `kept(rows)` -> bool per row (False for examples data removal took out). Returns the rows of
    each batch [batches, batch_size] and the cursor after each batch; the examples of a partial
    last batch are left to the next segment.
    """
    order = np.asarray(order)
    window = np.arange(cursor, boundary)
    positions = window[kept(order[window])]
    batches = len(positions) // batch_size
    used = positions[:batches * batch_size]
    return order[used].reshape(batches, batch_size), used[batch_size - 1::batch_size] + 1


def eval_batches(x, batch_size, normalizer):
    """Normalised images of `x` in batches of `batch_size` (numpy; the last may be smaller)."""
    for start in range(0, len(x), batch_size):
        yield normalizer(x[start:start + batch_size])
