"""DER++: DER's logit matching on one replay draw + CE on the labels of an independent draw."""

from sparcl_tf.methods.base import ContinualMethod


class DERPP(ContinualMethod):
    """DER++: the current batch's loss + `alpha` (default 0.1) x DER's logit matching on a replay
    draw + `beta` (default 0.5) x CE on the labels of another draw (of the same draw with
    `shared_draw`). Arguments as `ContinualMethod`."""

    name = "derpp"
    REPLAY_TERMS = (("mse", "alpha"), ("ce", "beta"))
    default_alpha, default_beta = 0.1, 0.5
