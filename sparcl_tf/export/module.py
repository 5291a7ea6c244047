"""A `tf.Module` whose signatures run SparCL continual learning on a device, for TFLite.

Signatures (TFLite builtin ops only; the network's convs and ReLUs use `builtin_gradients`):
  infer(images) -> logits
  train(images, labels, class_mask[, replay_images, replay_labels, replay_logits, replay_weight]
        [, refresh_gradient_masks], learning_rate) -> loss, logits, correct, gradient_density
      One step of the Keras trainer's `train_step` on given batches: the method's current-batch
      loss (CL mask from class_mask) plus, scaled by replay_weight (0 while the buffer is empty),
      its replay terms on the replay draws (leading axis: one draw per `method.replay_draws`);
      the sparse layers' dense kernel gradients kept for `update_masks`; kernel gradients times the
      weight mask and, with DGM, the gradient mask (recomputed from this step's gradients when
      refresh_gradient_masks > 0, exactly as the trainer's in-step refresh); SGD at the step's
      learning_rate (the host reads the plan's schedule; momentum as Keras' SGD); kernels
      re-masked. gradient_density: per sparse layer, the fraction of kernel entries updated (for
      FLOPs accounting on the host).
  update_masks(prune_to, grow_to, seed) -> active             (TDM / RigL schedules only)
      Per sparse layer: keep the prune_to highest-scoring active weights (TDM: |W| + lambda |G|,
      G the last step's masked gradient; RigL: |W|), then activate inactive positions up to
      grow_to active weights (random by a seeded integer hash, or by |G|). Exact counts (a full
      TOPK_V2 ranking, ties to the lower index). Dropped weights and their momentum are zeroed;
      grown weights start at 0. The host runs the schedule and passes the counts
      (`device_masks`; for a channel-structured model the counts are filter slots).
  get_state(dummy) -> every variable by name; set_state(every variable) -> number of variables.
      (`dummy`, an ignored int32 scalar: LiteRT's Java `runSignature` refuses empty inputs.)
  save(checkpoint_path) / restore(checkpoint_path)            (the `flex` variant only)
      Every variable to / from a TF checkpoint file through the Save / Restore ops, which only the
      Select-TF ("Flex") runtime has; apps without it persist get_state's outputs themselves.
The host owns the replay buffer, augmentation and the data-removal bookkeeping; the module owns
everything that touches weights. Losses come from the method objects the Keras trainer uses and
gradient masks from `sparsity.dgm`, so the two cannot drift apart.
"""

import keras
import numpy as np
import tensorflow as tf

from sparcl_tf.engines.keras import full_filter_counts, structured_gradient_filters
from sparcl_tf.export.device_masks import DeviceMasks
from sparcl_tf.layers import (MASKED_LAYER_TYPES, channel_masks, sparsifiable_layers,
                              use_builtin_gradients)
from sparcl_tf.methods import build_method
from sparcl_tf.session.plan import state_name
from sparcl_tf.sparsity import dgm
from sparcl_tf.sparsity.masks import active_count


def export_network(network):
    """A copy of `network` for export: bool masks, builtins-only gradients, the same weights."""
    def clone(layer):
        config = layer.get_config()
        if isinstance(layer, MASKED_LAYER_TYPES):
            config["mask_dtype"] = "bool"
        return layer.__class__.from_config(config)

    copy = keras.models.clone_model(network, clone_function=clone)
    for source, target in zip(network.variables, copy.variables):
        if source.path != target.path or tuple(source.shape) != tuple(target.shape):
            raise ValueError(f"clone mismatch: {source.path} vs {target.path}")
        value = source.numpy()
        target.assign(value > 0 if target.dtype == "bool" else value)
    use_builtin_gradients(copy)
    return copy


