"""Reservoir replay buffer whose whole state lives in `tf.Variable`s.

Because the state is variables, the buffer is updated inside the compiled train step, saved in
checkpoints with everything else, and can be exported. It stores what DER++ needs: the un-augmented
(normalised) input, its label, the logits the model produced for it when it was stored, the task it
came from and its stable example id.
"""

import tensorflow as tf


class ReservoirBuffer:
    """Reservoir sampling over every example offered (Vitter's algorithm R), batched.

    Offering a batch is equivalent to offering its examples one by one in order: example k of the
    batch is the (num_seen + k + 1)-th example seen, stored at that slot while the buffer fills and
    afterwards at a uniformly random slot j < num_seen + k + 1 if j < capacity. When two examples
    of one batch pick the same slot, the later one wins, as it would sequentially.
    """

    def __init__(self, capacity, image_shape, num_classes, generator):
        if capacity < 0:
            raise ValueError(f"buffer capacity must be >= 0, got {capacity}")
        self.capacity = int(capacity)
        self.generator = generator
        slots = max(self.capacity, 1)  # zero-size variables are legal but awkward to export
        self.images = tf.Variable(tf.zeros((slots,) + tuple(image_shape)), trainable=False,
                                  name="buffer_images")
        self.labels = tf.Variable(tf.zeros((slots,), tf.int64), trainable=False,
                                  name="buffer_labels")
        self.logits = tf.Variable(tf.zeros((slots, num_classes)), trainable=False,
                                  name="buffer_logits")
        self.task_ids = tf.Variable(tf.zeros((slots,), tf.int32), trainable=False,
                                    name="buffer_task_ids")
        self.example_ids = tf.Variable(tf.fill((slots,), tf.constant(-1, tf.int64)),
                                       trainable=False, name="buffer_example_ids")
        self.num_seen = tf.Variable(tf.constant(0, tf.int64), trainable=False,
                                    name="buffer_num_seen")

    def state(self):
        """Name -> variable, for checkpoints."""
        return {v.name.split(":")[0]: v for v in (
            self.images, self.labels, self.logits, self.task_ids, self.example_ids,
            self.num_seen)}

    def size(self):
        return tf.minimum(self.num_seen, self.capacity)

    def add(self, images, labels, logits, task_ids, example_ids):
        """Offers a batch to the reservoir."""
        if self.capacity == 0:
            return
        batch = tf.shape(labels, out_type=tf.int64)[0]
        position = self.num_seen + tf.range(batch, dtype=tf.int64)  # 0-based count before each
        drawn = tf.cast(self.generator.uniform([batch]) * tf.cast(position + 1, tf.float32),
                        tf.int64)
        drawn = tf.minimum(drawn, position)  # guards the float rounding at the upper end
        slot = tf.where(position < self.capacity, position, drawn)
        keep = slot < self.capacity
        # Sequential semantics for duplicates: drop an example if a later one takes its slot.
        same = tf.equal(slot[:, None], slot[None, :]) & keep[None, :]
        later = tf.linalg.band_part(tf.ones_like(same, tf.int32), 0, -1) - tf.eye(
            tf.cast(batch, tf.int32), dtype=tf.int32)
        overwritten = tf.reduce_any(same & tf.cast(later, tf.bool), axis=1)
        keep = keep & ~overwritten
        index = tf.boolean_mask(slot, keep)[:, None]
        for variable, values in ((self.images, images), (self.labels, labels),
                                 (self.logits, logits), (self.task_ids, task_ids),
                                 (self.example_ids, example_ids)):
            variable.scatter_nd_update(index, tf.boolean_mask(
                tf.cast(values, variable.dtype), keep))
        self.num_seen.assign_add(batch)

    def sample(self, count):
        """Up to `count` distinct stored entries, uniformly: (images, labels, logits, task_ids)."""
        size = self.size()
        scores = self.generator.uniform([max(self.capacity, 1)])
        scores = tf.where(tf.range(max(self.capacity, 1), dtype=tf.int64) < size, scores, -1.0)
        _, index = tf.math.top_k(scores, k=tf.cast(tf.minimum(size, count), tf.int32))
        return (tf.gather(self.images, index), tf.gather(self.labels, index),
                tf.gather(self.logits, index), tf.gather(self.task_ids, index))
