"""Runs a whole continual-learning experiment from a config: the task loop and its hooks.

The loop owns order and bookkeeping only: begin task (fresh optimizer state, class mask, replay
switch), epochs of `ContinualModel.fit`, end task (evaluate every seen task, checkpoint). What a
method or a sparsity part decides lives in those parts. Everything a run needs to continue is in
its checkpoints; running again on the same workdir resumes at the step where it stopped.
"""

import dataclasses
import json
import os
import time

import keras
import numpy as np
import tensorflow as tf

from sparcl_tf import metrics, plots
from sparcl_tf.checkpoint import CheckpointManager
from sparcl_tf.config import validate
from sparcl_tf.continual_model import ContinualModel
from sparcl_tf.data import build_tasks, load_source
from sparcl_tf.data.augment import make_augment
from sparcl_tf.data.pipeline import Normalizer, epoch_order, train_dataset
from sparcl_tf.errors import ConfigError
from sparcl_tf.evaluation import Evaluator
from sparcl_tf.example_stats import ExampleStats
from sparcl_tf.methods import build_method
from sparcl_tf.models import build_model
from sparcl_tf.replay import ReservoirBuffer

# Fields that may differ when a run is resumed: they change how it reports, not what it computes.
_RESUME_FREE_FIELDS = ("log", "checkpoint")


@dataclasses.dataclass
class Progress:
    """Host-side run state saved beside the variables in every checkpoint."""
    task: int = 0
    epoch: int = 0
    step_in_epoch: int = 0
    global_step: int = 0
    examples_presented: int = 0
    wall_clock_s: float = 0.0
    class_il_matrix: list = dataclasses.field(default_factory=list)
    task_il_matrix: list = dataclasses.field(default_factory=list)


