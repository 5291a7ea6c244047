"""tf.data pipelines over a task's arrays.

Each epoch's order is a seeded permutation of (seed, task, epoch), so an interrupted epoch resumes
exactly where it stopped. Incomplete last batches are dropped, as in the paper's code. Images are
normalised here, per channel; augmentation happens in the train step, because replayed images are
augmented again too.
"""

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


def epoch_order(num_examples, seed, task_index, epoch):
    """The order in which one epoch visits `num_examples` examples."""
    return np.random.default_rng([seed, 23, task_index, epoch]).permutation(num_examples)


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


def train_dataset(x, y, ids, order, batch_size, normalizer):
    """Full batches of (image, label, example id) of the rows `order`, in that order."""
    order = np.asarray(order)[:len(order) // batch_size * batch_size]
    dataset = tf.data.Dataset.from_tensor_slices((normalizer(x[order]), y[order], ids[order]))
    options = tf.data.Options()
    # In-memory slices need no tuning, and the autotuner's thread makes deleting an unfinished
    # iterator (every segment's, cut at an event) block for about a second.
    options.autotune.enabled = False
    return dataset.batch(batch_size, drop_remainder=True).with_options(options)


def eval_batches(x, batch_size, normalizer):
    """Normalised images of `x` in batches of `batch_size` (numpy; the last may be smaller)."""
    for start in range(0, len(x), batch_size):
        yield normalizer(x[start:start + batch_size])
