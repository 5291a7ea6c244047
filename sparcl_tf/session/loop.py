"""The one task loop: what a continual-learning session is, whichever engine runs its steps.

The loop owns the session: task order, epochs, each epoch's example order, the replay buffer and
the draws it makes, augmentation, the events of the session plan (mask updates with their counts
and seeds, data-removal stages, gradient-mask refreshes), evaluation into the accuracy matrices,
FLOPs, checkpoints, resume, results.json and plots. An engine only runs what it is given: the
contract is `session.engine.Engine` (train a step on host-made inputs, update masks to the plan's
counts, report active units, evaluate, name what it checkpoints, and hooks around tasks and
state I/O). Engines: Keras (`engines.keras`), LiteRT (`engines.litert`), the TFLM head
(`engines.tflm`); the Kotlin session implements the same plan on a phone.

Its parts live apart: the run state saved in checkpoints (`session.progress`), what a step is fed
(`session.step_inputs`), who hears how it goes (`session.listeners`: lines, progress bar,
TensorBoard, Keras callbacks), and each task's events (`session.plan`, from the task's size).

Everything a run needs to continue is in its checkpoints (every `checkpoint.every_steps` steps and
at every epoch and task end): running again on the same workdir resumes at the step where it
stopped. An epoch trains the full batches that fit before each event and leaves a partial
batch's examples to the segment after it.
"""

import copy
import dataclasses
import json
import os
import time

import numpy as np

from sparcl_tf.reporting import results as run_results
from sparcl_tf.checkpoint import CheckpointManager
from sparcl_tf.config import differing_fields
from sparcl_tf.data.augment import make_augment
from sparcl_tf.data.pipeline import segment_batches
from sparcl_tf.errors import CheckpointError, ConfigError, DivergedError, TaskCancelled
from sparcl_tf.reporting.evaluation import accuracies
from sparcl_tf.sparsity.example_stats import ExampleStats, margin
from sparcl_tf.session.buffer import ReservoirBuffer
from sparcl_tf.session.engine import Engine
from sparcl_tf.paths import usable_folder
from sparcl_tf.session import random as session_random
from sparcl_tf.session.listeners import Listeners
from sparcl_tf.session.progress import RESUME_FREE_FIELDS, Progress, config_hash
from sparcl_tf.session.step_inputs import StepInputs
from sparcl_tf.sparsity import ddr

class TaskStream:
    """What the loop trains and evaluates on: `tasks` (`data.build_tasks`), each task's training
    arrays (x, y, ids), and `prepare`, which turns stored examples into model inputs."""

    def __init__(self, tasks, training, prepare, test_inputs):
        self.tasks, self.training, self.prepare, self.test_inputs = (
            tasks, training, prepare, test_inputs)