class TrainingModule(tf.Module):
    """Signatures for on-device SparCL on `network` (see the module docstring).

    `gradient_masks`: None (no DGM) or settings with `gradient_sparsity` and `threshold`.
    `filter_gradient_keep`: structured DGM on a compacted model: per sparse layer, how many
    active filters a step updates (chosen at each refresh by summed |gradient|, as the trainer).
    `mask_rule`: None (masks fixed on device), "tdm" or "rigl", or "slots" (a compacted
    channel-structured model: update_masks switches filter slots); `grow`: "random" or
    "gradient".
    """

    def __init__(self, network, method, batch_size, replay_batch_size, momentum=0.0,
                 gradient_masks=None, mask_rule=None, grow="random", importance_lambda=0.5,
                 filter_gradient_keep=None, flex=False):
        super().__init__()
        self._network = network
        self._method = method
        self._sparse = sparsifiable_layers(network)
        self._momentum = float(momentum)
        self._dgm = gradient_masks
        self._moving_statistics = [v for v in network.non_trainable_variables if v.path.endswith(
            ("moving_mean", "moving_variance"))]

        def variable(value, name):
            return tf.Variable(value, trainable=False, name=name)

        # Keras 3 variables held only through the model convert uninitialised: track them here.
        state = {state_name(v): v.value for v in network.variables}
        trainable = network.trainable_variables
        self._velocities = [variable(tf.zeros(v.shape), f"momentum__{state_name(v)}")
                            for v in trainable] if self._momentum else []
        self._last_gradients = [
            variable(tf.zeros(layer.kernel.shape), f"last_gradient__{layer.name}")
            for layer in self._sparse] if mask_rule else []
        self._gradient_masks = [variable(tf.ones(layer.kernel.shape, tf.bool),
                                         f"gradient_mask__{layer.name}")
                                for layer in self._sparse] if gradient_masks else []
        self._gradient_keep = [active_count(int(np.prod(layer.kernel.shape)),
                                            gradient_masks.gradient_sparsity)
                               for layer in self._sparse] if gradient_masks else []
        self._filter_keep = list(filter_gradient_keep or [])
        slot_masks = {group.producer: group.mask for group in channel_masks(network)}
        self._slot_masks = [slot_masks[layer.name] for layer in self._sparse] \
            if self._filter_keep else []
        self._filter_selections = [
            variable(tf.cast(tf.range(layer.kernel.shape[-1]) < keep, tf.float32),
                     f"filter_selection__{layer.name}")
            for layer, keep in zip(self._sparse, self._filter_keep)]
        for v in (self._velocities + self._last_gradients + self._gradient_masks
                  + self._filter_selections):
            state[v.name.split(":")[0]] = v
        self._state = state

        shape = tuple(network.input_shape[1:])
        classes = int(network.output_shape[-1])
        images = tf.TensorSpec((batch_size,) + shape, tf.float32, name="images")
        train_inputs = [images, tf.TensorSpec((batch_size,), tf.int32, name="labels"),
                        tf.TensorSpec((classes,), tf.float32, name="class_mask")]
        self._replay_draws = method.replay_draws if method.uses_buffer else 0
        if self._replay_draws:
            draws = (self._replay_draws, replay_batch_size)
            train_inputs += [
                tf.TensorSpec(draws + shape, tf.float32, name="replay_images"),
                tf.TensorSpec(draws, tf.int32, name="replay_labels"),
                tf.TensorSpec(draws + (classes,), tf.float32, name="replay_logits"),
                tf.TensorSpec((), tf.float32, name="replay_weight")]
        if gradient_masks or self._filter_keep:
            train_inputs.append(tf.TensorSpec((), tf.float32, name="refresh_gradient_masks"))
        train_inputs.append(tf.TensorSpec((), tf.float32, name="learning_rate"))
        layers = len(self._sparse)
        self.infer = tf.function(self._infer, input_signature=[images])
        self.train = tf.function(self._train_signature, input_signature=train_inputs)
        self._masks = DeviceMasks(network, self._sparse, self._last_gradients, self._momenta,
                                  mask_rule, grow, importance_lambda)
        self.update_masks = tf.function(self._masks.update, input_signature=[
            tf.TensorSpec((layers,), tf.int32, name="prune_to"),
            tf.TensorSpec((layers,), tf.int32, name="grow_to"),
            tf.TensorSpec((), tf.int32, name="seed")]) if mask_rule and layers else None
        path = tf.TensorSpec((), tf.string, name="checkpoint_path")
        self.save = tf.function(self._save, input_signature=[path]) if flex else None
        self.restore = tf.function(self._restore, input_signature=[path]) if flex else None
        self.get_state = tf.function(self._get_state, input_signature=[
            tf.TensorSpec((), tf.int32, name="dummy")])
        self.set_state = tf.function(self._set_state, input_signature=[
            {name: tf.TensorSpec(v.shape, v.dtype, name=name) for name, v in state.items()}])

    @property
    def sparse_layer_names(self):
        return [layer.name for layer in self._sparse]

    def signatures(self):
        signatures = {"infer": self.infer, "train": self.train, "get_state": self.get_state,
                      "set_state": self.set_state}
        for key in ("update_masks", "save", "restore"):
            if getattr(self, key) is not None:
                signatures[key] = getattr(self, key)
        return signatures

    def _infer(self, images):
        return {"logits": self._network(images, training=False)}

    def _train_signature(self, images, labels, class_mask, *rest):
        *rest, learning_rate = rest
        draws, replay_weight = [], None
        if self._replay_draws:
            replay_images, replay_labels, replay_logits, replay_weight = rest[:4]
            rest = rest[4:]
            draws = [(replay_images[i], replay_labels[i], replay_logits[i])
                     for i in range(self._replay_draws)]
        refresh = rest[0] if rest else None
        return self._train(images, labels, class_mask, draws, replay_weight, refresh,
                           learning_rate)

    def _train(self, images, labels, class_mask, draws, replay_weight, refresh, learning_rate):
        step = (images, labels, class_mask, draws, replay_weight, refresh, learning_rate)
        if not self._filter_keep:
            return self._step(*step)
        # Structured DGM inside the step: kernel gradients of the selected filters only (all on
        # a refresh step, which selects anew from them). The layers read these graph tensors
        # while this signature is traced, and nothing else does.
        for layer, selection, keep in zip(self._sparse, self._filter_selections,
                                          self._filter_keep):
            layer.filter_selection = tf.math.top_k(selection, k=keep).indices
            layer.full_kernel_gradient = refresh > 0
        try:
            return self._step(*step)
        finally:
            for layer in self._sparse:
                layer.filter_selection = layer.full_kernel_gradient = None

    def _step(self, images, labels, class_mask, draws, replay_weight, refresh, learning_rate):
        variables = self._network.trainable_variables
        with tf.GradientTape() as tape:
            logits = self._network(images, training=True)
            loss = self._method.current_loss(labels, logits, class_mask > 0)
            if draws:
                before_replay = [tf.identity(v) for v in self._moving_statistics]
                replay = self._method.replay_loss(
                    lambda x: self._network(x, training=True), draws)
                loss += replay_weight * replay
        gradients = tape.gradient(loss, variables)
        if draws:  # while replay is off its zero draws must not move BatchNorm's statistics
            for variable, value in zip(self._moving_statistics, before_replay):
                variable.assign(tf.where(replay_weight > 0, variable, value))

        position = {id(v): i for i, v in enumerate(variables)}
        positions = [position[id(layer.kernel)] for layer in self._sparse]
        multipliers = self._gradient_multipliers([gradients[i] for i in positions], refresh)
        for stored, index in zip(self._last_gradients, positions):
            # Structured DGM computes (on the host) every filter's gradient on a refresh step and
            # only the selected filters' on the others: the next slot update's importance sees
            # what the host computed, so it does here too.
            stored.assign(gradients[index] * tf.maximum(multipliers[positions.index(index)],
                                                        refresh)
                          if self._filter_keep else gradients[index])
        for index, multiplier in zip(positions, multipliers):
            gradients[index] = gradients[index] * multiplier
        self._apply_sgd(variables, gradients, learning_rate)
        for layer in self._sparse:
            layer.apply_mask_to_kernel()
        correct = tf.cast(tf.equal(tf.argmax(logits, axis=-1, output_type=tf.int32), labels),
                          tf.float32)
        if self._filter_keep:  # a refresh step computes every filter's gradient
            density = tf.stack([tf.where(refresh > 0, 1.0, keep / layer.kernel.shape[-1])
                                for keep, layer in zip(self._filter_keep, self._sparse)])
        else:
            density = tf.stack([tf.reduce_mean(m) for m in multipliers]) if multipliers \
                else tf.zeros((0,))
        return {"loss": loss, "logits": logits, "correct": correct, "gradient_density": density}

    def _gradient_multipliers(self, sparse_gradients, refresh):
        weight_masks = [tf.cast(layer.mask, tf.float32) for layer in self._sparse]
        if self._filter_keep:
            return self._filter_multipliers(sparse_gradients, refresh)
        if not self._dgm:
            return weight_masks

        def recompute():
            for stored, gradient, keep, active in zip(
                    self._gradient_masks, sparse_gradients, self._gradient_keep, weight_masks):
                stored.assign(dgm.gradient_mask(gradient * active, keep, self._dgm.threshold,
                                                active) > 0)
            return tf.constant(1.0)

        done = tf.cond(refresh > 0, recompute, lambda: tf.constant(0.0))
        with tf.control_dependencies([done]):
            return [w * tf.cast(g, tf.float32) for w, g in zip(weight_masks, self._gradient_masks)]

    def _filter_multipliers(self, sparse_gradients, refresh):
        """Structured DGM: at a refresh, each layer selects its `keep` active filters of largest
        summed |gradient| (inactive slots rank last, ties to the lower slot); every step updates
        the selected filters only."""
        def recompute():
            for selection, gradient, keep, slots in zip(
                    self._filter_selections, sparse_gradients, self._filter_keep,
                    self._slot_masks):
                norms = tf.reduce_sum(tf.abs(tf.reshape(gradient, [-1, gradient.shape[-1]])), 0)
                norms = tf.where(slots > 0, norms, -1.0)
                chosen = tf.math.top_k(norms, k=keep).indices
                selection.assign(tf.scatter_nd(chosen[:, None], tf.ones([keep]),
                                               [gradient.shape[-1]]))
            return tf.constant(1.0)

        done = tf.cond(refresh > 0, recompute, lambda: tf.constant(0.0))
        with tf.control_dependencies([done]):
            return [tf.identity(selection) for selection in self._filter_selections]

    def _apply_sgd(self, variables, gradients, learning_rate):
        if not self._momentum:
            for variable, gradient in zip(variables, gradients):
                variable.assign_sub(learning_rate * gradient)
            return
        for variable, velocity, gradient in zip(variables, self._velocities, gradients):
            velocity.assign(self._momentum * velocity - learning_rate * gradient)
            variable.assign_add(velocity)

    def _momenta(self, variable):
        """The optimizer velocity of `variable` ([] without momentum or for non-trainables)."""
        if not self._velocities:
            return []
        ids = [id(v) for v in self._network.trainable_variables]
        return [self._velocities[ids.index(id(variable))]] if id(variable) in ids else []

    def _get_state(self, dummy):
        del dummy
        return {name: tf.identity(v) for name, v in self._state.items()}

    def _set_state(self, state):
        for name, variable in self._state.items():
            variable.assign(state[name])
        # An output that depends on the assignments: a signature without outputs loses them.
        return {"variables": tf.constant(len(self._state), tf.int32)}


    def _save(self, checkpoint_path):
        names = list(self._state)
        tf.raw_ops.Save(filename=checkpoint_path, tensor_names=names,
                        data=[self._state[name] for name in names])
        return {"checkpoint_path": checkpoint_path}

    def _restore(self, checkpoint_path):
        for name, variable in self._state.items():
            variable.assign(tf.raw_ops.Restore(file_pattern=checkpoint_path, tensor_name=name,
                                               dt=variable.dtype))
        return {"variables": tf.constant(len(self._state), tf.int32)}


def training_module(config, network, flex=False, method=None):
    """The module for a run's `config`, on an export copy of its trained `network`; `method`:
    the run's method object (default: the config's)."""
    schedule, dgm_settings = config.sparsity.schedule, config.dgm if config.dgm.enabled else None
    filter_keep = None
    if config.sparsity.granularity == "filter":  # slots on device, structured DGM by filters
        filter_keep = structured_gradient_filters(config, network, full_filter_counts(
            config, network)) if dgm_settings else None
        schedule, dgm_settings = ("slots" if schedule == "tdm" else "none"), None
    return TrainingModule(
        export_network(network), method or build_method(config.method), config.batch_size,
        config.replay.batch_size, config.optimizer.momentum,
        gradient_masks=dgm_settings,
        mask_rule=schedule if schedule in ("tdm", "rigl", "slots") else None,
        grow=config.sparsity.grow,
        importance_lambda=config.sparsity.importance_lambda, filter_gradient_keep=filter_keep,
        flex=flex)
