"""The Keras model that runs the continual-learning train step (`training.step`) one host-fed
step at a time.

The host (`session.loop`) owns data order, augmentation, the buffer and every schedule; this is
the same step the exported `train` signature runs, so a session takes the same steps on both.
Under a tf.distribute strategy (`distribute.Replication`) each replica runs it on its shard of
the batch with the gradients all-reduced, so every replica makes the same updates.
"""

import keras
import numpy as np
import tensorflow as tf

from sparcl_tf.distribute import Replication, branch
from sparcl_tf.sparsity.kind import WeightMasks
from sparcl_tf.training.step import TrainStep


class ContinualModel(keras.Model):
    """Trains `network` with `method` under the run's sparsity `kind` (`sparsity.kind`; default:
    fixed weight masks), one host-fed step at a time (`step`). `replication`: where it runs
    (default one device); a distributed model is made in its scope, with an optimizer that
    leaves the reduction to the step (`distribute.ReducedGradientsSGD`)."""

    def __init__(self, network, method, kind=None, replication=None, **kwargs):
        super().__init__(**kwargs)
        self.replication = replication or Replication()
        self.network, self.method = network, method
        self.kind = kind or WeightMasks()
        self.kind.prepare(network)
        self.masking = self.kind.gradient_masking(network)
        self._train_step = TrainStep(network, method, self.masking, self.replication)
        if self.replication.distributed:
            replication.prepare(network)
            # images, labels, replay draws split by example; class mask and weight shared
            self._step = replication.compile(self._replica_step, (0, 0, None, 1, 1, 1, None))
        else:
            self._step = tf.function(self._replica_step)
        self._forward = tf.function(lambda images: network(images, training=False),
                                    reduce_retracing=True)

    def call(self, inputs, training=False):
        return self.network(inputs, training=training)

    @property
    def sparse(self):
        """The sparse layers, in the order of every per-layer list."""
        return self.masking.layers

    @property
    def last_gradients(self):
        return self.masking.last_gradients

    def state(self):
        """Name -> variable for the run state this object owns (not weights or optimizer),
        keyed by group and sparse-layer position."""
        return {f"{group}_{i}": variable for group, variables in self.masking.groups.items()
                for i, variable in enumerate(variables)}

    def reset_optimizer(self):
        """A fresh optimizer (momentum slots at zero); the learning rate stays."""
        for variable in self.optimizer.variables:
            if "learning_rate" not in variable.path:
                variable.assign(tf.zeros_like(variable))

    def step(self, images, labels, class_mask, replay_images, replay_labels, replay_logits,
             replay_weight, refresh):
        """One train step; the arguments are the exported `train` signature's inputs."""
        if self.replication.distributed:  # branches chosen while tracing: see `distribute`
            flags = dict(replay_on=bool(replay_weight > 0), refresh=bool(refresh))
        else:
            flags = dict(refresh=np.bool_(refresh))
        return self._step(images, labels, class_mask, replay_images, replay_labels,
                          replay_logits, np.float32(replay_weight), **flags)

    def logits(self, images):
        return self._forward(images).numpy()

    def _replica_step(self, images, labels, class_mask, replay_images, replay_labels,
                      replay_logits, replay_weight, refresh, replay_on=None):
        replay_on = replay_weight > 0 if replay_on is None else replay_on

        def replay_loss():
            """The method's replay terms on the draws while replay is on (none before the
            buffer has examples: nothing of it runs, BatchNorm statistics included)."""
            if not self.method.uses_buffer:
                return None

            def terms():
                draws = [(replay_images[i], replay_labels[i], replay_logits[i])
                         for i in range(self.method.replay_draws)]
                return replay_weight * self.method.replay_loss(
                    lambda x: self.network(x, training=True), draws)

            return branch(replay_on, terms, lambda: tf.constant(0.0))

        return self._train_step(images, labels, class_mask, replay_loss, refresh,
                                self.optimizer.apply)
