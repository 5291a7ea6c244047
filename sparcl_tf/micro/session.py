"""Continual learning as a microcontroller does it, run through the TFLite Micro Python runtime.

1. The backbone trains on the host on the first `micro.pretrain_tasks` tasks, freezes, and becomes
   an int8 model; every image of the stream goes through it in TFLM once (int8 features).
2. The head (`head.py`) learns the task stream from those features through the one task loop
   (`session.loop`) with the TFLM step engine: each step is one call of the head's train model in
   TFLM, with replay from a reservoir of int8 features (latent replay), the method's replay
   terms, the TDM schedule on the hidden kernel (prune / grow on the host side,
   `sparsity.tdm.prune_and_grow`, as a board does in C), DGM in the step, DDR from `correct`.
3. The first `micro.compare_steps` steps of every task also run in LiteRT from the same inputs:
   the largest relative loss difference is reported.
Memory is measured, not estimated: the smallest TFLM arena each model allocates in (bisection on
the arena size), the model bytes, and the buffer bytes (int8 features + label + float32 logits).
"""

import os
import time

import numpy as np

from sparcl_tf.reporting import results as run_results
from sparcl_tf.config import validate
from sparcl_tf.data import build_tasks, load_source
from sparcl_tf.data.pipeline import Normalizer
from sparcl_tf.engines.tflm import MicroHeadEngine
from sparcl_tf.errors import ConfigError
from sparcl_tf.methods import build_method
from sparcl_tf.micro import backbone as backbone_lib
from sparcl_tf.micro.head import HEAD_LAYER, Head, convert_function
from sparcl_tf.micro.runtime import LiteModel, MicroModel, minimum_arena_bytes
from sparcl_tf.paths import check_folder, usable_folder
from sparcl_tf.session.loop import SessionLoop, TaskStream
from sparcl_tf.session.plan import build_plan
from sparcl_tf.sparsity import schedule
from sparcl_tf.sparsity.kind import sparsity_kind
from sparcl_tf.sparsity.masks import active_count, magnitude_mask



