"""Continual learning as a microcontroller does it, run through the TFLite Micro Python runtime.

1. The backbone trains on the host on the first `micro.pretrain_tasks` tasks, freezes, and becomes
   an int8 model; every image of the stream goes through it in TFLM once (int8 features).
2. The head (`head.py`) learns the task stream from those features: each step is one call of the
   head's train model in TFLM, with replay from a reservoir of int8 features (latent replay), the
   method's replay terms, the TDM schedule on the hidden kernel (prune / grow on the host side,
   `sparsity.tdm.prune_and_grow`, as a board does in C), DGM in the step, DDR from `correct`.
3. The first `micro.compare_steps` steps of every task also run in LiteRT from the same inputs:
   the largest relative loss difference is reported.
Memory is measured, not estimated: the smallest TFLM arena each model allocates in (bisection on
the arena size), the model bytes, and the buffer bytes (int8 features + label + float32 logits).
"""

import os
import time

import numpy as np
import tensorflow as tf

from sparcl_tf import results as run_results
from sparcl_tf.config import validate
from sparcl_tf.data import build_tasks, load_source
from sparcl_tf.data.pipeline import Normalizer, epoch_order, segment_batches
from sparcl_tf.errors import ConfigError
from sparcl_tf.evaluation import accuracies
from sparcl_tf.example_stats import ExampleStats, margin
from sparcl_tf.methods import build_method
from sparcl_tf.micro import backbone as backbone_lib
from sparcl_tf.micro.head import (INFER_OUTPUTS, PARAMETERS, TRAIN_OUTPUTS, Head,
                                  convert_function, replay_terms)
from sparcl_tf.micro.runtime import LiteModel, MicroModel, minimum_arena_bytes
from sparcl_tf.replay import ReservoirBuffer
from sparcl_tf.sparsity import ddr, schedule
from sparcl_tf.sparsity.masks import active_count, magnitude_mask
from sparcl_tf.sparsity.tdm import prune_and_grow, tie_break_ranks

HEAD_LAYER = "head_hidden"  # the name TDM targets use for the head's sparse kernel


class Features:
    """The task stream as int8 backbone features (train and test), extracted in TFLM."""

    def __init__(self, config, tasks, workdir, verbose):
        normalizer = Normalizer(tasks.mean, tasks.std)
        pretrain = tasks.tasks[:config.micro.pretrain_tasks]
        x = normalizer(np.concatenate([t.x_train for t in pretrain]))
        y = np.concatenate([t.y_train for t in pretrain])
        network = backbone_lib.build_backbone(config, tasks.image_shape, tasks.num_classes)
        self.pretrain_accuracy = backbone_lib.pretrain(network, x, y, tasks.num_classes, config)
        representative = x[np.random.default_rng(config.seed).permutation(len(x))[:200]]
        self.model = backbone_lib.convert_int8(network, representative)
        with open(os.path.join(workdir, "backbone_int8.tflite"), "wb") as handle:
            handle.write(self.model)
        self.input_scale, self.input_zero = backbone_lib.quantization(self.model, "input")
        self.scale, self.zero_point = backbone_lib.quantization(self.model, "output")
        self.arena_bytes = minimum_arena_bytes(self.model)
        micro = MicroModel(self.model, ["features"], self.arena_bytes)
        lite = {"reference": LiteModel(self.model, ["features"], reference_kernels=True),
                "xnnpack": LiteModel(self.model, ["features"])}
        name = micro.inputs[0]
        self.train, self.test, started, images = [], [], time.perf_counter(), 0
        self.max_step_difference = {key: 0 for key in lite}
        for task in tasks.tasks:
            if verbose:
                print(f"features of task {task.index + 1}/{len(tasks)} (TFLM, int8)", flush=True)
            extracted = []
            for x_part in (task.x_train, task.x_test):
                q = backbone_lib.quantize(normalizer(x_part), self.input_scale, self.input_zero)
                extracted.append(np.stack([micro(**{name: q[i:i + 1]})["features"][0]
                                           for i in range(len(q))]))
                images += len(q)
            for i in range(min(8, len(q))):  # LiteRT on the same int8 inputs, for the record
                for key, model in lite.items():
                    lite_out = model(**{name: q[i:i + 1]})["features"][0].astype(int)
                    self.max_step_difference[key] = max(self.max_step_difference[key], int(
                        np.abs(lite_out - extracted[1][i].astype(int)).max()))
            self.train.append(extracted[0])
            self.test.append(extracted[1])
        self.ms_per_image = 1000.0 * (time.perf_counter() - started) / max(images, 1)
        self.size = self.train[0].shape[1]


