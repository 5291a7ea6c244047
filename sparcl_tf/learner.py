"""Continual learning for any Keras model: replay training task by task, dense or with SparCL.

    learner = ContinualLearner(model, method=DERPP(alpha=0.1, beta=0.5), buffer_size=500,
                               sparcl=SparCL(weight_sparsity=0.9, gradient_sparsity=0.92))
    for x, y, x_test, y_test in tasks:
        learner.fit_task(x, y, test_data=(x_test, y_test))

A learner is the one way a run is trained in Keras: the experiment binaries build theirs from a
config (`from_config`, the whole task sequence planned ahead); a user's learner turns its plain
arguments into the same config and plans each task as `fit_task` brings it. Either way the steps
are the engine's (`engines.keras.KerasEngine`) and everything else is the one task loop's
(`session.loop`): epochs, replay, mask updates, data removal, evaluation, checkpoints, results.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import keras
import numpy as np
import tensorflow as tf

from sparcl_tf.reporting import results as run_results
from sparcl_tf.arguments import check_bool, check_callbacks, check_pair, check_verbose
from sparcl_tf.config import USER_MODEL, SparCL, apply_overrides, base_config, validate
from sparcl_tf.data.examples import checked_classes, checked_examples
from sparcl_tf.data.tasks import Task, TaskSequence
from sparcl_tf.distribute import Replication
from sparcl_tf.engines.keras import KerasEngine, image_stream, session_plan
from sparcl_tf.errors import ConfigError
from sparcl_tf.reporting.evaluation import accuracies
from sparcl_tf.export.device_state import check_handover, read_device_state, write_device_state
from sparcl_tf.export.files import export_training_files
from sparcl_tf.layers import check_rewritable, masked_layers
from sparcl_tf.methods import DERPP, ContinualMethod
from sparcl_tf.paths import check_folder
from sparcl_tf.session.loop import SessionLoop
from sparcl_tf.sparsify import default_sparsify, strip
from sparcl_tf.sparsity.kind import sparsity_kind


_SCHEDULE_FIELDS = ("schedule", "final_fraction", "milestones", "gamma")


def _schedule_overrides(schedule):
    """`learning_rate_schedule` (a name, or a dict of `_SCHEDULE_FIELDS`) as config overrides."""
    fields = {"schedule": schedule} if isinstance(schedule, str) else schedule
    unknown = sorted(set(fields) - set(_SCHEDULE_FIELDS)) if isinstance(fields, dict) else None
    if unknown is None or unknown:
        raise ConfigError(f"learning_rate_schedule={schedule!r} is invalid: must be 'constant', "
                          f"'cosine', 'step' or a dict of {list(_SCHEDULE_FIELDS)}")
    return {f"optimizer.{key}": tuple(value) if key == "milestones" else value
            for key, value in fields.items()}


def learner_config(method, buffer_size, sparcl, epochs_per_task, batch_size, replay_batch_size,
                   learning_rate, momentum, augment, seed, learning_rate_schedule="constant",
                   replication=None):
    """The run config of a user's learner (what results.json and a resume record)."""
    config = base_config()
    config.model.name, config.data.source = USER_MODEL, "arrays"
    overrides = {**method.overrides(), **(sparcl.overrides() if sparcl is not None else {}),
                 "seed": seed, "epochs_per_task": epochs_per_task, "batch_size": batch_size,
                 "replay.buffer_size": buffer_size if method.uses_buffer else 0,
                 "replay.batch_size": replay_batch_size or batch_size,
                 "optimizer.learning_rate": learning_rate, "optimizer.momentum": momentum,
                 "data.augment": augment, **_schedule_overrides(learning_rate_schedule),
                 "distribute.strategy": replication.name if replication else "none"}
    apply_overrides(config, overrides)  # each value of the field's type, or one ConfigError
    if method.uses_buffer and buffer_size <= 0:
        raise ConfigError(f"buffer_size={buffer_size} must be > 0 for method {method.name!r}")
    return validate(config)


def _checked_model(model):
    """(image shape, classes) of a built single-input Keras model that outputs logits."""
    check_rewritable(model, "ContinualLearner")
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ValueError(f"ContinualLearner needs one input and one output; {model.name!r} has "
                         f"{len(model.inputs)} and {len(model.outputs)}")
    shape = tuple(model.inputs[0].shape[1:])
    if None in shape or len(model.outputs[0].shape) != 2:
        raise ValueError(f"ContinualLearner needs a fixed input shape and (batch, classes) "
                         f"logits; {model.name!r} maps {model.inputs[0].shape} to "
                         f"{model.outputs[0].shape}")
    last = model.layers[-1]
    if getattr(last, "activation", None) is keras.activations.softmax:
        raise ValueError(f"the model's last layer {last.name!r} applies softmax: the learner "
                         f"needs logits (activation=None)")
    return shape, int(model.outputs[0].shape[-1])


