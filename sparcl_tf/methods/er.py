"""Experience Replay: CE on the current batch + CE on one replay batch."""

from sparcl_tf.methods.base import ContinualMethod, cross_entropy


class ER(ContinualMethod):
    name = "er"
    uses_buffer = True
    replay_draws = 1

    def replay_loss(self, forward, draws):
        (images, labels, _), = draws
        return cross_entropy(labels, forward(images))
