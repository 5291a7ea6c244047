"""Dark Experience Replay (Buzzega et al. 2020): match the logits stored with replayed inputs."""

import tensorflow as tf

from sparcl_tf.methods.base import ContinualMethod


class DER(ContinualMethod):
    name = "der"
    uses_buffer = True
    replay_draws = 1
    default_alpha = 0.3

    def replay_loss(self, forward, draws):
        (images, _, stored_logits), = draws
        return self.alpha * tf.reduce_mean(tf.square(forward(images) - stored_logits))