class _StepHook(keras.callbacks.Callback):
    """Counts steps, writes TensorBoard scalars and saves periodic checkpoints during `fit`."""

    def __init__(self, run):
        super().__init__()
        self.run = run

    def on_train_batch_end(self, batch, logs=None):
        run = self.run
        run.progress.step_in_epoch += 1
        run.progress.global_step += 1
        run.progress.examples_presented += run.config.batch_size
        step = run.progress.global_step
        if run.writer is not None and step % run.config.log.scalars_every_steps == 0:
            with run.writer.as_default(step=step):
                for key, value in (logs or {}).items():
                    tf.summary.scalar(f"train/{key}", float(value))
        every = run.config.checkpoint.every_steps
        if every and step % every == 0:
            run.save()


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
        self.method = build_method(config.method)
        self.generator = tf.random.Generator.from_seed(seed)
        self.normalizer = Normalizer(self.tasks.mean, self.tasks.std)
        self.buffer = ReservoirBuffer(config.replay.buffer_size, self.tasks.image_shape,
                                      self.tasks.num_classes, self.generator) \
            if self.method.uses_buffer else None
        self.stats = ExampleStats(self.tasks.num_example_ids)
        augment = make_augment(config.data.augment, config.data.crop_padding,
                               self.normalizer.zero_value, self.generator)
        self.model = ContinualModel(
            self.network, self.method, self.tasks.num_classes, augment, self.generator,
            buffer=self.buffer, stats=self.stats, replay_batch_size=config.replay.batch_size)
        self.model.compile(optimizer=keras.optimizers.SGD(
            learning_rate=config.optimizer.learning_rate, momentum=config.optimizer.momentum))
        self.model.optimizer.build(self.network.trainable_variables)
        self.evaluator = Evaluator(self.network, self.normalizer, config.log.eval_batch_size)

        self.checkpoints = CheckpointManager(os.path.join(workdir, "checkpoints"),
                                             self._variables(), keep=config.checkpoint.keep)
        os.makedirs(workdir, exist_ok=True)
        self._check_or_write_config(resuming=self.checkpoints.latest() is not None)
        self.progress = Progress()
        restored = self.checkpoints.restore()
        if restored is not None:
            self.progress = Progress(**restored)
        self.writer = tf.summary.create_file_writer(os.path.join(workdir, "tensorboard")) \
            if config.log.tensorboard else None
        self._clock_start = time.perf_counter()

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

    def _begin_task(self, task):
        starting_fresh = self.progress.epoch == 0 and self.progress.step_in_epoch == 0
        if starting_fresh:
            for variable in self.model.optimizer.variables:  # a fresh optimizer per task
                if "learning_rate" not in variable.path:
                    variable.assign(tf.zeros_like(variable))
            self.stats.reset()
        self.model.begin_task(task.index, task.classes,
                              replay_enabled=task.index >= self.config.replay.from_task)

    def _end_task(self, task_index):
        class_row, task_row = [], []
        for task in self.tasks.tasks:
            if task.index <= task_index:
                class_il, task_il = self.evaluator.task_accuracies(task)
            else:
                class_il = task_il = None
            class_row.append(class_il)
            task_row.append(task_il)
        self.progress.class_il_matrix.append(class_row)
        self.progress.task_il_matrix.append(task_row)
        seen_class, seen_task = class_row[:task_index + 1], task_row[:task_index + 1]
        if self.writer is not None:
            with self.writer.as_default(step=self.progress.global_step):
                tf.summary.scalar("eval/class_il_average", np.mean(seen_class))
                tf.summary.scalar("eval/task_il_average", np.mean(seen_task))
                for index, value in enumerate(seen_class):
                    tf.summary.scalar(f"eval/class_il_task{index}", value)
            self.writer.flush()
        if self.verbose:
            print(f"after task {task_index}: class-IL {np.mean(seen_class):.2f}  task-IL "
                  f"{np.mean(seen_task):.2f}  per task "
                  f"{' '.join(f'{v:.1f}' for v in seen_class)}", flush=True)
        self.progress.task = task_index + 1
        self.progress.epoch = self.progress.step_in_epoch = 0

    def run(self):
        """Trains the remaining tasks, then writes results.json and plots; returns the results."""
        config, progress = self.config, self.progress
        hook = _StepHook(self)
        for task in self.tasks.tasks[progress.task:]:
            self._begin_task(task)
            x, y, ids = self.method.task_training_data(self.tasks, task.index)
            if len(x) < config.batch_size:
                raise ConfigError(f"task {task.index} has {len(x)} training examples, fewer than "
                                  f"batch_size={config.batch_size}")
            while progress.epoch < config.epochs_per_task:
                if self.verbose:
                    print(f"task {task.index + 1}/{len(self.tasks)}  epoch "
                          f"{progress.epoch + 1}/{config.epochs_per_task}", flush=True)
                order = epoch_order(len(x), config.batch_size, config.seed, task.index,
                                    progress.epoch)
                dataset = train_dataset(x, y, ids, order, config.batch_size, self.normalizer,
                                        skip_batches=progress.step_in_epoch)
                self.model.fit(dataset, epochs=1, verbose=self.verbose and config.log.progress,
                               callbacks=[hook], shuffle=False)
                progress.epoch += 1
                progress.step_in_epoch = 0
                if progress.epoch < config.epochs_per_task:
                    self.save()
            self._end_task(task.index)
            self.save()
        results = self.results()
        self._write_results(results)
        return results

    def results(self):
        progress = self.progress
        class_matrix = np.array(progress.class_il_matrix, dtype=float)
        task_matrix = np.array(progress.task_il_matrix, dtype=float)
        class_summary, task_summary = metrics.summarize(class_matrix), metrics.summarize(
            task_matrix)
        steps = float(self.model.gradient_density_steps.numpy())
        density = self.model.gradient_density_sum.numpy() / max(steps, 1.0)
        return {
            "preset": self.config.preset,
            "method": self.method.name,
            "dataset": self.config.data.source,
            "model": self.config.model.name,
            "seed": self.config.seed,
            "num_tasks": len(self.tasks),
            "epochs_per_task": self.config.epochs_per_task,
            "class_order": self.tasks.class_order,
            "class_il": class_summary["average"],
            "task_il": task_summary["average"],
            "class_il_matrix": progress.class_il_matrix,
            "task_il_matrix": progress.task_il_matrix,
            "forgetting": class_summary["forgetting"],
            "task_il_forgetting": task_summary["forgetting"],
            "backward_transfer": class_summary["backward_transfer"],
            "learning_accuracy": class_summary["learning_accuracy"],
            "wall_clock_s": progress.wall_clock_s,
            "examples_presented": progress.examples_presented,
            "examples_removed": 0,
            "layer_sparsity": {layer.name: float(np.mean(layer.masked_kernel().numpy() == 0))
                               for layer in self.model.sparse},
            "gradient_density": {layer.name: float(value)
                                 for layer, value in zip(self.model.sparse, density)},
            "parameters": int(sum(np.prod(v.shape) for v in self.network.trainable_variables)),
        }

    def _write_results(self, results):
        path = os.path.join(self.workdir, "results.json")
        with open(path + ".tmp", "w") as handle:
            json.dump(results, handle, indent=2)
        os.replace(path + ".tmp", path)
        plots.plot_accuracy_matrices(results, os.path.join(self.workdir, "accuracy_matrix.png"))
        plots.plot_task_curves(results, os.path.join(self.workdir, "task_accuracy.png"))


def run_experiment(config, workdir, verbose=1):
    return Experiment(config, workdir, verbose=verbose).run()
