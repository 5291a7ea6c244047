"""Runs a whole continual-learning experiment from a config: the task loop and its hooks.

The loop owns order and bookkeeping only. Per task: begin (fresh optimizer state, class mask,
replay switch), epochs of the model's Keras train function cut into segments at the task's events
(mask updates, data-removal stages), end (evaluate every seen task, checkpoint). What a method or a
sparsity part decides lives in those parts. Everything a run needs to continue is in its
checkpoints; running again on the same workdir resumes at the step where it stopped.

Events sit at fractions of an epoch's examples, so they land where the schedule says even when
an epoch is shorter than the gap between events. An epoch walks a seeded permutation of the
examples not yet removed; a segment trains the full batches that fit before the next event and
leaves a partial batch's examples to the segment after it.
"""

import dataclasses
import json
import os
import time
import types

import keras
import numpy as np
import tensorflow as tf

from sparcl_tf import results as run_results
from sparcl_tf.checkpoint import CheckpointManager
from sparcl_tf.config import validate
from sparcl_tf.continual_model import ContinualModel
from sparcl_tf.data import build_tasks, load_source
from sparcl_tf.data.augment import make_augment
from sparcl_tf.data.pipeline import Normalizer, epoch_order, segment_batches, train_dataset
from sparcl_tf.errors import ConfigError
from sparcl_tf.evaluation import Evaluator
from sparcl_tf.example_stats import ExampleStats
from sparcl_tf.methods import build_method
from sparcl_tf.layers import channel_masks, sparsifiable_layers
from sparcl_tf.models import build_model, structured_producers
from sparcl_tf.replay import ReservoirBuffer
from sparcl_tf.sparsity import SparseTraining, ddr
from sparcl_tf.sparsity.schedule import layer_targets
from sparcl_tf.sparsity.structured import capacity as structured_capacity
from sparcl_tf.sparsity.structured import gradient_filters

# Fields that may differ when a run is resumed: they change how it reports, not what it computes.
_RESUME_FREE_FIELDS = ("log", "checkpoint")


@dataclasses.dataclass
class Progress(run_results.RunCounters):
    """Host-side run state saved beside the variables in every checkpoint."""
    epoch: int = 0
    epoch_order: list = None          # rows of the task's arrays this epoch walks
    cursor: int = 0                   # position in epoch_order trained up to
    events_done: int = 0              # events of this epoch already applied
    removed: list = dataclasses.field(default_factory=list)  # example ids removed this task
    task_steps: int = 0
    task_dense_flops_start: float = 0.0