class MicroSession:
    """One head learning the stream of `features` with `config`'s method and sparsity."""

    def __init__(self, config, tasks, features, workdir, method_name=None, verbose=1):
        self.config, self.tasks, self.features = config, tasks, features
        self.workdir, self.verbose = workdir, verbose
        method_config = config.method.copy_and_resolve_references()
        if method_name:
            method_config.name = method_name
        self.method = build_method(method_config)
        if self.method.name not in ("finetune", "er", "der", "derpp"):
            raise ConfigError(f"the micro path supports method.name finetune, er, der or derpp, "
                              f"got {self.method.name!r}")
        self.num_classes = tasks.num_classes
        size = features.size * config.micro.hidden_units
        s = config.sparsity
        self.masked = s.schedule != "none"
        self.target = schedule.layer_targets(config, [HEAD_LAYER])[HEAD_LAYER]
        keep = active_count(size, config.dgm.gradient_sparsity) if config.dgm.enabled else size
        self.head = Head(features.size, config.micro.hidden_units, self.num_classes,
                         features.scale, features.zero_point, config.batch_size,
                         config.replay.batch_size, replay_terms(self.method),
                         config.optimizer.learning_rate, keep)
        self.models = {"train": convert_function(self.head.train_function()),
                       "infer": convert_function(self.head.infer_function())}
        self.arena_bytes = {key: minimum_arena_bytes(m) for key, m in self.models.items()}
        self.train_model = MicroModel(self.models["train"], TRAIN_OUTPUTS,
                                      self.arena_bytes["train"])
        self.infer_model = MicroModel(self.models["infer"], INFER_OUTPUTS,
                                      self.arena_bytes["infer"])
        self.lite_train = LiteModel(self.models["train"], TRAIN_OUTPUTS)

        self.example_bytes = features.size + 1 + 4 * self.num_classes
        capacity = (config.micro.buffer_bytes // self.example_bytes if config.micro.buffer_bytes
                    else config.replay.buffer_size) if self.method.uses_buffer else 0
        self.buffer_bytes = capacity * self.example_bytes
        # Both interpreters stay resident on a board: the backbone's arena and the larger of
        # the head's (train and infer run at different times and can share one).
        self.total_arena_bytes = features.arena_bytes + max(self.arena_bytes.values())
        budget = config.micro.memory_budget_bytes
        if budget and self.total_arena_bytes + self.buffer_bytes > budget:
            raise ConfigError(f"micro.memory_budget_bytes={budget}: the TFLM arenas "
                              f"({self.total_arena_bytes} B) plus the buffer "
                              f"({self.buffer_bytes} B) do not fit; shrink replay.buffer_size, "
                              f"micro.buffer_bytes, batch sizes or micro.hidden_units")
        generator = tf.random.Generator.from_seed(config.seed)
        self.buffer = ReservoirBuffer(capacity, (features.size,), self.num_classes, generator) \
            if capacity else None
        self.stats = ExampleStats(tasks.num_example_ids)

        self.params = self.head.initial_parameters(config.seed)
        shape = self.params["w1"].shape
        self.tie_break = tie_break_ranks(config.seed, 0, size)
        self.mask = magnitude_mask(self.params["w1"], self.target, self.tie_break) \
            if self.masked else np.ones(shape, np.float32)
        self.params["w1"] *= self.mask
        self.gradient_mask = np.ones(shape, np.float32)
        self.last_gradient = np.zeros(shape, np.float32)

    # --- one step ---------------------------------------------------------------------------

    def _inputs(self, rows, task_index, class_mask, replay_on, refresh):
        x = self.features.train[task_index][rows]
        labels = self.tasks.tasks[task_index].y_train[rows]
        inputs = dict(features=x, labels_onehot=np.eye(self.num_classes, dtype=np.float32)[labels],
                      class_mask=class_mask, refresh=np.float32(refresh), mask=self.mask,
                      gradient_mask=self.gradient_mask, **self.params)
        draws, size = self.head.replay_draws, self.head.replay_batch_size
        if draws:
            replay_x = np.zeros((draws, size, self.features.size), np.int8)
            onehot = np.zeros((draws, size, self.num_classes), np.float32)
            logits = np.zeros((draws, size, self.num_classes), np.float32)
            weight = 0.0
            if replay_on and int(self.buffer.size()) > 0:
                weight = 1.0
                for draw in range(draws):
                    stored_x, stored_y, stored_logits, _ = self.buffer.sample(size)
                    pick = np.resize(np.arange(len(stored_y)), size)
                    replay_x[draw] = stored_x.numpy()[pick].astype(np.int8)
                    onehot[draw] = np.eye(self.num_classes, dtype=np.float32)[
                        stored_y.numpy()[pick]]
                    logits[draw] = stored_logits.numpy()[pick]
            inputs.update(replay_features=replay_x, replay_onehot=onehot, replay_logits=logits,
                          replay_weight=np.float32(weight))
        return inputs, x, labels

    def _step(self, rows, task_index, class_mask, replay_on, refresh, compare):
        inputs, x, labels = self._inputs(rows, task_index, class_mask, replay_on, refresh)
        started = time.perf_counter()
        out = self.train_model(**inputs)
        self.train_time += time.perf_counter() - started
        if compare:
            lite = self.lite_train(**inputs)
            self.max_loss_difference = max(self.max_loss_difference, abs(
                float(lite["loss"]) - float(out["loss"])) / max(abs(float(out["loss"])), 1e-12))
            self.compared_steps += 1
        self.params = {k: np.asarray(out[f"new_{k}"]) for k in PARAMETERS}
        self.gradient_mask = np.asarray(out["new_gradient_mask"])
        self.last_gradient = np.asarray(out["gradient_w1"])
        self.gradient_density_sum += float(np.mean(self.mask * self.gradient_mask))
        self.steps += 1
        ids = self.tasks.tasks[task_index].ids_train[rows]
        if self.buffer is not None:
            self.buffer.add(x.astype(np.float32), labels, out["logits"],
                            np.full(len(rows), task_index, np.int32), ids)
        self.stats.observe(tf.constant(ids), tf.constant(out["correct"] > 0),
                           margin(tf.constant(out["logits"]), tf.constant(labels)))

    # --- the loop ---------------------------------------------------------------------------

    def _update_mask(self, event, task_index):
        _, targets_of = schedule.update_targets(self.config, event, task_index, len(self.tasks))
        prune_to, grow_to = targets_of(self.target)
        rng = np.random.default_rng([self.config.seed, 37, task_index, event.update_index])
        pruned, grown = prune_and_grow(
            self.params["w1"], self.mask, self.last_gradient, prune_to, grow_to, self.tie_break,
            rng, rule="rigl" if self.config.sparsity.schedule == "rigl" else "tdm",
            grow=self.config.sparsity.grow,
            importance_lambda=self.config.sparsity.importance_lambda)
        self.params["w1"] = self.params["w1"] * pruned  # grown weights start at exactly 0
        self.mask = grown.astype(np.float32)

    def _train_task(self, task, events):
        config = self.config
        ids = task.ids_train
        class_mask = np.isin(np.arange(self.num_classes), task.classes).astype(np.float32)
        replay_on = self.buffer is not None and task.index >= config.replay.from_task
        removed, since_refresh, compared = [], 0, 0
        self.stats.reset()

        def kept(rows):
            return ~np.isin(ids[rows], removed)

        for epoch in range(config.epochs_per_task):
            rows = np.flatnonzero(kept(np.arange(len(ids))))
            order = rows[epoch_order(len(rows), config.seed, task.index, epoch)]
            pending, cursor = True, 0
            for event, boundary in schedule.epoch_segments(events, epoch, len(order)):
                batches, cursors = segment_batches(order, cursor, boundary, kept,
                                                   config.batch_size)
                for batch_rows, cursor in zip(batches, cursors):
                    refresh = config.dgm.enabled and (
                        pending or since_refresh >= config.dgm.refresh_every)
                    since_refresh = 1 if refresh else since_refresh + 1
                    pending = False
                    self._step(batch_rows, task.index, class_mask, replay_on, refresh,
                               compare=compared < config.micro.compare_steps)
                    compared += 1
                    self.examples_presented += len(batch_rows)
                if event is None:
                    continue
                if event.mask_update:
                    self._update_mask(event, task.index)
                    pending = True
                if event.removal_stage:
                    candidates = ids[kept(np.arange(len(ids)))]
                    count = schedule.removal_target(config.ddr, event.removal_stage,
                                                    len(ids)) - len(removed)
                    chosen = ddr.select_removals(
                        candidates, self.stats.snapshot(candidates), count,
                        seed=config.seed + 1000 * task.index + event.removal_stage)
                    removed += [int(i) for i in chosen]
                    self.examples_removed += len(chosen)
                    self.stats.reset()

    def _evaluate(self, task_index):
        class_row, task_row = [], []
        batch = self.config.batch_size
        for task in self.tasks.tasks:
            if task.index > task_index:
                class_row.append(None)
                task_row.append(None)
                continue
            features, logits = self.features.test[task.index], []
            for start in range(0, len(features), batch):
                chunk = features[start:start + batch]
                padded = np.zeros((batch, self.features.size), np.int8)
                padded[:len(chunk)] = chunk
                logits.append(self.infer_model(features=padded, mask=self.mask, **self.params)[
                    "logits"][:len(chunk)])
            class_il, task_il = accuracies(np.concatenate(logits), task)
            class_row.append(class_il)
            task_row.append(task_il)
        return class_row, task_row

    def run(self):
        started = time.perf_counter()
        self.train_time, self.steps, self.gradient_density_sum = 0.0, 0, 0.0
        self.examples_presented = self.examples_removed = 0
        self.max_loss_difference, self.compared_steps = 0.0, 0
        class_matrix, task_matrix = [], []
        events = schedule.task_events(self.config.sparsity, self.config.ddr,
                                      self.config.epochs_per_task)
        for task in self.tasks.tasks:
            self._train_task(task, events)
            class_row, task_row = self._evaluate(task.index)
            class_matrix.append(class_row)
            task_matrix.append(task_row)
            if self.verbose:
                seen = class_row[:task.index + 1]
                print(f"[{self.method.name}] after task {task.index + 1}/{len(self.tasks)}: "
                      f"class-IL {np.mean(seen):.2f}  task-IL "
                      f"{np.mean(task_row[:task.index + 1]):.2f}", flush=True)
        return {
            "method": self.method.name,
            **run_results.accuracy(class_matrix, task_matrix),
            "steps": self.steps, "examples_presented": self.examples_presented,
            "examples_removed": self.examples_removed,
            "head_arena_bytes": self.arena_bytes,
            "head_model_bytes": {key: len(m) for key, m in self.models.items()},
            "buffer_bytes": self.buffer_bytes,
            "buffer_capacity": self.buffer.capacity if self.buffer else 0,
            "buffer_bytes_per_example": self.example_bytes,
            "ms_per_step": 1000.0 * self.train_time / max(self.steps, 1),
            "litert_compared_steps": self.compared_steps,
            "litert_max_relative_loss_difference": self.max_loss_difference,
            "layer_sparsity": {HEAD_LAYER: float(np.mean(self.params["w1"] == 0))},
            "mask_sparsity": {HEAD_LAYER: float(1.0 - self.mask.mean())},
            "gradient_density": {HEAD_LAYER: self.gradient_density_sum / max(self.steps, 1)},
            "wall_clock_s": time.perf_counter() - started,
        }


