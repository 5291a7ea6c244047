"""A whole continual-learning session driven through a training .tflite, as a phone app would.

The model does every weight update (`train`, `update_masks`); this host side does what an app
does: reads the task stream, normalises and augments, keeps the reservoir buffer (replayed with
the logits the train step returned when the example was stored), counts forgetting events for data
removal, runs the TDM schedule and the DGM refresh cadence, evaluates through `infer`, and persists
the model's state (`get_state`) after every task. The decisions come from the same modules the
Keras trainer uses (`sparsity.schedule`, `sparsity.ddr`, `masks.active_count`, `ExampleStats`,
`ReservoirBuffer`), so the two loops differ only in who runs the step.

Resuming: after each task the model state goes to DIR/device_state/task_<t>.npz and the host state
(buffer, statistics, RNG, counters) to a checkpoint; a restarted session restores both and repeats
nothing but the interrupted task.
"""

import dataclasses
import os
import time

import keras
import numpy as np
import tensorflow as tf

from sparcl_tf import results as run_results
from sparcl_tf.checkpoint import CheckpointManager
from sparcl_tf.config import validate
from sparcl_tf.data import build_tasks, load_source
from sparcl_tf.data.augment import make_augment
from sparcl_tf.data.pipeline import Normalizer, epoch_order, segment_batches
from sparcl_tf.errors import ConfigError
from sparcl_tf.evaluation import accuracies
from sparcl_tf.example_stats import ExampleStats, margin
from sparcl_tf.flops import FlopsLedger
from sparcl_tf.layers import channel_masks, sparsifiable_layers
from sparcl_tf.methods import build_method
from sparcl_tf.models import build_model, structured_producers
from sparcl_tf.ondevice.device_model import DeviceModel
from sparcl_tf.replay import ReservoirBuffer
from sparcl_tf.sparsity import ddr, schedule, structured
from sparcl_tf.sparsity.masks import active_count


@dataclasses.dataclass
class SessionProgress(run_results.RunCounters):
    """Host-side session state saved in every checkpoint."""
    gradient_density_sum: list = None
    gradient_density_steps: int = 0
    state_file: str = ""              # the model state of the last finished task