class Experiment:
    """One run: data, model, method and state built from `config`, living in `workdir`."""

    def __init__(self, config, workdir, verbose=1):
        self.config = validate(config)
        self.workdir = workdir
        self.verbose = verbose

        seed = config.seed
        self.tasks = build_tasks(load_source(config.data), config.data, seed)
        keras.utils.set_random_seed(seed)  # weight initialisers draw from Keras' global seed
        self.network = build_model(config.model.name, self.tasks.image_shape,
                                   self.tasks.num_classes, width=config.model.width)
        self.full_network, self.full_filters = None, None
        structured = config.sparsity.granularity == "filter"
        if structured:  # the full model stays for its sizes and FLOPs; training uses slots
            self.full_network = self.network
            producers = structured_producers(config.model.name, self.full_network)
            self.full_filters = {n: int(self.full_network.get_layer(n).kernel.shape[-1])
                                 for n in producers}
            targets = layer_targets(config, producers)
            keras.utils.set_random_seed(seed)
            self.network = build_model(
                config.model.name, self.tasks.image_shape, self.tasks.num_classes,
                width=config.model.width, capacities={
                    n: structured_capacity(self.full_filters[n], config.sparsity, targets[n])
                    for n in producers})
        self.method = build_method(config.method)
        self.generator = tf.random.Generator.from_seed(seed)
        self.normalizer = Normalizer(self.tasks.mean, self.tasks.std)
        self.buffer = ReservoirBuffer(config.replay.buffer_size, self.tasks.image_shape,
                                      self.tasks.num_classes, self.generator) \
            if self.method.uses_buffer else None
        self.stats = ExampleStats(self.tasks.num_example_ids)
        augment = make_augment(config.data.augment, config.data.crop_padding,
                               self.normalizer.zero_value, self.generator)
        schedule = config.sparsity.schedule
        self.model = ContinualModel(
            self.network, self.method, self.tasks.num_classes, augment, self.generator,
            buffer=self.buffer, stats=self.stats, replay_batch_size=config.replay.batch_size,
            masking=schedule != "none" and not structured,
            gradient_masks=config.dgm if config.dgm.enabled and not structured else None,
            track_gradients=schedule in ("tdm", "rigl"), reference_network=self.full_network,
            filter_gradients=self._filter_gradients() if structured and config.dgm.enabled
            else None)
        self.model.compile(optimizer=keras.optimizers.SGD(
            learning_rate=config.optimizer.learning_rate, momentum=config.optimizer.momentum))
        self.model.optimizer.build(self.network.trainable_variables)
        self.sparse_training = SparseTraining(config, self.model, self.model.optimizer,
                                              self.full_filters)
        self.evaluator = Evaluator(self.network, self.normalizer, config.log.eval_batch_size)

        self.checkpoints = CheckpointManager(os.path.join(workdir, "checkpoints"),
                                             self._variables(), keep=config.checkpoint.keep)
        os.makedirs(workdir, exist_ok=True)
        self._check_or_write_config(resuming=self.checkpoints.latest() is not None)
        restored = self.checkpoints.restore()
        self.progress = Progress(**restored) if restored is not None else Progress()
        if restored is None:
            self.sparse_training.initialize()
        self.writer = tf.summary.create_file_writer(os.path.join(workdir, "tensorboard")) \
            if config.log.tensorboard else None
        self._clock_start = time.perf_counter()

    def _filter_gradients(self):
        """Structured DGM settings: filters per sparse layer, its slot mask, the cadence."""
        slot_masks = {group.producer: group.mask for group in channel_masks(self.network)}
        layers = sparsifiable_layers(self.network)
        return types.SimpleNamespace(
            keep=[gradient_filters(self.full_filters[layer.name],
                                   self.config.dgm.gradient_sparsity,
                                   int(layer.kernel.shape[-1])) for layer in layers],
            slot_masks=[slot_masks[layer.name] for layer in layers],
            refresh_every=self.config.dgm.refresh_every)

    def _check_or_write_config(self, resuming):
        path = os.path.join(self.workdir, "config.json")
        current = json.loads(self.config.to_json())
        if resuming and os.path.exists(path):
            with open(path) as handle:
                saved = json.load(handle)
            differing = sorted(key for key in set(saved) | set(current)
                               if key not in _RESUME_FREE_FIELDS
                               and saved.get(key) != current.get(key))
            if differing:
                raise ConfigError(f"workdir {self.workdir} holds a run with a different config "
                                  f"(fields {differing}); use a new --workdir")
        with open(path, "w") as handle:
            json.dump(current, handle, indent=2)

    def _variables(self):
        variables = {f"network/{v.path}": v for v in self.network.variables}
        # Optimizer paths start with an auto-numbered name ("sgd_1/..."): key by the rest.
        variables.update({f"optimizer/{v.path.split('/', 1)[-1]}": v
                          for v in self.model.optimizer.variables})
        for group, state in (("run", self.model.state()), ("stats", self.stats.state()),
                             ("buffer", self.buffer.state() if self.buffer else {})):
            variables.update({f"{group}/{name}": v for name, v in state.items()})
        variables["rng/generator_state"] = self.generator.state
        return variables

    def save(self):
        now = time.perf_counter()
        self.progress.wall_clock_s += now - self._clock_start
        self._clock_start = now
        self.checkpoints.save(self.progress.global_step, dataclasses.asdict(self.progress))

    # --- task hooks -------------------------------------------------------------------------

    def _begin_task(self, task):
        progress = self.progress
        if progress.epoch == 0 and progress.epoch_order is None:  # a fresh start of this task
            for variable in self.model.optimizer.variables:  # a fresh optimizer per task
                if "learning_rate" not in variable.path:
                    variable.assign(tf.zeros_like(variable))
            self.stats.reset()
            progress.removed = []
            progress.task_steps = 0
            progress.task_dense_flops_start = float(self.model.ledger.dense_flops.numpy())
        self.model.begin_task(task.index, task.classes,
                              replay_enabled=task.index >= self.config.replay.from_task)

    def _kept(self, example_ids):
        """True for the example ids that data removal has not taken out of this task."""
        return ~np.isin(example_ids, self.progress.removed)

    def _apply_event(self, event, task_index, ids):
        if event.mask_update:
            self.sparse_training.update_masks(event, task_index, len(self.tasks))
        if event.removal_stage:
            candidates = ids[self._kept(ids)]
            # Cumulative plan: a stage that finds too few candidates leaves the rest to the next.
            count = self.sparse_training.removal_target(event.removal_stage, len(ids)) - len(
                self.progress.removed)
            chosen = ddr.select_removals(candidates, self.stats.snapshot(candidates), count,
                                         seed=self.config.seed + 1000 * task_index
                                         + event.removal_stage)
            self.progress.removed += [int(i) for i in chosen]
            self.progress.examples_removed += len(chosen)
            self.stats.reset()  # the next stage ranks by its own window

    def _end_task(self, task_index, planned_steps):
        progress = self.progress
        # The dense reference trains every planned step: scale this task's dense count up by
        # the steps data removal saved.
        task_dense = float(self.model.ledger.dense_flops.numpy()) - progress.task_dense_flops_start
        progress.dense_flops_without_removal += task_dense * planned_steps / max(
            progress.task_steps, 1)
        class_row, task_row = [], []
        for task in self.tasks.tasks:
            if task.index <= task_index:
                class_il, task_il = self.evaluator.task_accuracies(task)
            else:
                class_il = task_il = None
            class_row.append(class_il)
            task_row.append(task_il)
        progress.class_il_matrix.append(class_row)
        progress.task_il_matrix.append(task_row)
        seen_class, seen_task = class_row[:task_index + 1], task_row[:task_index + 1]
        if self.writer is not None:
            with self.writer.as_default(step=progress.global_step):
                tf.summary.scalar("eval/class_il_average", np.mean(seen_class))
                tf.summary.scalar("eval/task_il_average", np.mean(seen_task))
                for index, value in enumerate(seen_class):
                    tf.summary.scalar(f"eval/class_il_task{index}", value)
                tf.summary.scalar("cost/training_flops", self.model.ledger.training_flops.numpy())
            self.writer.flush()
        if self.verbose:
            print(f"after task {task_index + 1}/{len(self.tasks)}: class-IL "
                  f"{np.mean(seen_class):.2f}  task-IL {np.mean(seen_task):.2f}  per task "
                  f"{' '.join(f'{v:.1f}' for v in seen_class)}", flush=True)
        progress.task = task_index + 1
        progress.epoch, progress.epoch_order, progress.cursor, progress.events_done = 0, None, 0, 0

    # --- the loop ---------------------------------------------------------------------------

    def _train_segment(self, arrays, boundary, progress_bar):
        """Trains the full batches of not-removed examples between the cursor and `boundary`."""
        x, y, ids = arrays
        progress = self.progress
        rows, cursor_after_batch = segment_batches(progress.epoch_order, progress.cursor,
                                                   boundary, lambda r: self._kept(ids[r]),
                                                   self.config.batch_size)
        batches = len(rows)
        if batches == 0:
            return
        iterator = iter(train_dataset(x, y, ids, rows.ravel(), self.config.batch_size,
                                      self.normalizer))
        started = time.perf_counter()
        for batch in range(batches):
            logs = self.model.train_function(iterator)
            self._after_batch(int(cursor_after_batch[batch]), logs, progress_bar)
        progress.train_time_s += time.perf_counter() - started

    def _after_batch(self, cursor, logs, progress_bar):
        """Bookkeeping after every step: counters, progress bar, scalars, periodic checkpoint."""
        progress, config = self.progress, self.config
        progress.cursor = cursor
        progress.task_steps += 1
        progress.global_step += 1
        progress.examples_presented += config.batch_size
        step = progress.global_step
        if progress_bar is not None or (self.writer is not None
                                        and step % config.log.scalars_every_steps == 0):
            values = [(key, float(value)) for key, value in logs.items()]
            if progress_bar is not None:
                self._bar_position += 1
                progress_bar.update(min(progress_bar.target, self._bar_position), values)
            if self.writer is not None and step % config.log.scalars_every_steps == 0:
                with self.writer.as_default(step=step):
                    for key, value in values:
                        tf.summary.scalar(f"train/{key}", value)
        if config.checkpoint.every_steps and step % config.checkpoint.every_steps == 0:
            self.save()

    def _train_epoch(self, task, arrays, events):
        config, progress = self.config, self.progress
        x, y, ids = arrays
        if progress.epoch_order is None:
            rows = np.flatnonzero(self._kept(ids))
            shuffled = epoch_order(len(rows), config.seed, task.index, progress.epoch)
            progress.epoch_order = [int(r) for r in rows[shuffled]]
            progress.cursor, progress.events_done = 0, 0
            self.model.request_gradient_mask_refresh()  # DGM: fresh masks on each epoch's start
        if self.verbose:
            print(f"task {task.index + 1}/{len(self.tasks)}  epoch "
                  f"{progress.epoch + 1}/{config.epochs_per_task}", flush=True)
        length = len(progress.epoch_order)
        self.model.reset_metrics()
        self._bar_position = progress.cursor // config.batch_size
        progress_bar = keras.utils.Progbar(
            length // config.batch_size, stateful_metrics=["loss", "accuracy"]) \
            if self.verbose and config.log.progress else None
        epoch_events = [e for e in events if progress.epoch <= e.progress < progress.epoch + 1]
        for event in epoch_events[progress.events_done:]:
            self._train_segment(arrays, round((event.progress - progress.epoch) * length),
                                progress_bar)
            self._apply_event(event, task.index, ids)
            progress.events_done += 1
        self._train_segment(arrays, length, progress_bar)
        if progress_bar is not None and self._bar_position < progress_bar.target:
            progress_bar.update(self._bar_position, finalize=True)  # removal shortened the epoch
        progress.epoch += 1
        progress.epoch_order, progress.cursor, progress.events_done = None, 0, 0

    def run(self):
        """Trains the remaining tasks, then writes results.json and plots; returns the results."""
        config, progress = self.config, self.progress
        self.model.make_train_function()
        events = self.sparse_training.task_events()
        for task in self.tasks.tasks[progress.task:]:
            self._begin_task(task)
            arrays = self.method.task_training_data(self.tasks, task.index)
            if len(arrays[0]) < config.batch_size:
                raise ConfigError(f"task {task.index} has {len(arrays[0])} training examples, "
                                  f"fewer than batch_size={config.batch_size}")
            while progress.epoch < config.epochs_per_task:
                self._train_epoch(task, arrays, events)
                if progress.epoch < config.epochs_per_task:
                    self.save()
            self._end_task(task.index, config.epochs_per_task * (len(arrays[0])
                                                                 // config.batch_size))
            self.save()
        results = self.results()
        run_results.write(self.workdir, results)
        return results

    def results(self):
        progress, model = self.progress, self.model
        steps = float(model.gradient_density_steps.numpy())
        density = model.gradient_density_sum.numpy() / max(steps, 1.0)
        return {
            **run_results.identity(self.config, self.method, self.tasks),
            **run_results.accuracy(progress.class_il_matrix, progress.task_il_matrix),
            **run_results.cost(model.ledger, progress),
            "training_examples": int(sum(len(task.x_train) for task in self.tasks.tasks)),
            "layer_sparsity": self._layer_sparsity(),
            "gradient_density": {layer.name: float(value)
                                 for layer, value in zip(model.sparse, density)},
            "parameters": int(sum(np.prod(v.shape) for v in self.network.trainable_variables)),
        }

    def _layer_sparsity(self):
        """Fraction of exact zeros per sparse kernel; for a compacted model, the fraction of the
        full layer's filters that are not active."""
        if self.full_filters is None:
            return {layer.name: float(np.mean(layer.kernel.numpy() == 0))
                    for layer in self.model.sparse}
        active = self.sparse_training.updater.active_filters()
        return {name: 1.0 - active[name] / full for name, full in self.full_filters.items()}


def run_experiment(config, workdir, verbose=1):
    return Experiment(config, workdir, verbose=verbose).run()
