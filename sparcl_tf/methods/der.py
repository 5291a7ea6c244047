"""Dark Experience Replay (Buzzega et al. 2020): match the logits stored with replayed inputs."""

from sparcl_tf.methods.base import ContinualMethod


class DER(ContinualMethod):
    name = "der"
    REPLAY_TERMS = (("mse", "alpha"),)
    default_alpha = 0.3
