"""The continual-learning train step in Keras 3: one step on the batches the session host gives.

One step, in the order of the algorithm (SparCL's parts marked):
  1. forward the current batch; current-task loss (CL mask per the method);
  2. when the host passes replay draws (replay_weight > 0): the method's replay terms on them;
  3. gradients; keep the sparse layers' dense kernel gradients for the next mask update (TDM);
  4. kernel gradients of sparse layers multiplied by the weight mask and, with DGM, by the gradient
     mask (recomputed from this step's gradients when the host says `refresh`);
  5. apply; re-mask kernels so masked entries stay exactly zero;
  6. return the loss, the logits (the host stores them with the batch in the replay buffer), the
     per-example correctness (data removal) and the fraction of kernel entries updated (FLOPs).
The host (`session.loop`) owns data order, augmentation, the buffer and every schedule; this is
the same step the exported `train` signature runs, so a session takes the same steps on both.
Under a tf.distribute strategy (`distribute.Replication`) each replica runs it on its shard of
the batch with the gradients all-reduced after 3., so every replica makes the same updates.
"""

import keras
import numpy as np
import tensorflow as tf

from sparcl_tf.distribute import Replication, branch
from sparcl_tf.layers import sparsifiable_layers
from sparcl_tf.sparsity import dgm
from sparcl_tf.sparsity.masks import active_count