def run_micro(config, workdir, verbose=1):
    """The whole microcontroller experiment: features, the configured head, the finetuned head
    (the baseline of the same head without replay); writes results.json and the models."""
    config = validate(config)
    os.makedirs(workdir, exist_ok=True)
    tasks = build_tasks(load_source(config.data), config.data, config.seed)
    if config.micro.pretrain_tasks >= len(tasks):
        raise ConfigError(f"micro.pretrain_tasks={config.micro.pretrain_tasks} must be below the "
                          f"number of tasks ({len(tasks)})")
    features = Features(config, tasks, workdir, verbose)
    session = MicroSession(config, tasks, features, workdir, verbose=verbose)
    for key, model in session.models.items():
        with open(os.path.join(workdir, f"head_{key}.tflite"), "wb") as handle:
            handle.write(model)
    results = session.run()
    baseline = MicroSession(config, tasks, features, workdir, method_name="finetune",
                            verbose=verbose).run()
    arena = session.total_arena_bytes
    results.update({
        "preset": config.preset, "dataset": config.data.source, "model": config.model.name,
        "seed": config.seed, "num_tasks": len(tasks), "epochs_per_task": config.epochs_per_task,
        "runtime": "tflm",
        "pretrain_tasks": config.micro.pretrain_tasks,
        "pretrain_train_accuracy": features.pretrain_accuracy,
        "feature_size": features.size,
        # what a board needs to quantise images and dequantise features: (scale, zero point)
        "backbone_input_quantization": [features.input_scale, features.input_zero],
        "feature_quantization": [features.scale, features.zero_point],
        "backbone_model_bytes": len(features.model),
        "backbone_arena_bytes": features.arena_bytes,
        "backbone_ms_per_image": features.ms_per_image,
        # quantisation steps between TFLM's features and LiteRT's on the same int8 images
        "backbone_tflm_vs_litert_reference_max_steps": features.max_step_difference["reference"],
        "backbone_tflm_vs_litert_xnnpack_max_steps": features.max_step_difference["xnnpack"],
        "arena_bytes": arena,
        "model_bytes": len(features.model) + sum(results["head_model_bytes"].values()),
        "arena_plus_buffer_bytes": arena + results["buffer_bytes"],
        "memory_budget_bytes": config.micro.memory_budget_bytes,
        "finetune_class_il": baseline["class_il"], "finetune_task_il": baseline["task_il"],
        "finetune_class_il_matrix": baseline["class_il_matrix"],
    })
    run_results.write(workdir, results)
    return results
