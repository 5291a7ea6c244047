"""Class-IL and task-IL accuracy of a network on each task's test set."""

import numpy as np
import tensorflow as tf

from sparcl_tf.data.pipeline import eval_batches


class Evaluator:
    def __init__(self, network, normalizer, batch_size=256):
        self._forward = tf.function(lambda images: network(images, training=False),
                                    reduce_retracing=True)
        self._normalizer = normalizer
        self._batch_size = batch_size

    def logits(self, x):
        return np.concatenate([self._forward(images).numpy()
                               for images in eval_batches(x, self._batch_size, self._normalizer)])

    def task_accuracies(self, task):
        return accuracies(self.logits(task.x_test), task)


def accuracies(logits, task):
    """(class-IL %, task-IL %) of `logits` for `task`'s test set.

    Class-IL: argmax over every logit. Task-IL: argmax over the logits of the task's classes.
    """
    class_il = np.mean(np.argmax(logits, axis=1) == task.y_test)
    task_il = np.mean(task.classes[np.argmax(logits[:, task.classes], axis=1)] == task.y_test)
    return 100.0 * float(class_il), 100.0 * float(task_il)
