"""A `tf.Module` whose signatures train a masked network continually, for conversion to TFLite.

Signatures (builtins-only: the network is switched to `use_builtin_gradients`):
  infer(images) -> logits
  train(images, labels, class_mask, replay_images, replay_labels, replay_logits, replay_weight)
      -> loss, logits, correct. One SGD step on the current batch (CE over the classes in
      class_mask) plus, scaled by replay_weight (0 before the buffer has data), DER++'s replay terms
      on one replay batch: alpha * MSE(logits, replay_logits) + beta * CE(replay_labels). Kernel
      gradients of sparse layers are multiplied by their masks; kernels are re-masked after.
  get_state() -> every variable, by name; set_state(every variable) -> number of variables.
The host app owns the replay buffer and the data-removal bookkeeping.

This is the first part of on-device training: mask updates and gradient-mask refresh signatures,
the conversion binary and the LiteRT runner are not built yet.
"""

import tensorflow as tf

from sparcl_tf.layers import sparsifiable_layers, use_builtin_gradients


def _state_name(variable):
    return variable.path.replace("/", "__")


class TrainingModule(tf.Module):
    def __init__(self, network, batch_size, replay_batch_size, learning_rate, alpha=0.1,
                 beta=0.5):
        super().__init__()
        use_builtin_gradients(network)
        self._network = network
        self._sparse = sparsifiable_layers(network)
        # Keras 3 variables held only through the model convert uninitialised: track them here.
        self._tracked = [v.value for v in network.variables]
        self._alpha, self._beta = float(alpha), float(beta)
        self._learning_rate = float(learning_rate)
        self._state_names = [_state_name(v) for v in network.variables]
        shape = tuple(network.input_shape[1:])
        classes = int(network.output_shape[-1])
        images = tf.TensorSpec((batch_size,) + shape, tf.float32, name="images")
        self.infer = tf.function(self._infer, input_signature=[images])
        self.train = tf.function(self._train, input_signature=[
            images, tf.TensorSpec((batch_size,), tf.int32, name="labels"),
            tf.TensorSpec((classes,), tf.float32, name="class_mask"),
            tf.TensorSpec((replay_batch_size,) + shape, tf.float32, name="replay_images"),
            tf.TensorSpec((replay_batch_size,), tf.int32, name="replay_labels"),
            tf.TensorSpec((replay_batch_size, classes), tf.float32, name="replay_logits"),
            tf.TensorSpec((), tf.float32, name="replay_weight")])
        self.get_state = tf.function(self._get_state, input_signature=[])
        self.set_state = tf.function(self._set_state, input_signature=[
            {name: tf.TensorSpec(v.shape, v.dtype, name=name)
             for name, v in zip(self._state_names, network.variables)}])

    def signatures(self):
        return {"infer": self.infer, "train": self.train, "get_state": self.get_state,
                "set_state": self.set_state}

    def _infer(self, images):
        return {"logits": self._network(images, training=False)}

    def _train(self, images, labels, class_mask, replay_images, replay_labels, replay_logits,
               replay_weight):
        variables = self._network.trainable_variables
        with tf.GradientTape() as tape:
            logits = self._network(images, training=True)
            masked_logits = logits + (class_mask - 1.0) * 1e9  # CL mask without SELECT
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
                labels, masked_logits))
            replayed = self._network(replay_images, training=True)
            replay = self._alpha * tf.reduce_mean(tf.square(replayed - replay_logits))
            replay += self._beta * tf.reduce_mean(
                tf.nn.sparse_softmax_cross_entropy_with_logits(replay_labels, replayed))
            loss += replay_weight * replay
        gradients = tape.gradient(loss, variables)
        masks = {id(layer.kernel): layer.mask for layer in self._sparse}
        for variable, gradient in zip(variables, gradients):
            if id(variable) in masks:
                gradient = gradient * masks[id(variable)]
            variable.assign_sub(self._learning_rate * gradient)
        for layer in self._sparse:
            layer.apply_mask_to_kernel()
        correct = tf.cast(tf.equal(tf.argmax(logits, axis=-1, output_type=tf.int32), labels),
                          tf.float32)
        return {"loss": loss, "logits": logits, "correct": correct}

    def _get_state(self):
        return {name: tf.identity(v.value) for name, v in
                zip(self._state_names, self._network.variables)}

    def _set_state(self, state):
        for name, variable in zip(self._state_names, self._network.variables):
            variable.assign(state[name])
        # An output that depends on the assignments: a signature without outputs loses them.
        return {"variables": tf.constant(len(self._state_names), tf.int32)}


def convert(module, directory):
    """SavedModel in `directory`, then a builtins-only .tflite with every signature (bytes)."""
    signatures = module.signatures()
    tf.saved_model.save(module, directory, signatures=signatures)
    converter = tf.lite.TFLiteConverter.from_saved_model(directory,
                                                         signature_keys=list(signatures))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    converter.experimental_enable_resource_variables = True
    return converter.convert()
