"""Who hears how a session goes, apart from the loop that drives it: the printed lines and the
progress bar, TensorBoard scalars, and a user's Keras callbacks."""

import os

import keras
import numpy as np
import tensorflow as tf


class Listeners:
    """Reports of one session: `verbose` lines and a progress bar (`config.log.progress`),
    TensorBoard under `workdir` (`config.log.tensorboard`, not when `read_only`), and the Keras
    `callbacks` of the current run."""

    def __init__(self, config, workdir, verbose, read_only):
        self.config, self.verbose = config, verbose
        self.writer = tf.summary.create_file_writer(os.path.join(workdir, "tensorboard")) \
            if workdir is not None and config.log.tensorboard and not read_only else None
        self.callbacks, self.label = None, ""
        self._losses, self._bar, self._bar_offset = [], None, 0

    def run_begin(self, callbacks, label):
        self.callbacks, self.label = callbacks, label
        if callbacks is not None:
            callbacks.on_train_begin()

    def run_end(self, results):
        if self.callbacks is not None:
            self.callbacks.on_train_end(results)

    def epoch_begin(self, task_index, num_tasks, epoch, epochs, batches, batches_done):
        if self.verbose:
            print(f"task {task_index + 1}/{num_tasks}  epoch {epoch + 1}/{epochs}"
                  f"{f'  ({self.label})' if self.label else ''}", flush=True)
        self._losses, self._bar_offset = [], batches_done
        self._bar = keras.utils.Progbar(batches, stateful_metrics=["loss", "accuracy"]) \
            if self.verbose and self.config.log.progress else None
        if self.callbacks is not None:
            self.callbacks.on_epoch_begin(epoch)

    def step(self, step, loss, accuracy):
        self._losses.append((loss, accuracy))
        if self.callbacks is not None:
            self.callbacks.on_train_batch_end(len(self._losses) - 1,
                                              {"loss": loss, "accuracy": accuracy})
        if self._bar is not None:
            self._bar.update(min(self._bar.target, len(self._losses) + self._bar_offset),
                             [("loss", loss), ("accuracy", accuracy)])
        if self.writer is not None and step % self.config.log.scalars_every_steps == 0:
            with self.writer.as_default(step=step):
                tf.summary.scalar("train/loss", loss)
                tf.summary.scalar("train/accuracy", accuracy)

    def epoch_end(self, epoch):
        if self._bar is not None and self._bar.target and len(self._losses) < self._bar.target:
            self._bar.update(len(self._losses) + self._bar_offset, finalize=True)
        if self.callbacks is not None:
            means = np.mean(self._losses, axis=0) if self._losses else (np.nan, np.nan)
            self.callbacks.on_epoch_end(epoch, {"loss": float(means[0]),
                                                "accuracy": float(means[1])})

    def task_end(self, task_index, num_tasks, step, class_row, task_row, training_flops):
        """After task `task_index`: its accuracy row over the tasks so far (None: not seen or
        no test set) and the FLOPs so far (None: not counted)."""
        seen_class = [v for v in class_row[:task_index + 1] if v is not None] or [np.nan]
        seen_task = [v for v in task_row[:task_index + 1] if v is not None] or [np.nan]
        if self.writer is not None:
            with self.writer.as_default(step=step):
                tf.summary.scalar("eval/class_il_average", np.mean(seen_class))
                tf.summary.scalar("eval/task_il_average", np.mean(seen_task))
                for index, value in enumerate(class_row[:task_index + 1]):
                    if value is not None:
                        tf.summary.scalar(f"eval/class_il_task{index}", value)
                if training_flops is not None:
                    tf.summary.scalar("cost/training_flops", training_flops)
            self.writer.flush()
        if self.verbose:
            per_task = " ".join("-" if value is None else f"{value:.1f}"
                                for value in class_row[:task_index + 1])
            prefix = f"[{self.label}] " if self.label else ""
            print(f"{prefix}after task {task_index + 1}/{num_tasks}: class-IL "
                  f"{np.mean(seen_class):.2f}  task-IL {np.mean(seen_task):.2f}  per task "
                  f"{per_task}", flush=True)
