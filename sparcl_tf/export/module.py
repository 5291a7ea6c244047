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
everything that touches weights. The train signature is the Keras trainer's step
(`training.step.TrainStep`, with the run's `sparsity.kind` gradient masking) on the builtins-only
gradient formulation, so the two cannot drift apart.
"""

import keras
import tensorflow as tf

from sparcl_tf.export.device_masks import DeviceMasks
from sparcl_tf.layers import MASKED_LAYER_TYPES, use_builtin_gradients
from sparcl_tf.methods import build_method
from sparcl_tf.session.plan import state_name
from sparcl_tf.sparsity.kind import WeightMasks
from sparcl_tf.training.step import TrainStep


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
    """Signatures for on-device SparCL on `network` (see the module docstring), its sparsity
    per `kind` (`sparsity.kind`; default: fixed weight masks): the kind's gradient masking
    (masks stored as bool) and its `update_masks` rule; `grow` ("random" or "gradient") and
    `importance_lambda` for the device's mask updates."""

    def __init__(self, network, method, batch_size, replay_batch_size, kind=None, momentum=0.0,
                 grow="random", importance_lambda=0.5, flex=False):
        super().__init__()
        kind = kind or WeightMasks()
        kind.prepare(network)
        self._network = network
        self._method = method
        self._masking = kind.gradient_masking(network, mask_dtype="bool")
        self._step = TrainStep(network, method, self._masking)
        self._momentum = float(momentum)
        self._moving_statistics = [v for v in network.non_trainable_variables if v.path.endswith(
            ("moving_mean", "moving_variance"))]

        # Keras 3 variables held only through the model convert uninitialised: track them here.
        state = {state_name(v): v.value for v in network.variables}
        self._velocities = [tf.Variable(tf.zeros(v.shape), trainable=False,
                                        name=f"momentum__{state_name(v)}")
                            for v in network.trainable_variables] if self._momentum else []
        state.update({v.name.split(":")[0]: v for v in self._velocities})
        state.update(self._masking.state())
        self._state = state

        shape = tuple(network.input_shape[1:])
        classes = int(network.output_shape[-1])
        images = tf.TensorSpec((batch_size,) + shape, tf.float32, name="images")
        train_inputs = [images, tf.TensorSpec((batch_size,), tf.int32, name="labels"),
                        tf.TensorSpec((classes,), tf.float32, name="class_mask")]
        self._replay_draws = method.replay_draws
        if self._replay_draws:
            draws = (self._replay_draws, replay_batch_size)
            train_inputs += [
                tf.TensorSpec(draws + shape, tf.float32, name="replay_images"),
                tf.TensorSpec(draws, tf.int32, name="replay_labels"),
                tf.TensorSpec(draws + (classes,), tf.float32, name="replay_logits"),
                tf.TensorSpec((), tf.float32, name="replay_weight")]
        if self._masking.refreshes:
            train_inputs.append(tf.TensorSpec((), tf.float32, name="refresh_gradient_masks"))
        train_inputs.append(tf.TensorSpec((), tf.float32, name="learning_rate"))
        layers = len(self._masking.layers)
        self.infer = tf.function(self._infer, input_signature=[images])
        self.train = tf.function(self._train_signature, input_signature=train_inputs)
        self._masks = DeviceMasks(network, self._masking.layers, self._masking.last_gradients,
                                  self._momenta, kind.mask_rule, grow, importance_lambda)
        self.update_masks = tf.function(self._masks.update, input_signature=[
            tf.TensorSpec((layers,), tf.int32, name="prune_to"),
            tf.TensorSpec((layers,), tf.int32, name="grow_to"),
            tf.TensorSpec((), tf.int32, name="seed")]) if kind.mask_rule and layers else None
        path = tf.TensorSpec((), tf.string, name="checkpoint_path")
        self.save = tf.function(self._save, input_signature=[path]) if flex else None
        self.restore = tf.function(self._restore, input_signature=[path]) if flex else None
        self.get_state = tf.function(self._get_state, input_signature=[
            tf.TensorSpec((), tf.int32, name="dummy")])
        self.set_state = tf.function(self._set_state, input_signature=[
            {name: tf.TensorSpec(v.shape, v.dtype, name=name) for name, v in state.items()}])

    @property
    def sparse_layer_names(self):
        return [layer.name for layer in self._masking.layers]

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

        def replay_loss():
            """The replay terms, always computed (a builtins-only graph does not branch); while
            replay is off (weight 0) its zero draws must not move BatchNorm's statistics."""
            if not draws:
                return None
            before = [tf.identity(v) for v in self._moving_statistics]
            replay = replay_weight * self._method.replay_loss(
                lambda x: self._network(x, training=True), draws)
            for variable, value in zip(self._moving_statistics, before):
                variable.assign(tf.where(replay_weight > 0, variable, value))
            return replay

        refresh = rest[0] > 0 if rest else False
        return self._step(images, labels, class_mask, replay_loss, refresh,
                          lambda gradients, variables: self._apply_sgd(variables, gradients,
                                                                       learning_rate))

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


def training_module(config, network, kind, flex=False, method=None):
    """The module for a run's `config`, on an export copy of its trained `network` of sparsity
    `kind`; `method`: the run's method object (default: the config's)."""
    return TrainingModule(
        export_network(network), method or build_method(config.method), config.batch_size,
        config.replay.batch_size, kind, config.optimizer.momentum, config.sparsity.grow,
        config.sparsity.importance_lambda, flex)
