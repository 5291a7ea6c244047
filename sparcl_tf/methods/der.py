"""Dark Experience Replay (Buzzega et al. 2020): match the logits stored with replayed inputs."""

from sparcl_tf.methods.base import ContinualMethod


class DER(ContinualMethod):
    """DER: the current batch's loss + `alpha` (default 0.3) x the squared distance to the logits
    stored with a replay draw. Arguments as `ContinualMethod`."""

    name = "der"
    REPLAY_TERMS = (("mse", "alpha"),)
    default_alpha = 0.3