class ContinualLearner:
    """Trains `model` on a sequence of tasks, one `fit_task` call each.

    Args:
      model: a built Keras 3 model giving logits, plain or already `sparcl_tf.keras.sparsify`-ed;
        a plain one is sparsified as `default_sparsify` says, so dense and SparCL runs count
        FLOPs alike. The learner trains `learner.network`.
      method: a `sparcl_tf.methods` object (DERPP(), DER(), ER(), Finetune(), ...).
      buffer_size: replay buffer slots (reservoir sampling over every example offered).
      sparcl: `SparCL(...)` for TDM + DGM + DDR, None for dense training. Its targets decide
        each masked layer's sparsity (`sparsify` only chooses which layers are masked).
      epochs_per_task: epochs over each task, as in the run config.
      batch_size: examples of the current task a step.
      replay_batch_size: examples of each replay draw a step (default: batch_size).
      learning_rate: SGD's rate (see `learning_rate_schedule`).
      momentum: SGD's momentum.
      augment: 'none' or 'crop_flip'.
      seed: the run seed (every random stream derives from it).
      learning_rate_schedule: per task, 'constant', 'cosine' or 'step', or a dict with
        `schedule` and any of `final_fraction` (cosine), `milestones`, `gamma` (step), as the
        config's optimizer fields (`sparcl_tf/session/learning_rate.py`).
      normalization: (mean, std) per channel in [0, 1] units, applied as (x / 255 - mean) / std
        to uint8 images and (x - mean) / std to float ones; default: none.
      workdir: None (nothing written), or a folder for checkpoints, results.json, plots and
        TensorBoard; a learner made again on it resumes (tasks already trained are skipped).
      strategy: None (one device), or a `tf.distribute.MirroredStrategy` /
        `MultiWorkerMirroredStrategy` in whose scope `model` was built: each step splits its
        batches over the replicas and equals the one-device step (synchronised BatchNorm);
        batch sizes must split evenly over the replicas.
    """

    def __init__(self, model: keras.Model, method: Optional[ContinualMethod] = None,
                 buffer_size: int = 500, sparcl: Optional[SparCL] = None, *,
                 epochs_per_task: int = 1, batch_size: int = 32,
                 replay_batch_size: Optional[int] = None, learning_rate: float = 0.03,
                 momentum: float = 0.0, learning_rate_schedule: Union[str, dict] = "constant",
                 augment: str = "none", normalization: Optional[Tuple[Any, Any]] = None,
                 seed: int = 0, workdir: Optional[str] = None, verbose: int = 1,
                 strategy: Optional[tf.distribute.Strategy] = None):
        check_verbose("ContinualLearner", verbose)
        if sparcl is not None and not isinstance(sparcl, SparCL):
            raise ValueError(f"sparcl must be a SparCL(...) or None, got {sparcl!r}")
        if sparcl is not None and sparcl.structured:
            raise ConfigError("channel-structured SparCL (structured=True) compacts the model's "
                              "layers and needs a registry model (tools.train)")
        if strategy is not None and not isinstance(strategy, (
                tf.distribute.MirroredStrategy, tf.distribute.MultiWorkerMirroredStrategy)):
            raise ValueError(f"strategy must be a MirroredStrategy, a "
                             f"MultiWorkerMirroredStrategy or None, got {type(strategy).__name__}")
        replication = Replication(strategy)
        method = DERPP() if method is None else method
        if not isinstance(method, ContinualMethod):
            raise ValueError(f"method must be a sparcl_tf.keras method object (DERPP(), DER(), "
                             f"ER(), Finetune()), got {method!r}")
        config = learner_config(method, buffer_size, sparcl, epochs_per_task, batch_size,
                                replay_batch_size, learning_rate, momentum, augment, seed,
                                learning_rate_schedule, replication)
        image_shape, num_classes = _checked_model(model)
        replication.check_network(model)
        if not masked_layers(model):
            with replication.scope():
                model = default_sparsify(model)
        channels = image_shape[-1]
        mean, std = normalization or (np.zeros(channels), np.ones(channels))
        try:
            mean, std = (np.broadcast_to(np.asarray(v, np.float32), (channels,))
                         for v in (mean, std))
        except ValueError:
            mean = std = np.full((channels,), np.nan, np.float32)
        if not (np.isfinite(mean).all() and np.isfinite(std).all() and (std > 0).all()):
            raise ValueError(f"normalization must be finite (mean, std) per channel ({channels}) "
                             f"with std > 0, got {normalization}")
        tasks = TaskSequence([], num_classes, image_shape, list(range(num_classes)), mean, std, 0)
        self._start(config, model, method, tasks, sparsity_kind(config, model), workdir, verbose,
                    False, replication)

    @classmethod
    def from_config(cls, config, network, method, tasks, kind, workdir=None, verbose=1,
                    read_only=False, replication=None):
        """A learner for a registry run: `tasks` (`data.build_tasks`) planned ahead; `network`
        and its sparsity `kind` from `models.networks.build_networks`; `replication`
        (`distribute.Replication`, whose scope built the networks)."""
        learner = cls.__new__(cls)
        learner._start(validate(config), network, method, tasks, kind, workdir, verbose,
                       read_only, replication)
        return learner

    def _start(self, config, network, method, tasks, kind, workdir, verbose, read_only,
               replication=None):
        self.config, self.tasks = config, tasks
        self.engine = KerasEngine(config, network, method, kind, replication)
        replication = self.engine.replication
        plan = session_plan(config, tasks, network, kind, method)
        # Only the chief writes; the other workers read its checkpoints (a shared workdir).
        self.session = SessionLoop(plan, self.engine, self._stream(), config, workdir,
                                   run_results.identity(config, method, tasks),
                                   ledger=self.engine.ledger, verbose=verbose,
                                   read_only=read_only or not replication.is_chief)
        progress = self.session.progress
        replication.require_same_start(progress.global_step, dataclasses.asdict(progress))

    def _stream(self):
        return image_stream(self.engine.method, self.tasks)

    # --- what a user calls ---------------------------------------------------------------------

    def fit_task(self, x: Union[np.ndarray, tf.data.Dataset], y: Optional[np.ndarray] = None, *,
                 test_data: Optional[Tuple[np.ndarray, np.ndarray]] = None,
                 classes: Optional[Sequence[int]] = None,
                 callbacks: Optional[List[keras.callbacks.Callback]] = None) -> Dict[str, Any]:
        """Trains the next task on images `x` with labels `y` (or `x` a tf.data.Dataset of
        (image, label)); `test_data` (x_test, y_test) joins the tasks evaluated after each task
        (None: the task is not evaluated, its accuracies are None);
        `classes`: the task's classes (default: those in `y`), the current-task loss's CL mask.
        `callbacks`: Keras callbacks, told of every batch and epoch. Returns the results so far
        (results.json's fields). A task a resumed workdir already holds is not trained again."""
        index = len(self.tasks)
        if self.progress.task < index:
            raise RuntimeError(f"task {self.progress.task + 1} did not finish; make a new learner "
                               f"(with a workdir it resumes where the task stopped)")
        check_pair("fit_task", "test_data", test_data)
        check_callbacks("fit_task", callbacks)
        shape, num_classes = self.tasks.image_shape, self.tasks.num_classes
        x, y = checked_examples(x, y, "fit_task", shape, num_classes)
        x_test, y_test = checked_examples(*test_data, "test_data", shape, num_classes) \
            if test_data is not None else (x[:0], y[:0])
        classes = checked_classes(classes, y, "fit_task", num_classes, y_test)
        if len(y) < self.config.batch_size:
            raise ValueError(f"fit_task: {len(y)} examples are fewer than batch_size="
                             f"{self.config.batch_size}")
        first_id = self.tasks.num_example_ids
        task = Task(index, classes, x, y, np.arange(first_id, first_id + len(y), dtype=np.int64),
                    x_test, y_test)
        tasks_before, session_before = self.tasks, self.session.memento()
        try:
            self.tasks = dataclasses.replace(self.tasks, tasks=[*self.tasks.tasks, task],
                                             num_example_ids=first_id + len(y))
            self.session.extend(self._stream(), run_results.identity(
                self.config, self.engine.method, self.tasks))
            return self.run_planned(callbacks=callbacks)
        except BaseException:  # a callback's error, a diverged step, Ctrl-C: as before the call
            self.tasks = tasks_before
            self.session.rollback(session_before)
            raise

    def run_planned(self, stop_after_task: Optional[int] = None,
                    callbacks: Optional[List[keras.callbacks.Callback]] = None
                    ) -> Optional[Dict[str, Any]]:
        """Trains the planned tasks not trained yet (up to `stop_after_task`); the results, or
        None when stopped early."""
        if stop_after_task is not None and not (isinstance(stop_after_task, int) and not
                                                isinstance(stop_after_task, bool) and
                                                stop_after_task >= 0):
            raise ValueError(f"run_planned: stop_after_task={stop_after_task!r} is invalid: must "
                             f"be a task index >= 0 or None")
        check_callbacks("run_planned", callbacks)
        listeners = keras.callbacks.CallbackList(
            callbacks, model=self.network, epochs=self.config.epochs_per_task) \
            if callbacks else None
        return self.session.run(stop_after_task, callbacks=listeners)

    def evaluate(self, x: Union[np.ndarray, tf.data.Dataset], y: Optional[np.ndarray] = None,
                 classes: Optional[Sequence[int]] = None) -> Dict[str, float]:
        """{'class_il', 'task_il'} accuracy (%) on images `x`, labels `y` (task-IL: argmax over
        `classes`, default those in `y`)."""
        x, y = checked_examples(x, y, "evaluate", self.tasks.image_shape, self.tasks.num_classes)
        classes = checked_classes(classes, y, "evaluate", self.tasks.num_classes)
        stream = self.session.stream
        class_il, task_il = accuracies(
            self.engine.logits(stream.prepare(x)),
            Task(-1, classes, x[:0], y[:0], y[:0], x, y))
        return {"class_il": class_il, "task_il": task_il}

    def results(self) -> Dict[str, Any]:
        """results.json's fields for the tasks trained so far."""
        return self.session.results()

    def export(self, output_dir: str, flex: bool = False,
               with_state: bool = False) -> Tuple[str, Dict[str, Any]]:
        """The trained network as a builtins-only training .tflite (`model.tflite`,
        `signatures.json`, `op_audit.json` in `output_dir`), as tools.convert writes a run's;
        returns (path, op audit). `with_state`: also the learner's whole state (replay buffer,
        example statistics, tasks seen, accuracy so far) in `output_dir/state`, the folder a
        `sparcl_tf.ondevice.DeviceLearner` continues from (between tasks only)."""
        check_bool("export", "flex", flex)
        check_bool("export", "with_state", with_state)
        check_folder(output_dir, "export: output_dir")
        state_dir = os.path.join(output_dir, "state")
        if with_state:
            check_handover(state_dir, self.session)
        path, audit = export_training_files(self.config, self.network, self.kind,
                                            self.session.plan, output_dir,
                                            method=self.engine.method, flex=flex)
        if with_state:
            write_device_state(state_dir, path, self.session, {
                layer.name: gradient.numpy() for layer, gradient in zip(
                    self.model.sparse, self.model.last_gradients)})
        return path, audit

    def load_device_state(self, state_dir: str) -> Dict[str, Any]:
        """Takes over a device learner's folder (`sparcl_tf.ondevice.DeviceLearner`, between
        tasks): weights, masks, buffer, example statistics, tasks seen with their test sets and
        the accuracy so far, to evaluate, inspect, `strip` or train on here. The learner must be
        made with the model and settings the device's .tflite was exported from and have
        trained nothing itself. Returns the results so far."""
        if self.progress.global_step or self.tasks.tasks:
            raise RuntimeError("load_device_state needs a learner that has trained nothing")
        record = read_device_state(state_dir, self.session, self.network, {
            layer.name: gradient for layer, gradient in zip(self.model.sparse,
                                                            self.model.last_gradients)})
        self.tasks = dataclasses.replace(self.tasks, tasks=[
            record.task(t, self.tasks.image_shape) for t in range(len(record.entries))],
            num_example_ids=record.next_id)
        self.session.extend(self._stream(), run_results.identity(
            self.config, self.engine.method, self.tasks))
        return self.results()

    def strip(self) -> keras.Model:
        """The trained network as a plain Keras model, the zeros baked in."""
        return strip(self.network)

    @property
    def network(self):
        return self.engine.network

    @property
    def model(self):
        return self.engine.model

    @property
    def kind(self):
        """The run's sparsity kind (`sparsity.kind`)."""
        return self.engine.kind

    @property
    def buffer(self):
        return self.session.buffer

    @property
    def plan(self):
        return self.session.plan

    @property
    def progress(self):
        return self.session.progress