class ContinualModel(keras.Model):
    """Trains `network` with `method`, one host-fed step at a time (`step`).

    `masking`: False for a dense run: no mask multiplies, gradient masking or re-masking at all,
    the plain model (also the compacted model of channel-structured SparCL, whose slots are
    switched by ChannelMask layers). `gradient_masks`: None (no DGM) or settings with
    `gradient_sparsity` and `threshold` ('topk' or 'bisection'). `filter_gradients`: structured
    DGM on a compacted model: settings with `keep` (filters per sparse layer whose kernel
    gradients a step computes) and `slot_masks` (each layer's ChannelMask variable).
    `track_gradients`: keep the last kernel gradients of the sparse layers for mask updates.
    `replication`: where it runs (`distribute.Replication`; default one device); a distributed
    model is made in its scope, with an optimizer that leaves the reduction to the step
    (`distribute.ReducedGradientsSGD`).
    """

    def __init__(self, network, method, num_classes, replay_batch_size=32, masking=True,
                 gradient_masks=None, track_gradients=False, filter_gradients=None,
                 replication=None, **kwargs):
        super().__init__(**kwargs)
        self.replication = replication or Replication()
        if not masking and gradient_masks is not None:
            raise ValueError("gradient masks need masking=True")
        self.network = network
        self.method = method
        self.num_classes = num_classes
        self.replay_batch_size = replay_batch_size
        self.sparse = sparsifiable_layers(network)
        self.masking = masking
        for layer in self.sparse:
            layer.mask_enabled = masking
        self.dgm = gradient_masks
        self.track_gradients = track_gradients

        def variable(value, name):
            return tf.Variable(value, trainable=False, name=name)

        self.last_gradients = [
            variable(tf.zeros(layer.kernel.shape), f"last_gradient_{layer.name}")
            for layer in self.sparse] if track_gradients else []
        if gradient_masks is not None:
            self.gradient_mask_vars = [
                variable(tf.ones(layer.kernel.shape), f"gradient_mask_{layer.name}")
                for layer in self.sparse]
            self.gradient_keep = [
                active_count(int(np.prod(layer.kernel.shape)), gradient_masks.gradient_sparsity)
                for layer in self.sparse]
        self.filter_gradients = filter_gradients
        if filter_gradients is not None:
            self.full_gradient_step = variable(True, "filter_gradient_full_step")
            self.filter_selections = []
            for layer, keep in zip(self.sparse, filter_gradients.keep):
                selection = variable(tf.range(keep), f"filter_selection_{layer.name}")
                # Plain attributes, not tracked weights: the network's variables stay its own.
                object.__setattr__(layer, "filter_selection", selection)
                object.__setattr__(layer, "full_kernel_gradient", self.full_gradient_step)
                self.filter_selections.append(selection)
        if self.replication.distributed:
            replication.prepare(network)
            # images, labels, replay draws split by example; class mask and weight shared
            self._step = replication.compile(self._train_step, (0, 0, None, 1, 1, 1, None))
        else:
            self._step = tf.function(self._train_step)
        self._forward = tf.function(lambda images: network(images, training=False),
                                    reduce_retracing=True)

    def call(self, inputs, training=False):
        return self.network(inputs, training=training)

    def state(self):
        """Name -> variable for the run state this object owns (not weights or optimizer),
        keyed by sparse-layer position."""
        groups = {"last_gradient": self.last_gradients}
        if self.dgm is not None:
            groups["gradient_mask"] = self.gradient_mask_vars
        state = {f"{kind}_{i}": v for kind, variables in groups.items()
                 for i, v in enumerate(variables)}
        if self.filter_gradients is not None:
            state.update({f"filter_selection_{i}": v
                          for i, v in enumerate(self.filter_selections)})
            state["filter_gradient_full_step"] = self.full_gradient_step
        return state

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

    def _replay_loss(self, replay_images, replay_labels, replay_logits, replay_weight,
                     replay_on):
        if not self.method.uses_buffer:
            return tf.constant(0.0)

        def forward(images):
            return self.network(images, training=True)

        def replay_terms():
            draws = [(replay_images[i], replay_labels[i], replay_logits[i])
                     for i in range(self.method.replay_draws)]
            return replay_weight * self.method.replay_loss(forward, draws)

        return branch(replay_on, replay_terms, lambda: tf.constant(0.0))

    def _gradient_multipliers(self, sparse_gradients, refresh):
        """Per sparse layer, what its kernel gradient is multiplied by before the update."""
        weight_masks = [tf.cast(layer.mask, tf.float32) for layer in self.sparse]
        if self.dgm is None:
            return weight_masks

        def recompute():
            for variable, gradient, keep, active in zip(
                    self.gradient_mask_vars, sparse_gradients, self.gradient_keep, weight_masks):
                variable.assign(dgm.gradient_mask(gradient * active, keep, self.dgm.threshold,
                                                  active))
            return tf.constant(True)

        with tf.control_dependencies([branch(refresh, recompute, lambda: tf.constant(False))]):
            return [m * tf.identity(g) for m, g in zip(weight_masks, self.gradient_mask_vars)]

    def _select_filters(self, sparse_gradients, refresh):
        """Structured DGM: after a full-gradient step (`refresh`), each layer keeps the active
        filters of largest gradient magnitude (summed over the filter) for the next steps;
        returns this step's per-layer gradient multipliers and the fractions of filters
        updated."""
        def select():
            for selection, gradient, keep, slots in zip(
                    self.filter_selections, sparse_gradients, self.filter_gradients.keep,
                    self.filter_gradients.slot_masks):
                norms = tf.reduce_sum(tf.abs(tf.reshape(gradient, [-1, gradient.shape[-1]])), 0)
                norms = tf.where(slots > 0, norms, -1.0)  # inactive slots rank last
                selection.assign(tf.math.top_k(norms, k=keep).indices)
            return tf.constant(True)

        with tf.control_dependencies([branch(refresh, select, lambda: tf.constant(False))]):
            multipliers = [tf.reduce_sum(tf.one_hot(s, g.shape[-1]), 0)
                           for s, g in zip(self.filter_selections, sparse_gradients)]
        density = tf.stack([tf.where(self.full_gradient_step, 1.0, keep / g.shape[-1])
                            for keep, g in zip(self.filter_gradients.keep, sparse_gradients)])
        return multipliers, density

    def _train_step(self, images, labels, class_mask, replay_images, replay_labels,
                    replay_logits, replay_weight, refresh, replay_on=None):
        variables = self.network.trainable_variables
        if self.filter_gradients is not None:  # a refresh step computes every filter's gradient
            self.full_gradient_step.assign(refresh)
        with tf.GradientTape() as tape:
            logits = self.network(images, training=True)
            loss = self.method.current_loss(labels, logits, class_mask > 0)
            loss += self._replay_loss(replay_images, replay_labels, replay_logits,
                                      replay_weight,
                                      replay_weight > 0 if replay_on is None else replay_on)
        # The global batch's mean loss and gradient, identical on every replica from here on.
        loss, gradients = self.replication.mean((loss, tape.gradient(loss, variables)))
        gradients = list(gradients)

        kernel_position = {id(v): i for i, v in enumerate(variables)}
        positions = [kernel_position[id(layer.kernel)] for layer in self.sparse]
        sparse_gradients = [gradients[i] for i in positions]
        for stored, gradient in zip(self.last_gradients, sparse_gradients):
            stored.assign(gradient)
        if self.masking:
            multipliers = self._gradient_multipliers(sparse_gradients, refresh)
        elif self.filter_gradients is not None:
            multipliers, filter_density = self._select_filters(sparse_gradients, refresh)
        else:
            multipliers = []
        for position, multiplier in zip(positions, multipliers):
            gradients[position] = gradients[position] * multiplier
        self.optimizer.apply(gradients, variables)
        self.replication.settle()
        if self.masking:
            for layer in self.sparse:
                layer.apply_mask_to_kernel()
            density = tf.stack([tf.reduce_mean(m) for m in multipliers]) \
                if multipliers else tf.zeros((0,))
        elif self.filter_gradients is not None:
            density = filter_density
        else:
            density = tf.ones((len(self.sparse),))
        correct = tf.cast(tf.equal(tf.argmax(logits, axis=-1, output_type=tf.int32),
                                   tf.cast(labels, tf.int32)), tf.float32)
        return {"loss": loss, "gradient_density": density,
                **self.replication.gather({"logits": logits, "correct": correct})}
