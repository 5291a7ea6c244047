"""The continual-learning train step: a Keras 3 `Model` around a network of masked layers.

One step, in the order of the algorithm (SparCL's parts marked):
  1. augment the current batch; forward; current-task loss (CL mask per the method);
  2. when replay is on and the buffer holds data: draw replay batches, augment them again, add the
     method's replay terms;
  3. gradients; keep the sparse layers' dense kernel gradients for the next mask update (TDM);
  4. kernel gradients of sparse layers multiplied by the weight mask and, with DGM, by the gradient
     mask (refreshed here every k steps or when the loop asks);
  5. apply; re-mask kernels so masked entries stay exactly zero;
  6. offer the un-augmented batch, labels and logits to the reservoir;
  7. record per-example correctness and margin (DDR) and charge the step's FLOPs.
Which task is current, its class mask, the replay switch and the densities live in variables, so
the step is traced once per run.
"""

import keras
import numpy as np
import tensorflow as tf

from sparcl_tf.example_stats import margin
from sparcl_tf.flops import FlopsLedger
from sparcl_tf.layers import sparsifiable_layers
from sparcl_tf.sparsity import dgm
from sparcl_tf.sparsity.masks import active_count


class ContinualModel(keras.Model):
    """Trains `network` with `method`; `fit` takes batches of (images, labels, example_ids).

    `masking`: False for a dense run: no mask multiplies, gradient masking or re-masking at all,
    the plain model (also the compacted model of channel-structured SparCL, whose slots are
    switched by ChannelMask layers). `reference_network`: the full model whose FLOPs count as
    dense when `network` is compacted. `gradient_masks`: None (no DGM) or settings with
    `gradient_sparsity`, `refresh_every` and `threshold` ('topk' or 'bisection').
    `filter_gradients`: structured DGM on a compacted model: settings with `keep` (filters per
    sparse layer whose kernel gradients a step computes), `slot_masks` (each layer's ChannelMask
    variable) and `refresh_every`. `track_gradients`: keep the last kernel gradients of the
    sparse layers for mask updates.
    """

    def __init__(self, network, method, num_classes, augment, generator, buffer=None,
                 stats=None, replay_batch_size=32, masking=True, gradient_masks=None,
                 track_gradients=False, reference_network=None, filter_gradients=None,
                 **kwargs):
        super().__init__(**kwargs)
        if method.uses_buffer and buffer is None:
            raise ValueError(f"method {method.name!r} needs a replay buffer")
        if not masking and gradient_masks is not None:
            raise ValueError("gradient masks need masking=True")
        self.network = network
        self.method = method
        self.augment = augment
        self.generator = generator
        self.buffer = buffer
        self.stats = stats
        self.replay_batch_size = replay_batch_size
        self.sparse = sparsifiable_layers(network)
        self.masking = masking
        for layer in self.sparse:
            layer.mask_enabled = masking
        self.ledger = FlopsLedger(network, reference_network)
        self.dgm = gradient_masks
        self.track_gradients = track_gradients

        def variable(value, name):
            return tf.Variable(value, trainable=False, name=name)

        sparse_count = len(self.sparse)
        self.task_index = variable(0, "task_index")
        self.class_mask = variable(tf.zeros((num_classes,), tf.bool), "class_mask")
        self.replay_enabled = variable(False, "replay_enabled")
        self.weight_density = variable(tf.ones((sparse_count,)), "weight_density")
        self.gradient_density_sum = variable(tf.zeros((sparse_count,)), "gradient_density_sum")
        self.gradient_density_steps = variable(0.0, "gradient_density_steps")
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
            self.refresh_pending = variable(True, "gradient_mask_refresh_pending")
            self.steps_since_refresh = variable(0, "gradient_mask_steps_since_refresh")
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
            self.refresh_pending = variable(True, "gradient_mask_refresh_pending")
            self.steps_since_refresh = variable(0, "gradient_mask_steps_since_refresh")
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.accuracy_tracker = keras.metrics.Mean(name="accuracy")

    def call(self, inputs, training=False):
        return self.network(inputs, training=training)

    @property
    def metrics(self):
        return [self.loss_tracker, self.accuracy_tracker]

    def state(self):
        """Name -> variable for the run state this object owns (not weights or optimizer)."""
        variables = [self.task_index, self.class_mask, self.replay_enabled, self.weight_density,
                     self.gradient_density_sum, self.gradient_density_steps,
                     *self.last_gradients, *self.ledger.state().values()]
        if self.dgm is not None:
            variables += [*self.gradient_mask_vars, self.refresh_pending,
                          self.steps_since_refresh]
        if self.filter_gradients is not None:
            variables += [*self.filter_selections, self.full_gradient_step, self.refresh_pending,
                          self.steps_since_refresh]
        return {v.name.split(":")[0]: v for v in variables}

    def begin_task(self, task_index, classes, replay_enabled):
        self.task_index.assign(task_index)
        self.class_mask.assign(np.isin(np.arange(self.class_mask.shape[0]), classes))
        self.replay_enabled.assign(bool(replay_enabled))

    def masks_changed(self):
        """Called after the sparse layers' masks change: new densities, fresh gradient masks."""
        self.weight_density.assign(
            np.array([np.mean(layer.mask.numpy()) for layer in self.sparse], np.float32))
        self.request_gradient_mask_refresh()

    def request_gradient_mask_refresh(self):
        if self.dgm is not None or self.filter_gradients is not None:
            self.refresh_pending.assign(True)

    def _replay_loss(self):
        """(replay loss, examples forwarded for it); zero when replay is off or the buffer empty."""
        def forward(images):
            return self.network(self.augment(images), training=True)

        def replay_terms():
            draws = [self.buffer.sample(self.replay_batch_size)[:3]
                     for _ in range(self.method.replay_draws)]
            examples = tf.add_n([tf.shape(images)[0] for images, _, _ in draws])
            return self.method.replay_loss(forward, draws), examples

        def nothing():
            return tf.constant(0.0), tf.constant(0)

        if not self.method.uses_buffer:
            return nothing()
        return tf.cond(self.replay_enabled & (self.buffer.size() > 0), replay_terms, nothing)

    def _refreshed_gradient_masks(self, masked_gradients, weight_masks):
        def refresh():
            for variable, gradient, keep, active in zip(
                    self.gradient_mask_vars, masked_gradients, self.gradient_keep, weight_masks):
                variable.assign(dgm.gradient_mask(gradient, keep, self.dgm.threshold, active))
            self.steps_since_refresh.assign(0)
            self.refresh_pending.assign(False)
            return tf.constant(True)

        due = self.refresh_pending | (self.steps_since_refresh >= self.dgm.refresh_every)
        with tf.control_dependencies([tf.cond(due, refresh, lambda: tf.constant(False))]):
            self.steps_since_refresh.assign_add(1)
            return [tf.identity(v) for v in self.gradient_mask_vars]

    def gradient_multipliers(self, sparse_gradients):
        """Per sparse layer, what its kernel gradient is multiplied by before the update."""
        weight_masks = [tf.cast(layer.mask, tf.float32) for layer in self.sparse]
        if self.dgm is None:
            return weight_masks
        masked = [g * m for g, m in zip(sparse_gradients, weight_masks)]
        return [m * g for m, g in zip(
            weight_masks, self._refreshed_gradient_masks(masked, weight_masks))]

    def _select_filters(self, sparse_gradients):
        """Structured DGM: after a full-gradient step, each layer keeps the active filters of
        largest gradient magnitude (summed over the filter) for the next steps; returns this
        step's per-layer gradient multipliers and the fractions of filters updated."""
        def refresh():
            for selection, gradient, keep, slots in zip(
                    self.filter_selections, sparse_gradients, self.filter_gradients.keep,
                    self.filter_gradients.slot_masks):
                norms = tf.reduce_sum(tf.abs(tf.reshape(gradient, [-1, gradient.shape[-1]])), 0)
                norms = tf.where(slots > 0, norms, -1.0)  # inactive slots rank last
                selection.assign(tf.math.top_k(norms, k=keep).indices)
            self.steps_since_refresh.assign(0)
            self.refresh_pending.assign(False)
            return tf.constant(True)

        with tf.control_dependencies([tf.cond(self.full_gradient_step, refresh,
                                              lambda: tf.constant(False))]):
            self.steps_since_refresh.assign_add(1)
            multipliers = [tf.reduce_sum(tf.one_hot(s, g.shape[-1]), 0)
                           for s, g in zip(self.filter_selections, sparse_gradients)]
        density = tf.stack([tf.where(self.full_gradient_step, 1.0, keep / g.shape[-1])
                            for keep, g in zip(self.filter_gradients.keep, sparse_gradients)])
        return multipliers, density

    def train_step(self, data):
        images, labels, example_ids = data
        variables = self.network.trainable_variables
        if self.filter_gradients is not None:  # a refresh step computes every filter's gradient
            self.full_gradient_step.assign(
                self.refresh_pending
                | (self.steps_since_refresh >= self.filter_gradients.refresh_every))
        with tf.GradientTape() as tape:
            logits = self.network(self.augment(images), training=True)
            loss = self.method.current_loss(labels, logits, self.class_mask)
            replay_loss, replay_examples = self._replay_loss()
            loss += replay_loss
        gradients = tape.gradient(loss, variables)

        kernel_position = {id(v): i for i, v in enumerate(variables)}
        positions = [kernel_position[id(layer.kernel)] for layer in self.sparse]
        sparse_gradients = [gradients[i] for i in positions]
        for stored, gradient in zip(self.last_gradients, sparse_gradients):
            stored.assign(gradient)
        if self.masking:
            multipliers = self.gradient_multipliers(sparse_gradients)
            for position, multiplier in zip(positions, multipliers):
                gradients[position] = gradients[position] * multiplier
        elif self.filter_gradients is not None:
            filter_multipliers, filter_density = self._select_filters(sparse_gradients)
            for position, multiplier in zip(positions, filter_multipliers):
                gradients[position] = gradients[position] * multiplier
        self.optimizer.apply(gradients, variables)
        if self.masking:
            for layer in self.sparse:
                layer.apply_mask_to_kernel()
            gradient_density = tf.stack([tf.reduce_mean(m) for m in multipliers]) \
                if multipliers else tf.zeros((0,))
        elif self.filter_gradients is not None:
            gradient_density = filter_density
        else:
            gradient_density = tf.ones((len(self.sparse),))
        self.gradient_density_sum.assign_add(gradient_density)
        self.gradient_density_steps.assign_add(1.0)
        self._charge_flops(tf.shape(labels)[0] + replay_examples, gradient_density)

        if self.method.uses_buffer:
            task_ids = tf.fill(tf.shape(labels), self.task_index)
            self.buffer.add(images, labels, logits, task_ids, example_ids)
        correct = tf.equal(tf.argmax(logits, axis=-1), tf.cast(labels, tf.int64))
        if self.stats is not None:
            self.stats.observe(example_ids, correct, margin(logits, labels))
        self.loss_tracker.update_state(loss)
        self.accuracy_tracker.update_state(tf.reduce_mean(tf.cast(correct, tf.float32)))
        return {"loss": self.loss_tracker.result(), "accuracy": self.accuracy_tracker.result()}

    def _charge_flops(self, examples, sparse_gradient_density):
        sparse_index = {layer.name: i for i, layer in enumerate(self.sparse)}
        weight, gradient = [], []
        for name in self.ledger.names:
            if name in sparse_index:
                weight.append(self.weight_density[sparse_index[name]])
                gradient.append(sparse_gradient_density[sparse_index[name]])
            else:
                weight.append(tf.constant(1.0))
                gradient.append(tf.constant(1.0))
        self.ledger.charge(examples, tf.stack(weight), tf.stack(gradient))

