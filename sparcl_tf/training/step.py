"""One continual-learning train step, the same graph for the Keras trainer and the exported
`train` signature (which plugs in the builtins-only gradient formulation, its own SGD and a
replay term that never branches).

In the order of the algorithm (SparCL's parts marked):
  1. forward the current batch; current-task loss (CL mask per the method), plus the replay
     terms the caller gives (the method's, on the host's replay draws, scaled by replay_weight);
  2. gradients, averaged over replicas under tf.distribute (identical on every replica after);
  3. the sparse layers' kernel gradients multiplied per the run's `GradientMasking` (weight
     masks, DGM gradient masks or the structured-DGM filter selection, refreshed when the host
     says `refresh`), the unmasked ones kept for the next mask update (TDM);
  4. apply; re-mask (masked kernel entries stay exactly zero);
  5. return the loss, the logits (the host stores them with the batch in the replay buffer),
     the per-example correctness (data removal) and the fraction of kernel entries updated per
     sparse layer (FLOPs).
"""

import tensorflow as tf

from sparcl_tf.distribute import Replication


class TrainStep:
    """The step of `network` trained with `method` under `masking`
    (`sparsity.gradient_masking`), on one device or `replication`'s replicas."""

    def __init__(self, network, method, masking, replication=None):
        self.network, self.method, self.masking = network, method, masking
        self.replication = replication or Replication()

    def __call__(self, images, labels, class_mask, replay_loss, refresh, apply_gradients):
        """`replay_loss()`: the weighted replay terms, traced inside the tape (None: none);
        `refresh`: recompute gradient masks or filter selections this step;
        `apply_gradients(gradients, variables)`: the optimizer's update."""
        network, masking = self.network, self.masking
        variables = network.trainable_variables
        position = {id(v): i for i, v in enumerate(variables)}
        positions = [position[id(layer.kernel)] for layer in masking.layers]
        with masking.selecting(refresh):
            with tf.GradientTape() as tape:
                logits = network(images, training=True)
                loss = self.method.current_loss(labels, logits, class_mask > 0)
                replay = replay_loss()
                if replay is not None:
                    loss += replay
            gradients = list(tape.gradient(loss, variables))
            scaled = masking.scaled([gradients[i] for i in positions])
            for index, gradient in zip(positions, scaled):
                gradients[index] = gradient
            loss, gradients = self.replication.mean((loss, gradients))
        gradients = list(gradients)
        sparse_gradients = [gradients[i] for i in positions]
        multipliers = masking.multipliers(sparse_gradients, refresh)
        masking.track(sparse_gradients, multipliers, refresh)
        for index, multiplier in zip(positions, multipliers):
            gradients[index] = gradients[index] * multiplier
        apply_gradients(gradients, variables)
        self.replication.settle()
        masking.after_apply()
        correct = tf.cast(tf.equal(tf.argmax(logits, axis=-1, output_type=tf.int32),
                                   tf.cast(labels, tf.int32)), tf.float32)
        return {"loss": loss, "gradient_density": masking.density(multipliers, refresh),
                **self.replication.gather({"logits": logits, "correct": correct})}
