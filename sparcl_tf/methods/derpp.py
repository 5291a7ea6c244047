"""DER++: DER's logit matching on one replay draw + CE on the labels of an independent draw."""

import tensorflow as tf

from sparcl_tf.methods.base import ContinualMethod, cross_entropy


class DERPP(ContinualMethod):
    name = "derpp"
    uses_buffer = True
    replay_draws = 2
    default_alpha, default_beta = 0.1, 0.5

    def replay_loss(self, forward, draws):
        (images_a, _, logits_a), (images_b, labels_b, _) = draws
        logit_matching = tf.reduce_mean(tf.square(forward(images_a) - logits_a))
        return self.alpha * logit_matching + self.beta * cross_entropy(labels_b, forward(images_b))
