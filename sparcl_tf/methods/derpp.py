"""DER++: DER's logit matching on one replay draw + CE on the labels of an independent draw."""

from sparcl_tf.methods.base import ContinualMethod


class DERPP(ContinualMethod):
    name = "derpp"
    REPLAY_TERMS = (("mse", "alpha"), ("ce", "beta"))
    default_alpha, default_beta = 0.1, 0.5
