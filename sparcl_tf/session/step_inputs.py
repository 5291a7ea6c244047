"""What one train step is fed, made by the host from its state: the augmented current batch, the
replay draws from the reservoir buffer (fixed shapes; zeros with replay_weight 0 while replay is
off or the buffer empty), the class mask and the step's learning rate from the plan's schedule.
The exported `train` signature's inputs, for every engine."""

import numpy as np

from sparcl_tf.session import learning_rate


class StepInputs:
    """The inputs of a session's steps under `plan`, drawing from `buffer` (None: no replay) and
    augmenting with `augment(images, step, batch)`."""

    def __init__(self, plan, buffer, augment):
        self.plan, self.buffer, self.augment = plan, buffer, augment

    def __call__(self, images, labels, class_mask, replay_on, progress):
        """(inputs, replayed examples) of the step at `progress` (its global step, and its
        position in the epoch for the learning rate)."""
        plan, replay, step = self.plan, self.plan.replay, progress.global_step
        rate = learning_rate.value(plan.learning_rate, learning_rate.task_progress(
            progress.epoch, progress.cursor, len(progress.epoch_order), plan.epochs_per_task))
        inputs = dict(images=self.augment(images, step, 0), labels=labels,
                      class_mask=class_mask, learning_rate=np.float32(rate))
        if not replay["draws"]:
            return inputs, 0
        shape = (replay["draws"], replay["batch_size"])
        draws = [np.zeros(shape + images.shape[1:], images.dtype), np.zeros(shape, np.int32),
                 np.zeros(shape + (plan.num_classes,), np.float32)]
        on = replay_on and self.buffer.size() > 0
        if on:
            for draw in range(replay["draws"]):
                stored, stored_labels, stored_logits = self.buffer.sample(
                    replay["batch_size"], step, draw)
                draws[0][draw] = self.augment(stored, step, draw + 1)
                draws[1][draw], draws[2][draw] = stored_labels, stored_logits
        inputs.update(replay_images=draws[0], replay_labels=draws[1], replay_logits=draws[2],
                      replay_weight=np.float32(on))
        return inputs, int(on) * shape[0] * shape[1]