class OnDeviceSession:
    """Runs `config`'s task stream through the model at `model_path`, living in `workdir`."""

    def __init__(self, model_path, config, workdir, verbose=1):
        self.config = validate(config)
        self.workdir = workdir
        self.verbose = verbose
        self.device = DeviceModel(model_path)
        seed = config.seed
        self.tasks = build_tasks(load_source(config.data), config.data, seed)
        self.method = build_method(config.method)
        # The Keras network is built for its layer names and FLOPs only; no weight is used.
        network = build_model(config.model.name, self.tasks.image_shape, self.tasks.num_classes,
                              width=config.model.width)
        full, self.full_filters = None, None
        if config.sparsity.granularity == "filter":  # the compacted model of a structured run
            full = network
            producers = structured_producers(config.model.name, full)
            self.full_filters = {n: int(full.get_layer(n).kernel.shape[-1]) for n in producers}
            targets = schedule.layer_targets(config, producers)
            network = build_model(config.model.name, self.tasks.image_shape,
                                  self.tasks.num_classes, width=config.model.width, capacities={
                                      n: structured.capacity(self.full_filters[n],
                                                             config.sparsity, targets[n])
                                      for n in producers})
            self.slot_masks = {group.producer: f"{group.name}__mask"
                               for group in channel_masks(network)}
        self.layer_names = [layer.name for layer in sparsifiable_layers(network)]
        self.layer_sizes = [int(np.prod(layer.kernel.shape))
                            for layer in sparsifiable_layers(network)]
        self.parameters = int(sum(np.prod(v.shape) for v in network.trainable_variables))
        self.targets = schedule.layer_targets(config, self.layer_names)
        self._check_model()
        self.normalizer = Normalizer(self.tasks.mean, self.tasks.std)
        self.generator = tf.random.Generator.from_seed(seed)
        self.augment = make_augment(config.data.augment, config.data.crop_padding,
                                    self.normalizer.zero_value, self.generator)
        self.buffer = ReservoirBuffer(config.replay.buffer_size, self.tasks.image_shape,
                                      self.tasks.num_classes, self.generator) \
            if self.method.uses_buffer else None
        self.stats = ExampleStats(self.tasks.num_example_ids)
        self.ledger = FlopsLedger(network, full)

        os.makedirs(os.path.join(workdir, "device_state"), exist_ok=True)
        variables = {f"stats/{k}": v for k, v in self.stats.state().items()}
        variables.update({f"ledger/{k}": v for k, v in self.ledger.state().items()})
        variables.update({f"buffer/{k}": v for k, v in
                          (self.buffer.state() if self.buffer else {}).items()})
        variables["rng/generator_state"] = self.generator.state
        self.checkpoints = CheckpointManager(os.path.join(workdir, "checkpoints"), variables)
        restored = self.checkpoints.restore()
        self.progress = SessionProgress(**restored) if restored else SessionProgress(
            gradient_density_sum=[0.0] * len(self.layer_names))
        if self.progress.state_file:
            self.device.load_state(os.path.join(workdir, self.progress.state_file))
        with open(os.path.join(workdir, "config.json"), "w") as handle:
            handle.write(self.config.to_json(indent=2))
        self.writer = tf.summary.create_file_writer(os.path.join(workdir, "tensorboard")) \
            if config.log.tensorboard else None
        self._clock_start = time.perf_counter()

    def _check_model(self):
        """The model must have been converted for this config: one ConfigError naming each gap."""
        config, device = self.config, self.device
        expected = {
            "image shape": (device.image_shape, tuple(self.tasks.image_shape)),
            "classes": (device.num_classes, self.tasks.num_classes),
            "batch_size": (device.batch_size, config.batch_size),
            "replay draws": (device.replay_draws,
                             self.method.replay_draws if self.method.uses_buffer else 0),
            "DGM (refresh_gradient_masks input)": (
                device.has_gradient_masks,
                config.dgm.enabled and config.sparsity.granularity == "weight"),
            "update_masks signature": ("update_masks" in device.signatures,
                                       config.sparsity.schedule in ("tdm", "rigl")),
            "sparse layer masks": (
                [name for name, size in zip(self.layer_names, self.layer_sizes)
                 if int(np.prod(device.state_spec.get(f"{name}__mask", ((0,), None))[0])) == size],
                self.layer_names),
        }
        if device.replay_draws:
            expected["replay.batch_size"] = (device.replay_batch_size, config.replay.batch_size)
        gaps = [f"{what}: model {got}, config {want}" for what, (got, want) in expected.items()
                if got != want]
        if gaps:
            raise ConfigError(f"{device.path} was converted for another config ({'; '.join(gaps)})"
                              f"; convert this config with tools.convert")

    # --- one step -------------------------------------------------------------------------

    def _replay_inputs(self, replay_on):
        """(replay inputs of the train signature, replayed examples) for the next step."""
        device = self.device
        draws, size = device.replay_draws, device.replay_batch_size
        images = np.zeros((draws, size) + device.image_shape, np.float32)
        labels = np.zeros((draws, size), np.int32)
        logits = np.zeros((draws, size, device.num_classes), np.float32)
        if not (replay_on and int(self.buffer.size()) > 0):
            return dict(replay_images=images, replay_labels=labels, replay_logits=logits,
                        replay_weight=np.float32(0.0)), 0
        for draw in range(draws):
            sampled_images, sampled_labels, sampled_logits, _ = self.buffer.sample(size)
            # Fewer stored than a replay batch (only early in the second task): repeat them, the
            # signature's batch is fixed.
            rows = np.resize(np.arange(len(sampled_labels)), size)
            images[draw] = self.augment(tf.gather(sampled_images, rows)).numpy()
            labels[draw] = sampled_labels.numpy()[rows]
            logits[draw] = sampled_logits.numpy()[rows]
        return dict(replay_images=images, replay_labels=labels, replay_logits=logits,
                    replay_weight=np.float32(1.0)), draws * size

    def _step(self, x, y, ids, rows, task, replay_on):
        images, labels = self.normalizer(x[rows]), y[rows].astype(np.int32)
        inputs = dict(images=self.augment(tf.constant(images)).numpy(), labels=labels,
                      class_mask=self._class_mask)
        replayed = 0
        if self.device.replay_draws:
            replay, replayed = self._replay_inputs(replay_on)
            inputs.update(replay)
        if self.device.has_gradient_masks:
            refresh = self._refresh_pending or (
                self._steps_since_refresh >= self.config.dgm.refresh_every)
            inputs["refresh_gradient_masks"] = np.float32(refresh)
            self._refresh_pending = False
            self._steps_since_refresh = 1 if refresh else self._steps_since_refresh + 1
        started = time.perf_counter()
        out = self.device.train(**inputs)
        self.progress.train_time_s += time.perf_counter() - started

        density = out["gradient_density"]
        self.progress.gradient_density_sum = list(
            np.asarray(self.progress.gradient_density_sum) + density)
        self.progress.gradient_density_steps += 1
        by_name = dict(zip(self.layer_names, density))
        self.ledger.charge(len(rows) + replayed,
                           [self._weight_density.get(n, 1.0) for n in self.ledger.names],
                           [by_name.get(n, 1.0) for n in self.ledger.names])
        if self.buffer is not None:
            self.buffer.add(images, labels, out["logits"], np.full(len(rows), task.index,
                                                                   np.int32), ids[rows])
        self.stats.observe(tf.constant(ids[rows]), tf.constant(out["correct"] > 0),
                           margin(tf.constant(out["logits"]), tf.constant(labels)))
        self.progress.global_step += 1
        self.progress.examples_presented += len(rows)
        return float(out["loss"]), float(np.mean(out["correct"]))

    # --- events ---------------------------------------------------------------------------

    def _update_masks(self, event, task_index):
        s = self.config.sparsity
        seed = (self.config.seed * 100_003 + task_index * 1_009 + event.update_index) % (2**31 - 1)
        if self.full_filters is not None:  # filter slots; the compacted kernels stay dense
            prune_to, grow_to = zip(*[structured.update_counts(
                event.update_index, s.updates_per_task, *structured.filter_counts(
                    self.full_filters[n], self.targets[n], s.open_fraction, s.swap_fraction))
                for n in self.layer_names])
            self.device.update_masks(prune_to, grow_to, seed)
            return
        _, targets_of = schedule.update_targets(self.config, event, task_index, len(self.tasks))
        prune_to, grow_to = zip(*[
            (active_count(size, prune), active_count(size, grow)) for size, (prune, grow) in
            zip(self.layer_sizes, (targets_of(self.targets[n]) for n in self.layer_names))])
        active = self.device.update_masks(prune_to, grow_to, seed)
        self._set_weight_density(active)
        self._refresh_pending = True

    def _set_weight_density(self, active):
        self._weight_density = {name: float(count) / size for name, count, size in
                                zip(self.layer_names, active, self.layer_sizes)}

    def _remove_examples(self, stage, ids, task_index):
        candidates = ids[~np.isin(ids, self._removed)]
        count = schedule.removal_target(self.config.ddr, stage, len(ids)) - len(self._removed)
        chosen = ddr.select_removals(candidates, self.stats.snapshot(candidates), count,
                                     seed=self.config.seed + 1000 * task_index + stage)
        self._removed += [int(i) for i in chosen]
        self.progress.examples_removed += len(chosen)
        self.stats.reset()

    # --- the loop ---------------------------------------------------------------------------

    def _train_task(self, task, events):
        config = self.config
        x, y, ids = self.method.task_training_data(self.tasks, task.index)
        if len(x) < config.batch_size:
            raise ConfigError(f"task {task.index} has {len(x)} training examples, fewer than "
                              f"batch_size={config.batch_size}")
        self._class_mask = np.isin(np.arange(self.tasks.num_classes),
                                   task.classes).astype(np.float32)
        replay_on = self.buffer is not None and task.index >= config.replay.from_task
        self._removed, self._steps_since_refresh = [], 0
        self.stats.reset()
        dense_start, steps_start = float(self.ledger.dense_flops.numpy()), self.progress.global_step

        def kept(rows):
            return ~np.isin(ids[rows], self._removed)

        for epoch in range(config.epochs_per_task):
            rows = np.flatnonzero(kept(np.arange(len(ids))))
            order = rows[epoch_order(len(rows), config.seed, task.index, epoch)]
            self._refresh_pending = True  # DGM: fresh masks at each epoch's start
            bar = keras.utils.Progbar(len(order) // config.batch_size,
                                      stateful_metrics=["loss", "accuracy"]) \
                if self.verbose and config.log.progress else None
            if self.verbose:
                print(f"task {task.index + 1}/{len(self.tasks)}  epoch {epoch + 1}/"
                      f"{config.epochs_per_task}  (LiteRT)", flush=True)
            cursor, done = 0, 0
            for event, boundary in schedule.epoch_segments(events, epoch, len(order)):
                batches, cursors = segment_batches(order, cursor, boundary, kept,
                                                   config.batch_size)
                for batch_rows, cursor in zip(batches, cursors):
                    loss, accuracy = self._step(x, y, ids, batch_rows, task, replay_on)
                    done += 1
                    if bar is not None:
                        bar.update(min(done, bar.target), [("loss", loss), ("accuracy", accuracy)])
                    self._scalars(loss, accuracy)
                if event is not None:
                    if event.mask_update:
                        self._update_masks(event, task.index)
                    if event.removal_stage:
                        self._remove_examples(event.removal_stage, ids, task.index)
        task_dense = float(self.ledger.dense_flops.numpy()) - dense_start
        planned = config.epochs_per_task * (len(x) // config.batch_size)
        self.progress.dense_flops_without_removal += task_dense * planned / max(
            self.progress.global_step - steps_start, 1)

    def _scalars(self, loss, accuracy):
        step = self.progress.global_step
        if self.writer is not None and step % self.config.log.scalars_every_steps == 0:
            with self.writer.as_default(step=step):
                tf.summary.scalar("train/loss", loss)
                tf.summary.scalar("train/accuracy", accuracy)

    def _evaluate(self, task_index):
        class_row, task_row = [], []
        for task in self.tasks.tasks:
            if task.index <= task_index:
                logits = self.device.infer(self.normalizer(task.x_test))
                class_il, task_il = accuracies(logits, task)
            else:
                class_il = task_il = None
            class_row.append(class_il)
            task_row.append(task_il)
        self.progress.class_il_matrix.append(class_row)
        self.progress.task_il_matrix.append(task_row)
        seen = class_row[:task_index + 1]
        if self.writer is not None:
            with self.writer.as_default(step=self.progress.global_step):
                tf.summary.scalar("eval/class_il_average", np.mean(seen))
            self.writer.flush()
        if self.verbose:
            print(f"after task {task_index + 1}/{len(self.tasks)}: class-IL {np.mean(seen):.2f}  "
                  f"task-IL {np.mean(task_row[:task_index + 1]):.2f}", flush=True)

    def _save(self, task_index):
        name = os.path.join("device_state", f"task_{task_index}.npz")
        self.device.save_state(os.path.join(self.workdir, name))
        now = time.perf_counter()
        self.progress.wall_clock_s += now - self._clock_start
        self._clock_start = now
        self.progress.state_file = name
        self.progress.task = task_index + 1
        self.checkpoints.save(self.progress.global_step, dataclasses.asdict(self.progress))
        # The two kept checkpoints name the last two state files; older ones are unreachable.
        stale = os.path.join(self.workdir, "device_state", f"task_{task_index - 2}.npz")
        if os.path.exists(stale):
            os.remove(stale)

    def run(self, stop_after_task=None):
        """Trains the remaining tasks (or up to `stop_after_task`); writes results.json and plots
        when the stream is done and returns the results (None when stopped early)."""
        state = self.device.get_state()
        self._set_weight_density([int(state[f"{n}__mask"].sum()) for n in self.layer_names])
        events = schedule.task_events(self.config.sparsity, self.config.ddr,
                                      self.config.epochs_per_task)
        for task in self.tasks.tasks[self.progress.task:]:
            self._train_task(task, events)
            self._evaluate(task.index)
            self._save(task.index)
            if stop_after_task is not None and task.index >= stop_after_task:
                return None
        results = self.results()
        run_results.write(self.workdir, results)
        return results

    def _layer_sparsity(self, state):
        """Exact zeros per sparse kernel; for a compacted model, the share of the full layer's
        filters that are not active."""
        if self.full_filters is None:
            return {name: float(np.mean(state[f"{name}__kernel"] == 0))
                    for name in self.layer_names}
        return {name: 1.0 - float(state[self.slot_masks[name]].sum()) / full
                for name, full in self.full_filters.items()}

    def results(self):
        """The trainer's results.json keys, from the model's final state and the host's counts."""
        progress = self.progress
        state = self.device.get_state()
        density = np.asarray(progress.gradient_density_sum) / max(
            progress.gradient_density_steps, 1)
        return {
            **run_results.identity(self.config, self.method, self.tasks),
            **run_results.accuracy(progress.class_il_matrix, progress.task_il_matrix),
            **run_results.cost(self.ledger, progress),
            "training_examples": int(sum(len(task.x_train) for task in self.tasks.tasks)),
            "layer_sparsity": self._layer_sparsity(state),
            "gradient_density": {name: float(value)
                                 for name, value in zip(self.layer_names, density)},
            "parameters": self.parameters,
            "runtime": "litert",
            "model_file": os.path.abspath(self.device.path),
        }
