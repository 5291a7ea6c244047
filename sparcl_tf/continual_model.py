"""The continual-learning train step: a Keras 3 `Model` around a network of masked layers.

One step, in the order of the algorithm:
  1. augment the current batch; forward; current-task loss (CL mask per the method);
  2. when replay is on and the buffer holds data: draw replay batches, augment them again, add the
     method's replay terms;
  3. gradients; kernel gradients multiplied by the gradient mask (the weight mask: a masked weight
     never receives an update, optimizer slots included);
  4. apply; re-mask kernels so masked entries are exactly zero;
  5. offer the un-augmented batch, labels and logits to the reservoir;
  6. record per-example correctness for data removal.
Which task is current, its class mask and whether replay is on live in variables, so the step is
traced once per run.
"""

import keras
import numpy as np
import tensorflow as tf

from sparcl_tf.layers import masked_layers, sparsifiable_layers


class ContinualModel(keras.Model):
    """Trains `network` with `method`; `fit` takes batches of (images, labels, example_ids)."""

    def __init__(self, network, method, num_classes, augment, generator, buffer=None,
                 stats=None, replay_batch_size=32, **kwargs):
        super().__init__(**kwargs)
        if method.uses_buffer and buffer is None:
            raise ValueError(f"method {method.name!r} needs a replay buffer")
        self.network = network
        self.method = method
        self.augment = augment
        self.generator = generator
        self.buffer = buffer
        self.stats = stats
        self.replay_batch_size = replay_batch_size
        self.masked = masked_layers(network)
        self.sparse = sparsifiable_layers(network)
        self.task_index = tf.Variable(0, trainable=False, name="task_index")
        self.class_mask = tf.Variable(tf.zeros((num_classes,), tf.bool), trainable=False,
                                      name="class_mask")
        self.replay_enabled = tf.Variable(False, trainable=False, name="replay_enabled")
        self.gradient_density_sum = tf.Variable(tf.zeros((len(self.sparse),)), trainable=False,
                                                name="gradient_density_sum")
        self.gradient_density_steps = tf.Variable(0.0, trainable=False,
                                                  name="gradient_density_steps")
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.accuracy_tracker = keras.metrics.Mean(name="accuracy")

    def call(self, inputs, training=False):
        return self.network(inputs, training=training)

    @property
    def metrics(self):
        return [self.loss_tracker, self.accuracy_tracker]

    def state(self):
        """Name -> variable for the run state this object owns (not weights or optimizer)."""
        return {v.name.split(":")[0]: v for v in (
            self.task_index, self.class_mask, self.replay_enabled, self.gradient_density_sum,
            self.gradient_density_steps)}

    def begin_task(self, task_index, classes, replay_enabled):
        self.task_index.assign(task_index)
        self.class_mask.assign(np.isin(np.arange(self.class_mask.shape[0]), classes))
        self.replay_enabled.assign(bool(replay_enabled))

    def _replay_loss(self):
        def forward(images):
            return self.network(self.augment(images), training=True)

        def replay_terms():
            draws = [self.buffer.sample(self.replay_batch_size)[:3]
                     for _ in range(self.method.replay_draws)]
            return self.method.replay_loss(forward, draws)

        if not self.method.uses_buffer:
            return tf.constant(0.0)
        active = self.replay_enabled & (self.buffer.size() > 0)
        return tf.cond(active, replay_terms, lambda: tf.constant(0.0))

    def gradient_masks(self):
        """Per sparse layer, the multiplier of its kernel gradient (the weight mask for now)."""
        return [layer.mask for layer in self.sparse]

    def train_step(self, data):
        images, labels, example_ids = data
        variables = self.network.trainable_variables
        with tf.GradientTape() as tape:
            logits = self.network(self.augment(images), training=True)
            loss = self.method.current_loss(labels, logits, self.class_mask)
            loss += self._replay_loss()
        gradients = tape.gradient(loss, variables)

        multipliers = {id(layer.kernel): layer.mask for layer in self.masked}
        for layer, mask in zip(self.sparse, self.gradient_masks()):
            multipliers[id(layer.kernel)] = mask
        gradients = [g * tf.cast(multipliers[id(v)], g.dtype) if id(v) in multipliers else g
                     for g, v in zip(gradients, variables)]
        self.optimizer.apply(gradients, variables)
        for layer in self.masked:
            layer.apply_mask_to_kernel()
        if self.sparse:
            self.gradient_density_sum.assign_add(tf.stack(
                [tf.reduce_mean(tf.cast(m, tf.float32)) for m in self.gradient_masks()]))
        self.gradient_density_steps.assign_add(1.0)

        if self.method.uses_buffer:
            task_ids = tf.fill(tf.shape(labels), self.task_index)
            self.buffer.add(images, labels, logits, task_ids, example_ids)
        correct = tf.equal(tf.argmax(logits, axis=-1), tf.cast(labels, tf.int64))
        if self.stats is not None:
            self.stats.observe(example_ids, correct)
        self.loss_tracker.update_state(loss)
        self.accuracy_tracker.update_state(tf.reduce_mean(tf.cast(correct, tf.float32)))
        return {"loss": self.loss_tracker.result(), "accuracy": self.accuracy_tracker.result()}
