"""Continual learning from an exported training .tflite alone, task by task as tasks arrive: the
Keras `ContinualLearner`'s names (`fit_task`, `predict`, `evaluate`, `results`) on the LiteRT
host, as a phone app holds its learner.

    learner = DeviceLearner("W/model.tflite", "state")   # signatures.json beside the model
    learner.fit_task(x, y)                 # classes: those in y; test data optional
    logits = learner.predict(x_new)

The model's session plan decides everything (a task's events follow from its index and size when
it begins); the learner numbers the examples itself and keeps, in `state_dir`, what a continual
session needs across tasks and restarts: the session loop's checkpoints (the model state via
`get_state`, the replay buffer, example statistics, progress), a record of the tasks seen
(`tasks.json`: classes, size, first example id, a digest of the data) and their test sets, if
any, for the accuracy matrix. A learner made again on the folder goes on where the last one
stopped; a task stopped in the middle continues when `fit_task` gets the same data again. One
learner at a time holds the folder (an exclusive lock).
"""

from __future__ import annotations

import fcntl
import os
from typing import Any, Callable, Dict, Optional, Sequence, Tuple

import ml_collections
import numpy as np

from sparcl_tf.reporting import results as run_results
from sparcl_tf.arguments import check_hook, check_pair, check_verbose
from sparcl_tf.config import validate
from sparcl_tf.data.examples import checked_classes, checked_examples
from sparcl_tf.data.tasks import Task, TaskSequence
from sparcl_tf.engines.keras import image_stream
from sparcl_tf.errors import ConfigError, DataError
from sparcl_tf.reporting.evaluation import accuracies
from sparcl_tf.reporting.flops import FlopsLedger
from sparcl_tf.methods import build_method
from sparcl_tf.ondevice.device_model import DEFAULT_THREADS, DeviceModel
from sparcl_tf.engines.litert import LiteRTEngine
from sparcl_tf.ondevice.session import read_plan
from sparcl_tf.ondevice.task_record import TaskRecord, digest, keep_plan
from sparcl_tf.paths import check_folder
from sparcl_tf.session.loop import SessionLoop

