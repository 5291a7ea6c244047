"""tf.data pipelines over a task's arrays.

Each epoch's order is a seeded permutation of (seed, task, epoch), so an interrupted epoch resumes
exactly where it stopped by skipping the batches already trained. Incomplete last batches are
dropped, as in the paper's code. Images are normalised here, per channel; augmentation happens in
the train step, because replayed images are augmented again too.
"""

import numpy as np
import tensorflow as tf


class Normalizer:
    """uint8 or [0, 1]-float images -> float32 (x / scale - mean) / std, per channel."""

    def __init__(self, mean, std):
        self.mean = np.asarray(mean, np.float32)
        self.std = np.asarray(std, np.float32)

    def __call__(self, images):
        scale = 255.0 if images.dtype == tf.uint8 else 1.0
        return (tf.cast(images, tf.float32) / scale - self.mean) / self.std

    @property
    def zero_value(self):
        """What a black (0) pixel becomes: the fill for padding during augmentation."""
        return -self.mean / self.std


def epoch_order(num_examples, batch_size, seed, task_index, epoch):
    """Indices of the examples trained in one epoch, in order (full batches only)."""
    order = np.random.default_rng([seed, 23, task_index, epoch]).permutation(num_examples)
    return order[:num_examples // batch_size * batch_size]


def train_dataset(x, y, ids, order, batch_size, normalizer, skip_batches=0):
    """Batches of (image, label, example id) following `order`, from batch `skip_batches` on."""
    order = order[skip_batches * batch_size:]
    dataset = tf.data.Dataset.from_tensor_slices((x[order], y[order], ids[order]))
    return dataset.batch(batch_size, drop_remainder=True).map(
        lambda images, labels, example_ids: (normalizer(images), labels, example_ids),
        num_parallel_calls=tf.data.AUTOTUNE).prefetch(2)


def eval_dataset(x, y, batch_size, normalizer):
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size)
    return dataset.map(lambda images, labels: (normalizer(images), labels)).prefetch(2)
