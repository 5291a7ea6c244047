"""What every continual-learning method shares: the current-batch loss and the task data it trains.

A method is a small object the train step asks for its loss; it holds no training loop. Subclasses
declare how many independent replay draws a step needs and add their replay terms.
"""

import math

import tensorflow as tf

from sparcl_tf.errors import ConfigError

NEG_INF_LOGIT = -1e9  # finite, so masked classes give exact zeros in softmax without NaN gradients


def cross_entropy(labels, logits):
    return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits))


class ContinualMethod:
    """Fine-tuning: train on each task in turn with nothing against forgetting (the lower bound)."""

    name = "finetune"
    uses_buffer = False
    replay_draws = 0
    default_alpha = default_beta = 0.0  # the replay terms' weights (the presets' values)

    def __init__(self, cl_mask=True, alpha=None, beta=None):
        who = type(self).__name__
        if not isinstance(cl_mask, bool):
            raise ConfigError(f"{who}: cl_mask={cl_mask!r} is invalid: must be True or False")
        for name, value in (("alpha", alpha), ("beta", beta)):
            if value is not None and not (isinstance(value, (int, float)) and not isinstance(
                    value, bool) and math.isfinite(value) and value >= 0):
                raise ConfigError(f"{who}: {name}={value!r} is invalid: must be a finite "
                                  f"number >= 0 or None")
        self.cl_mask = cl_mask
        self.alpha = self.default_alpha if alpha is None else alpha
        self.beta = self.default_beta if beta is None else beta

    def overrides(self):
        """This method as config fields (what results record and a resume checks)."""
        return {"method.name": self.name, "method.alpha": float(self.alpha),
                "method.beta": float(self.beta), "method.cl_mask": bool(self.cl_mask)}

    def current_loss(self, labels, logits, class_mask):
        """CE on the current batch; with the CL mask, over the current task's classes only."""
        if self.cl_mask:
            logits = tf.where(class_mask[None, :], logits, NEG_INF_LOGIT)
        return cross_entropy(labels, logits)

    def replay_loss(self, forward, draws):
        """Loss terms on replay draws [(images, labels, stored_logits)], `forward` -> logits."""
        del forward, draws
        return tf.constant(0.0)

    def task_training_data(self, tasks, task_index):
        """(x, y, ids) that task `task_index` trains on."""
        task = tasks.tasks[task_index]
        return task.x_train, task.y_train, task.ids_train