class DeviceLearner:
    """Learns tasks as they arrive through the training .tflite at `model_path` (converted by
    `tools.convert` or `ContinualLearner.export`, signatures.json beside it), living in
    `state_dir`. `close()` (or a `with` block) releases the folder. `trace` hears the session's
    records (`session.trace`); `cancelled()`, asked between steps, stops a task with its state
    saved (`TaskCancelled`)."""

    def __init__(self, model_path: str, state_dir: str, threads: int = DEFAULT_THREADS,
                 verbose: int = 0, trace: Optional[Callable[[dict], None]] = None):
        check_verbose("DeviceLearner", verbose)
        check_hook("DeviceLearner", "trace", trace)  # a TraceFile, or any function of a record
        check_folder(state_dir, "DeviceLearner: state_dir")
        plan = read_plan(model_path)
        if plan is None or not plan.run_config or not plan.model:
            raise DataError(f"no session plan beside {model_path} (signatures.json): convert the "
                            f"model with tools.convert or ContinualLearner.export")
        self.plan, self.state_dir = plan, state_dir
        self.config = validate(ml_collections.ConfigDict(plan.run_config))
        self.method = build_method(self.config.method)
        if self.method.name == "joint":
            raise ConfigError("method 'joint' trains on every earlier task's data, which a device "
                              "learner does not keep; convert a replay method")
        device = DeviceModel(model_path, threads)  # verified before the folder is touched
        os.makedirs(state_dir, exist_ok=True)
        self._lock = open(os.path.join(state_dir, ".lock"), "w")
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._lock.close()
            raise ConfigError(f"{state_dir} is held by another learner; one learner at a time "
                              f"may use a state folder") from None
        try:
            self.device = device
            keep_plan(state_dir, plan)
            self.record = TaskRecord(state_dir)
            self.tasks = TaskSequence(
                [self.record.task(t, plan.image_shape) for t in range(len(self.record.entries))],
                plan.num_classes, tuple(plan.image_shape), list(range(plan.num_classes)),
                np.asarray(plan.normalization["mean"], np.float32),
                np.asarray(plan.normalization["std"], np.float32), self.record.next_id)
            self.engine = LiteRTEngine(self.device, plan, self.config, state_dir)
            self.session = SessionLoop(
                plan, self.engine, image_stream(self.method, self.tasks), self.config, state_dir,
                self._identity(), ledger=FlopsLedger(plan.model["flops"]), verbose=verbose,
                trace=trace)
        except BaseException:
            self.close()
            raise

    def _identity(self):
        return run_results.identity(self.config, self.method, self.tasks)

    def close(self) -> None:
        if not self._lock.closed:
            fcntl.flock(self._lock, fcntl.LOCK_UN)
            self._lock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    @property
    def progress(self):
        return self.session.progress

    def _checked(self, x, y, what):
        return checked_examples(x, y, what, tuple(self.plan.image_shape), self.plan.num_classes)

    def fit_task(self, x: np.ndarray, y: np.ndarray, classes: Optional[Sequence[int]] = None,
                 test_data: Optional[Tuple[np.ndarray, np.ndarray]] = None,
                 cancelled: Optional[Callable[[], bool]] = None) -> Dict[str, Any]:
        """Learns the next task: images `x` (uint8 pixels or [0, 1] floats) with labels `y`, at
        least one batch; `classes` its classes (default: those in `y`); `test_data` (x, y) to
        evaluate it on after this and every later task (None: not evaluated). A task stopped
        in the middle continues when given the same data again; `cancelled()`, asked between
        steps, stops it there with its state saved (`sparcl_tf.errors.TaskCancelled`). Returns
        the results so far.
        Bad arguments raise one ValueError and change nothing."""
        check_pair("fit_task", "test_data", test_data)
        check_hook("fit_task", "cancelled", cancelled)
        x, y = self._checked(x, y, "fit_task")
        test = self._checked(*test_data, "test_data") if test_data is not None else None
        classes = checked_classes(classes, y, "fit_task", self.plan.num_classes,
                                  test[1] if test is not None else None)
        if len(y) < self.plan.batch_size:
            raise ValueError(f"fit_task: {len(y)} examples are fewer than one batch "
                             f"({self.plan.batch_size})")
        index = self.progress.task
        if index < len(self.record.entries):  # a task that stopped in the middle
            if self.record.entries[index]["digest"] != digest(x, y):
                raise ValueError(f"fit_task: task {index + 1} stopped in the middle; give it the "
                                 f"same images and labels again to finish it")
        else:
            self.record.add(classes, x, y, test)
        task = self.record.task(index, self.plan.image_shape, x, y)
        tasks = [*self.tasks.tasks[:index], task]
        self.tasks = TaskSequence(tasks, self.tasks.num_classes, self.tasks.image_shape,
                                  self.tasks.class_order, self.tasks.mean, self.tasks.std,
                                  self.record.next_id)
        self.session.extend(image_stream(self.method, self.tasks), self._identity())
        return self.session.run(cancelled=cancelled)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Logits of images `x` (argmax: the predicted class)."""
        x, _ = self._checked(x, np.zeros(len(x), np.int64), "predict")
        return self.engine.logits(self.session.stream.prepare(x))

    def evaluate(self, x: np.ndarray, y: np.ndarray,
                 classes: Optional[Sequence[int]] = None) -> Dict[str, float]:
        """{'class_il', 'task_il'} accuracy (%) on images `x`, labels `y` (task-IL: argmax over
        `classes`, default those in `y`)."""
        x, y = self._checked(x, y, "evaluate")
        classes = checked_classes(classes, y, "evaluate", self.plan.num_classes)
        class_il, task_il = accuracies(self.predict(x), Task(-1, classes, x[:0], y[:0], y[:0],
                                                             x, y))
        return {"class_il": class_il, "task_il": task_il}

    def results(self) -> Dict[str, Any]:
        """results.json's fields for the tasks learned so far."""
        return self.session.results()