class SessionLoop:
    """Runs `plan` over `stream` with `engine`, living in `workdir` (None: no files at all;
    `read_only`: restore its latest checkpoint, write nothing)."""

    def __init__(self, plan, engine, stream, config, workdir, identity, ledger=None,
                 example_shape=None, example_dtype=np.float32, verbose=1, trace=None,
                 read_only=False):
        if not isinstance(engine, Engine):
            raise TypeError(f"the session's engine must implement session.engine.Engine, got "
                            f"{type(engine).__name__}")
        self.plan, self.engine, self.stream, self.config = plan, engine, stream, config
        self.read_only = read_only
        self.trace = trace or (lambda record: None)  # `session.trace` records
        self._stepped = False  # whether this process has taken a step (traced the graph)
        self.workdir, self.identity, self.ledger, self.verbose = workdir, identity, ledger, verbose
        tasks = stream.tasks
        replay = plan.replay
        self.buffer = ReservoirBuffer(
            replay["buffer_size"], example_shape or tuple(plan.image_shape), plan.num_classes,
            plan.seed, example_dtype) if replay["draws"] else None
        self.stats = ExampleStats(tasks.num_example_ids)
        self.step_inputs = StepInputs(plan, self.buffer, make_augment(
            plan.augmentation["kind"], plan.augmentation["crop_padding"],
            -np.asarray(plan.normalization["mean"], np.float32)
            / np.asarray(plan.normalization["std"], np.float32), plan.seed))
        self.units = np.asarray(plan.layer_units, np.float64)
        self.variables = dict(engine.variables())  # everything a checkpoint or rollback holds
        for group, state in (("stats", self.stats.state()),
                             ("buffer", self.buffer.state() if self.buffer else {}),
                             ("ledger", ledger.state() if ledger else {})):
            self.variables.update({f"{group}/{name}": v for name, v in state.items()})
        self.checkpoints = None
        restored = None
        if workdir is not None:
            self.checkpoints = CheckpointManager(os.path.join(workdir, "checkpoints"),
                                                 self.variables, keep=config.checkpoint.keep)
            if not read_only:
                usable_folder(workdir)
                self._check_or_write_config(resuming=self.checkpoints.latest() is not None)
            restored = self.checkpoints.restore()
        run_hash = config_hash(config)
        if restored is not None:
            self.progress = Progress.from_checkpoint(restored, self.checkpoints.restored_from)
            if self.progress.config_hash and self.progress.config_hash != run_hash:
                raise ConfigError(f"workdir {workdir} holds the checkpoints of a run with another "
                                  f"config; use a new --workdir")
            self.progress.config_hash = run_hash
            engine.after_restore()
        else:
            self.progress = Progress(active=list(engine.active_units()),
                                     gradient_density_sum=[0.0] * len(engine.layer_names),
                                     config_hash=run_hash)
        self.listeners = Listeners(config, workdir, verbose, read_only)
        self._cancelled = lambda: False  # the current `run`'s cancellation hook
        self._clock_start = time.perf_counter()

    def memento(self):
        """The whole session in memory (variables copied, progress, stream): what `rollback`
        puts back when a call fails half-way."""
        arrays = {key: np.array(variable.numpy(), copy=True)
                  for key, variable in self.variables.items()}
        return arrays, copy.deepcopy(self.progress), self.stream, self.identity

    def rollback(self, memento):
        arrays, progress, self.stream, self.identity = memento
        for key, variable in self.variables.items():
            variable.assign(arrays[key])
        self.progress = copy.deepcopy(progress)
        self.engine.after_restore()

    def extend(self, stream, identity):
        """A learner's next task: the stream that now holds it too (earlier tasks as they
        were)."""
        self.stream, self.identity = stream, identity
        self.stats.ensure(stream.tasks.num_example_ids)

    def _check_or_write_config(self, resuming):
        path = os.path.join(self.workdir, "config.json")
        current = json.loads(self.config.to_json())
        if resuming and os.path.exists(path):
            try:
                with open(path) as handle:
                    saved = json.load(handle)
            except (OSError, ValueError) as error:
                raise ConfigError(f"{path} is unreadable ({error}); restore it or use a new "
                                  f"--workdir") from None
            if not isinstance(saved, dict):
                raise ConfigError(f"{path} is not a config; restore it or use a new --workdir")
            differing = differing_fields(current, saved,
                                         [f"{field}." for field in RESUME_FREE_FIELDS])
            if differing:
                raise ConfigError(f"workdir {self.workdir} holds a run with a different config "
                                  f"(fields {differing}); use a new --workdir")
        with open(path, "w") as handle:
            json.dump(current, handle, indent=2)

    def save(self):
        now = time.perf_counter()
        self.progress.wall_clock_s += now - self._clock_start
        self._clock_start = now
        if self.checkpoints is None:
            return
        self.engine.before_save()  # on every worker of a distributed run: it compares replicas
        if self.read_only:
            return
        arrays = self.checkpoints.snapshot()
        self._check_finite(arrays)
        try:
            self.checkpoints.save(self.progress.global_step, dataclasses.asdict(self.progress),
                                  arrays)
        except OSError as error:  # a full disk, a folder taken away: the last one is intact
            raise CheckpointError(f"cannot write a checkpoint in {self.checkpoints.directory}: "
                                  f"{error.strerror or error}") from None

    def _check_finite(self, arrays):
        """DivergedError before a checkpoint would hold NaN or Inf (a step can blow the weights
        up while its own loss is still finite)."""
        for name, value in arrays.items():
            if np.issubdtype(value.dtype, np.floating) and not np.isfinite(value).all():
                progress = self.progress
                raise DivergedError(f"task {progress.task + 1} epoch {progress.epoch + 1} step "
                                    f"{progress.global_step}: {name} is not finite; the run "
                                    f"diverged (lower optimizer.learning_rate); nothing of this "
                                    f"state was saved")

    # --- one step ---------------------------------------------------------------------------

    def _step(self, x, y, ids, rows, task_index):
        progress, every = self.progress, self.plan.dgm_refresh_every
        images, labels = self.stream.prepare(x[rows]), y[rows].astype(np.int32)
        inputs, replayed = self.step_inputs(images, labels, self._class_mask, self._replay_on,
                                            progress)
        refresh = every > 0 and (progress.refresh_pending or progress.steps_since_refresh >= every)
        progress.steps_since_refresh = 1 if refresh else progress.steps_since_refresh + 1
        progress.refresh_pending = False
        started = time.perf_counter()
        out = self.engine.train(inputs, refresh)
        seconds = time.perf_counter() - started
        progress.train_time_s += seconds
        if not self._stepped:  # this process's first step: tracing, not training
            self._stepped = True
            progress.first_step_s += seconds
            progress.first_steps += 1
        loss = float(out["loss"])
        if not np.isfinite(loss):  # raised before any save: the checkpoints stay good
            raise DivergedError(f"task {task_index + 1} epoch {progress.epoch + 1} step "
                                f"{progress.global_step}: the loss is {loss}; the run diverged "
                                f"(lower optimizer.learning_rate); nothing of this state was saved")

        density = np.asarray(out["gradient_density"], np.float64)
        progress.gradient_density_sum = list(np.asarray(progress.gradient_density_sum) + density)
        progress.gradient_density_steps += 1
        if self.ledger is not None:
            weight = np.ones_like(self.units) if self.plan.unit != "weights" else (
                np.asarray(progress.active, np.float64) / np.maximum(self.units, 1))
            by_name = dict(zip(self.engine.layer_names, zip(weight, density)))
            self.ledger.charge(len(rows) + replayed,
                               [by_name.get(n, (1.0, 1.0))[0] for n in self.ledger.names],
                               [by_name.get(n, (1.0, 1.0))[1] for n in self.ledger.names])
        if self.buffer is not None:
            self.buffer.add(images, labels, out["logits"], np.full(len(rows), task_index),
                            ids[rows])
        self.stats.observe(ids[rows], np.asarray(out["correct"]) > 0,
                           margin(out["logits"], labels))
        self.trace({"kind": "step", "task": task_index, "step": progress.global_step,
                    "loss": loss})
        progress.global_step += 1
        progress.task_steps += 1
        progress.examples_presented += len(rows)
        return loss, float(np.mean(out["correct"]))

    # --- events -----------------------------------------------------------------------------

    def _apply_event(self, event, task_index, ids):
        progress = self.progress
        if event.mask_update:
            progress.active = [int(a) for a in self.engine.update_masks(
                event.prune_to, event.grow_to, event.seed)]
            progress.refresh_pending = True  # fresh gradient masks after every mask change
            self.trace({"kind": "mask_update", "task": task_index, "update": event.update_index,
                        "active": progress.active})
        if event.removal_stage:
            candidates = ids[self._kept(ids)]
            # Cumulative plan: a stage that finds too few candidates leaves the rest to the next.
            count = event.removal_target - len(progress.removed)
            tie_break = session_random.Stream(self.plan.seed, session_random.REMOVAL, task_index,
                                              event.removal_stage).permutation(len(candidates))
            chosen = [int(i) for i in ddr.select_removals(
                candidates, self.stats.snapshot(candidates), count, tie_break)]
            progress.removed += chosen
            progress.examples_removed += len(chosen)
            self.stats.reset()  # the next stage ranks by its own window
            self.trace({"kind": "removal", "task": task_index, "stage": event.removal_stage,
                        "removed": chosen})

    def _kept(self, example_ids):
        """True for the example ids that data removal has not taken out of this task."""
        return ~np.isin(example_ids, self.progress.removed)

    # --- the loop ---------------------------------------------------------------------------

    def _after_step(self, cursor, loss, accuracy):
        """Bookkeeping after every step: cursor, listeners, periodic checkpoint."""
        progress, every = self.progress, self.config.checkpoint.every_steps
        progress.cursor = cursor
        self.listeners.step(progress.global_step, loss, accuracy)
        if every and progress.global_step % every == 0:
            self.save()

    def _train_segment(self, arrays, task_index, boundary):
        x, y, ids = arrays
        progress = self.progress
        rows, cursors = segment_batches(progress.epoch_order, progress.cursor, boundary,
                                        lambda r: self._kept(ids[r]), self.plan.batch_size)
        for batch_rows, cursor in zip(rows, cursors):
            loss, accuracy = self._step(x, y, ids, batch_rows, task_index)
            self._after_step(int(cursor), loss, accuracy)
            if self._cancelled():
                self.save()
                raise TaskCancelled(f"task {task_index + 1} was cancelled after step "
                                    f"{progress.global_step - 1}; its state is saved and the "
                                    f"next run goes on from there")

    def _train_epoch(self, task_index, arrays):
        plan, progress = self.plan, self.progress
        ids = arrays[2]
        if progress.epoch_order is None:
            rows = np.flatnonzero(self._kept(ids))
            order = session_random.Stream(plan.seed, session_random.EPOCH_ORDER, task_index,
                                          progress.epoch).permutation(len(rows))
            progress.epoch_order = [int(r) for r in rows[order]]
            progress.cursor, progress.events_done = 0, 0
            progress.refresh_pending = True  # fresh gradient masks at each epoch's start
        length = len(progress.epoch_order)
        self.listeners.epoch_begin(task_index, self._num_tasks, progress.epoch,
                                   plan.epochs_per_task, length // plan.batch_size,
                                   progress.cursor // plan.batch_size)
        events = [e for e in self._events if e.epoch == progress.epoch]
        for event in events[progress.events_done:]:
            self._train_segment(arrays, task_index, event.position(length))
            self._apply_event(event, task_index, ids)
            progress.events_done += 1
        self._train_segment(arrays, task_index, length)
        self.listeners.epoch_end(progress.epoch)
        progress.epoch += 1
        progress.epoch_order, progress.cursor, progress.events_done = None, 0, 0

    @property
    def _num_tasks(self):
        return len(self.stream.tasks.tasks)

    def _begin_task(self, task_index, num_examples):
        """Starts (or resumes) a task: its events follow from the plan's policy and its size."""
        progress = self.progress
        if progress.epoch == 0 and progress.epoch_order is None:  # a fresh start of this task
            self.engine.begin_task(task_index, self.plan.momentum_reset_per_task)
            self.stats.reset()
            progress.removed, progress.task_steps = [], 0
            progress.task_dense_flops_start = self._dense_flops()
        self._events = self.plan.task_events(task_index, num_examples)
        classes = self.stream.tasks.tasks[task_index].classes
        self._class_mask = np.isin(np.arange(self.plan.num_classes), classes).astype(np.float32)
        self._replay_on = bool(self.plan.replay["draws"]) and (
            task_index >= self.plan.replay["from_task"])

    def _dense_flops(self):
        return float(self.ledger.dense_flops.numpy()) if self.ledger is not None else 0.0

    def _end_task(self, task_index, planned_steps):
        progress = self.progress
        # The dense reference trains every planned step: scale this task's dense count up by
        # the steps data removal saved.
        task_dense = self._dense_flops() - progress.task_dense_flops_start
        progress.dense_flops_without_removal += task_dense * planned_steps / max(
            progress.task_steps, 1)
        class_row, task_row = [], []
        for task in self.stream.tasks.tasks:
            if task.index <= task_index and len(task.y_test):
                class_il, task_il = accuracies(
                    self.engine.logits(self.stream.test_inputs(task)), task)
            else:  # not seen yet, or no test data (an app often has none)
                class_il = task_il = None
            class_row.append(class_il)
            task_row.append(task_il)
        progress.class_il_matrix.append(class_row)
        progress.task_il_matrix.append(task_row)
        self.trace({"kind": "task_end", "task": task_index, "class_il": class_row,
                    "task_il": task_row})
        self.listeners.task_end(task_index, self._num_tasks, progress.global_step, class_row,
                                task_row, float(self.ledger.training_flops.numpy())
                                if self.ledger is not None else None)
        if self.workdir is not None and not self.read_only:
            self.engine.end_task(task_index)
        progress.task = task_index + 1
        progress.epoch, progress.epoch_order, progress.cursor, progress.events_done = 0, None, 0, 0

    def run(self, stop_after_task=None, label="", callbacks=None, cancelled=None):
        """Trains the remaining tasks (or up to `stop_after_task`), then writes results.json and
        plots; returns the results (None when stopped early). `callbacks`: a Keras
        `CallbackList`, told of the run's start and end, every epoch and every batch.
        `cancelled()`, asked after every step: when true, the state is saved and
        `TaskCancelled` raised (running again goes on from that step)."""
        plan, progress = self.plan, self.progress
        self._cancelled = cancelled or (lambda: False)
        self.listeners.run_begin(callbacks, label)
        if len(progress.task_examples) < progress.task <= self._num_tasks:  # an older checkpoint
            progress.task_examples = [len(self.stream.training(t)[2])
                                      for t in range(progress.task)]
        for task_index in range(progress.task, self._num_tasks):
            arrays = self.stream.training(task_index)
            if len(arrays[2]) < plan.batch_size:
                raise ConfigError(f"task {task_index} has {len(arrays[2])} training examples, "
                                  f"fewer than batch_size={plan.batch_size}")
            self._begin_task(task_index, len(arrays[2]))
            del progress.task_examples[task_index:]
            progress.task_examples.append(len(arrays[2]))
            while progress.epoch < plan.epochs_per_task:
                self._train_epoch(task_index, arrays)
                if progress.epoch < plan.epochs_per_task:
                    self.save()
            self._end_task(task_index, plan.epochs_per_task * (len(arrays[2])
                                                               // plan.batch_size))
            self.save()
            if stop_after_task is not None and task_index >= stop_after_task:
                return None
        results = self.results()
        if self.workdir is not None and not self.read_only:
            run_results.write(self.workdir, results)
        self.listeners.run_end(results)
        return results

    def results(self):
        progress = self.progress
        density = np.asarray(progress.gradient_density_sum) / max(
            progress.gradient_density_steps, 1)
        results = {**self.identity,
                   **run_results.accuracy(progress.class_il_matrix, progress.task_il_matrix)}
        if self.ledger is not None:
            results.update(run_results.cost(self.ledger, progress))
        results["training_examples"] = int(sum(progress.task_examples))
        results["gradient_density"] = {name: float(value) for name, value in
                                       zip(self.engine.layer_names, density)}
        results.update(self.engine.results())
        return results