class Features:
    """The task stream as int8 backbone features (train and test), extracted in TFLM."""

    def __init__(self, config, tasks, verbose):
        normalizer = Normalizer(tasks.mean, tasks.std)
        pretrain = tasks.tasks[:config.micro.pretrain_tasks]
        x = normalizer(np.concatenate([t.x_train for t in pretrain]))
        y = np.concatenate([t.y_train for t in pretrain])
        network = backbone_lib.build_backbone(config, tasks.image_shape, tasks.num_classes)
        self.pretrain_accuracy = backbone_lib.pretrain(network, x, y, tasks.num_classes, config)
        representative = x[np.random.default_rng(config.seed).permutation(len(x))[:200]]
        self.model = backbone_lib.convert_int8(network, representative)
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
    """One head learning the stream of `features` with `config`'s method and sparsity; `trace`
    receives the session's records (`session.trace`)."""

    def __init__(self, config, tasks, features, method_name=None, verbose=1, trace=None):
        self.config, self.tasks, self.features, self.verbose = config, tasks, features, verbose
        method_config = config.method.copy_and_resolve_references()
        if method_name:
            method_config.name = method_name
        self.method = build_method(method_config)
        if self.method.name not in ("finetune", "er", "der", "derpp"):
            raise ConfigError(f"the micro path supports method.name finetune, er, der or derpp, "
                              f"got {self.method.name!r}")
        if not self.method.cl_mask or self.method.masked_logits != "excluded":
            raise ConfigError("the micro path's head always excludes the other classes' logits "
                              "(CL mask): method.cl_mask must be true and method.masked_logits "
                              "'excluded'")
        if self.method.shared_draw:
            raise ConfigError("method.shared_draw=true is not on the micro path yet: the board's "
                              "head reads one replay draw per term")
        if config.data.augment != "none":
            raise ConfigError(f"data.augment={config.data.augment!r} is invalid for the micro "
                              f"path, whose head learns from backbone features: must be 'none'")
        if config.sparsity.granularity != "weight":
            raise ConfigError(f"sparsity.granularity={config.sparsity.granularity!r} is invalid "
                              f"for the micro path, whose head is one dense layer: must be "
                              f"'weight'")
        shape = {HEAD_LAYER: (features.size, config.micro.hidden_units)}
        kind = sparsity_kind(config, shapes=shape)
        num_classes = tasks.num_classes
        size = features.size * config.micro.hidden_units
        s = config.sparsity
        target = kind.targets([HEAD_LAYER])[HEAD_LAYER]
        keep = active_count(size, kind.gradient_masks.gradient_sparsity) \
            if kind.gradient_masks else size
        self.head = Head(features.size, config.micro.hidden_units, num_classes,
                         features.scale, features.zero_point, config.batch_size,
                         config.replay.batch_size, self.method.replay_terms(), keep,
                         (schedule.rate_scales(config, shape) or [1.0])[0])
        self.models = {"train": convert_function(self.head.train_function()),
                       "infer": convert_function(self.head.infer_function())}
        self.arena_bytes = {key: minimum_arena_bytes(m) for key, m in self.models.items()}

        self.example_bytes = features.size + 1 + 4 * num_classes
        capacity = (config.micro.buffer_bytes // self.example_bytes if config.micro.buffer_bytes
                    else config.replay.buffer_size) if self.method.uses_buffer else 0
        if self.method.uses_buffer and capacity == 0:
            raise ConfigError(f"micro.buffer_bytes={config.micro.buffer_bytes} holds no example "
                              f"({self.example_bytes} B each), so {self.method.name} would train "
                              f"without replay; raise it, or 0 to use replay.buffer_size")
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

        params = self.head.initial_parameters(config.seed)
        mask = magnitude_mask(params["w1"], target) if kind.has_masks else np.ones(
            params["w1"].shape, np.float32)
        params["w1"] *= mask
        self.engine = MicroHeadEngine(
            self.head, self.models, self.arena_bytes, params, mask, s.importance_lambda,
            kind.mask_rule or "tdm", s.grow, config.micro.compare_steps)
        stream = TaskStream(tasks, lambda t: (features.train[t], tasks.tasks[t].y_train,
                                              tasks.tasks[t].ids_train),
                            lambda x: x, lambda task: features.test[task.index])
        plan = build_plan(config, tasks, [(HEAD_LAYER, size)], kind,
                          replay_draws=self.head.replay_draws if capacity else 0)
        plan.replay["buffer_size"] = capacity
        self.session = SessionLoop(plan, self.engine, stream, config, None,
                                   {"method": self.method.name},
                                   example_shape=(features.size,), example_dtype=np.int8,
                                   verbose=verbose, trace=trace)

    def run(self):
        started = time.perf_counter()
        results = self.session.run(label=self.method.name)
        engine, progress = self.engine, self.session.progress
        buffer = self.session.buffer
        results.update({
            "steps": progress.global_step, "examples_presented": progress.examples_presented,
            "examples_removed": progress.examples_removed,
            "head_arena_bytes": self.arena_bytes,
            "head_model_bytes": {key: len(m) for key, m in self.models.items()},
            "buffer_bytes": self.buffer_bytes,
            "buffer_capacity": buffer.capacity if buffer else 0,
            "buffer_bytes_per_example": self.example_bytes,
            "ms_per_step": 1000.0 * progress.train_time_s / max(progress.global_step, 1),
            "litert_compared_steps": engine.compared_steps,
            "litert_max_relative_loss_difference": engine.max_loss_difference,
            "wall_clock_s": time.perf_counter() - started,
        })
        return results


def run_micro(config, workdir, verbose=1):
    """The whole microcontroller experiment: features, the configured head, the finetuned head
    (the baseline of the same head without replay); writes results.json and the models."""
    config = validate(config)
    if config.distribute.strategy != "none":
        raise ConfigError(f"distribute.strategy={config.distribute.strategy!r} is invalid for "
                          f"the microcontroller path, which trains on one device: must be 'none'")
    check_folder(workdir)
    tasks = build_tasks(load_source(config.data), config.data, config.seed)
    if config.micro.pretrain_tasks >= len(tasks):
        raise ConfigError(f"micro.pretrain_tasks={config.micro.pretrain_tasks} must be below the "
                          f"number of tasks ({len(tasks)})")
    features = Features(config, tasks, verbose)
    session = MicroSession(config, tasks, features, verbose=verbose)  # checks the budget
    usable_folder(workdir)
    for name, model in (("backbone_int8", features.model), *(
            (f"head_{key}", model) for key, model in session.models.items())):
        with open(os.path.join(workdir, f"{name}.tflite"), "wb") as handle:
            handle.write(model)
    results = session.run()
    baseline = MicroSession(config, tasks, features, method_name="finetune",
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
