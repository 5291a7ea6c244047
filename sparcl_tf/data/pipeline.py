"""tf.data pipelines over a task's arrays.

Each epoch's order is a seeded permutation of (seed, task, epoch), so an interrupted epoch resumes
exactly where it stopped. Incomplete last batches are dropped, as in the paper's code. Images are
normalised here, per channel; augmentation happens in the train step, because replayed images are
augmented again too.
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


def epoch_order(num_examples, seed, task_index, epoch):
    """The order in which one epoch visits `num_examples` examples."""
    return np.random.default_rng([seed, 23, task_index, epoch]).permutation(num_examples)


def train_dataset(x, y, ids, order, batch_size, normalizer):
    """Full batches of (image, label, example id) of the rows `order`, in that order."""
    dataset = tf.data.Dataset.from_tensor_slices((x[order], y[order], ids[order]))
    return dataset.batch(batch_size, drop_remainder=True).map(
        lambda images, labels, example_ids: (normalizer(images), labels, example_ids),
        num_parallel_calls=tf.data.AUTOTUNE).prefetch(2)


def eval_dataset(x, y, batch_size, normalizer):
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size)
    return dataset.map(lambda images, labels: (normalizer(images), labels)).prefetch(2)
