"""Reservoir replay buffer, kept by the session host in numpy arrays, drawn from the portable
stream (`session.random`), so every engine (Keras, LiteRT, TFLM, an app) replays the same examples.

It stores what DER++ needs: the un-augmented model input, its label, the logits the model
produced for it when it was stored, the task it came from and its stable example id.
"""

import os

import numpy as np

from sparcl_tf.checkpoint import HostArray
from sparcl_tf.errors import ConfigError
from sparcl_tf.session import random as session_random


class ReservoirBuffer:
    """Reservoir sampling over every example offered (Vitter's algorithm R).

    The p-th example offered (0-based, over the whole session) goes to slot p while the buffer
    fills; afterwards to slot j = below(reservoir output p, p + 1) if j < capacity. Examples of a
    batch are offered in order, so a later one wins a slot two of them draw.
    """

    def __init__(self, capacity, example_shape, num_classes, seed, dtype=np.float32):
        if capacity < 0:
            raise ValueError(f"buffer capacity must be >= 0, got {capacity}")
        self.capacity = int(capacity)
        slots = max(self.capacity, 1)
        needed = slots * (int(np.prod(example_shape)) * np.dtype(dtype).itemsize + 16
                          + 4 * num_classes)
        memory = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        if needed > memory // 2:
            raise ConfigError(f"replay.buffer_size={capacity} needs {needed / 2 ** 30:.1f} GiB "
                              f"for the buffer; this machine has {memory / 2 ** 30:.1f} GiB")
        self.images = np.zeros((slots,) + tuple(example_shape), dtype)
        self.labels = np.zeros((slots,), np.int32)
        self.logits = np.zeros((slots, num_classes), np.float32)
        self.task_ids = np.zeros((slots,), np.int32)
        self.example_ids = np.full((slots,), -1, np.int64)
        self.seen = np.zeros((), np.int64)
        self.seed = seed
        self._reservoir = session_random.Stream(seed, session_random.RESERVOIR)

    def state(self):
        """Name -> array holder, for checkpoints."""
        return {f"buffer_{name}": HostArray(getattr(self, name)) for name in (
            "images", "labels", "logits", "task_ids", "example_ids", "seen")}

    def size(self):
        return int(min(int(self.seen), self.capacity))

    def add(self, images, labels, logits, task_ids, example_ids):
        """Offers a batch to the reservoir."""
        if self.capacity == 0:
            return
        batch, first = len(labels), int(self.seen)
        positions = np.arange(first, first + batch)
        drawn = self._reservoir.below(positions + 1, start=first)
        slots = np.where(positions < self.capacity, positions, drawn)
        for row, slot in enumerate(slots):
            if slot < self.capacity:
                self.images[slot] = images[row]
                self.labels[slot] = labels[row]
                self.logits[slot] = logits[row]
                self.task_ids[slot] = task_ids[row]
                self.example_ids[slot] = example_ids[row]
        self.seen[...] = first + batch

    def sample(self, count, step, draw):
        """Draw `draw` of step `step`: (images, labels, logits) of `count` rows, distinct stored
        entries while the buffer holds that many, cycled when it holds fewer (fixed shapes)."""
        index = session_random.Stream(self.seed, session_random.REPLAY, step, draw).distinct(
            self.size(), count)
        index = np.resize(index, count)
        return self.images[index], self.labels[index], self.logits[index]
