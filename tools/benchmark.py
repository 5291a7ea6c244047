r"""Runs presets side by side on the same data, seed and epochs, and reports accuracy against cost.

  python -m tools.benchmark --mode=quick --workdir=runs/benchmark_quick
  python -m tools.benchmark --mode=full --workdir=runs/benchmark_full

Every preset trains in its own process (`tools.train`, so peak resident memory is that run's alone)
into WORKDIR/PRESET/seed_S for every seed of `--seeds` (seed by seed, each preset side by side); a
rerun resumes or reuses finished runs. Accuracy, forgetting and the FLOPs and wall-clock ratios
against DER++ (paired: each seed's run against DER++ on that seed) are reported as mean +- sample
standard deviation over the seeds. Then the train step of dense DER++,
SparCL-DER++ 0.90 (masks + DGM) and the same with masks only is timed side by side on identical
batches (interleaved repeats, median), which is the overhead figure (`--step_repeats=0` skips
it). Writes WORKDIR/benchmark.md, benchmark.json and accuracy_vs_flops.png.

  python -m tools.benchmark --seeds=0,1,2 --workdir=runs/benchmark_seeds

  python -m tools.benchmark --sessions_only --workdir=runs/benchmark_hosts

compares the two session hosts instead: one converted model's session run by the Python LiteRT
host and by the Kotlin session on the JVM (tflite/android), same steps, side by side.

  python -m tools.benchmark --distribute_only --workdir=runs/benchmark_distribute

trains one short SparCL-DER++ 0.90 run (DISTRIBUTE_SIZE) on one device, under MirroredStrategy on
2 logical CPU devices (BatchNorm synchronised, and local) and under MultiWorkerMirroredStrategy
with 2 worker processes on 127.0.0.1, interleaved repeats: median train step, whole wall-clock,
and how far each run's final weights and masks are from the one-device run's; writes
distribute.md / distribute.json.

  python -m tools.benchmark --ops_only --workdir=runs/benchmark_ops [--override=model.name=resnet18]

times where the exported train step spends its time instead: every masked layer's forward +
backward (input and kernel gradients) at its shape in the train signature, as TF's own kernels
and as builtins-only LiteRT graphs in the two formulations `builtin_gradients` chooses between
(conv kernels, im2col + batch matmuls), converted and timed on their own; writes ops.md/ops.json.

Modes (Split Fashion-MNIST, edge CNN):
  quick: 2000 training / 1000 test images per task, 3 epochs per task (about 15 min on 2 cores)
  full:  all 12000 / 2000 images per task, 5 epochs per task (several hours on 2 cores)
  config: the config file's own data sizes and epochs (configs/split_fmnist_paper.py: the
          paper's ResNet-18 settings at 50 epochs per task, an accelerator's job)
"""

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time

from absl import flags

from tools import cli

PRESETS = ("finetune", "derpp", "sparcl_derpp", "sparcl_derpp_90", "sparcl_derpp_95",
           "static_derpp_90", "rigl_derpp_90", "sparcl_derpp_90_no_tdm",
           "sparcl_derpp_90_no_ddr", "sparcl_derpp_90_no_dgm", "sparcl_derpp_s75",
           "sparcl_derpp_s90", "sparcl_derpp_s95")
MODES = {
    "quick": {"data.train_per_task": 2000, "data.test_per_task": 1000, "epochs_per_task": 3},
    "full": {"data.train_per_task": 0, "data.test_per_task": 0, "epochs_per_task": 5},
    "config": {},  # the config file's own sizes and epochs (configs/split_fmnist_paper.py)
}
REFERENCE = "derpp"

_MODE = flags.DEFINE_enum("mode", "quick", list(MODES), "Benchmark size.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Benchmark folder.", required=True)
_CONFIG = flags.DEFINE_string("config_file", "configs/split_fmnist.py", "Config file of the runs.")
_PRESETS = flags.DEFINE_list("presets", list(PRESETS), "Presets to run (must include derpp).")
_OVERRIDES = flags.DEFINE_multi_string(
    "override", [], "Extra --config.FIELD=VALUE for every run, e.g. model.name=resnet18.")
_SEEDS = flags.DEFINE_list("seeds", ["0"], "Seeds every preset runs with (config.seed).")
_STEP_REPEATS = flags.DEFINE_integer("step_repeats", 7, "Interleaved repeats of the step timing "
                                     "(0: no step timing).")
_LITERT_PRESETS = flags.DEFINE_list("litert_presets", ["derpp", "sparcl_derpp_90"],
                                    "Presets whose exported train signature is timed in TF and "
                                    "LiteRT.")
_LITERT_STEPS = flags.DEFINE_integer("litert_steps", 20, "Calls per repeat of that timing.")
_SESSIONS_ONLY = flags.DEFINE_bool(
    "sessions_only", False, "Only compare the two session hosts (Python LiteRT, Kotlin on the "
    "JVM) on one converted model; writes WORKDIR/sessions.md and sessions.json.")
_SESSION_REPEATS = flags.DEFINE_integer("session_repeats", 3, "Interleaved repeats of each host "
                                        "(--sessions_only) or run (--distribute_only).")
_LITERT_ONLY = flags.DEFINE_bool(
    "litert_only", False, "Only time the exported train signature of --litert_presets (TF "
    "kernels, LiteRT settings); writes WORKDIR/litert.md and litert.json.")
_DISTRIBUTE_ONLY = flags.DEFINE_bool(
    "distribute_only", False, "Only time one run on one device, under MirroredStrategy and "
    "MultiWorkerMirroredStrategy (2 processes); writes WORKDIR/distribute.md and .json.")
_OPS_ONLY = flags.DEFINE_bool(
    "ops_only", False, "Only time each masked layer's forward + backward in TF and LiteRT per "
    "formulation; writes WORKDIR/ops.md and ops.json.")

# The session the host comparison runs (the Kotlin parity test's: tests/test_android_session.py).
SESSION_SIZE = {"data.num_tasks": 3, "data.train_per_task": 300, "data.test_per_task": 100,
                "epochs_per_task": 1}


def _run_preset(preset, seed, workdir, overrides):
    """Trains `preset` at `seed` in a child process; returns its results.json with the child's
    peak resident MiB (`peak_rss_mib`) and the share of training data removed added."""
    run_dir = os.path.join(workdir, preset, f"seed_{seed}")
    memory_file = os.path.join(run_dir, "peak_rss.json")
    results_file = os.path.join(run_dir, "results.json")
    if not (os.path.exists(results_file) and os.path.exists(memory_file)):
        command = [sys.executable, "-m", "tools.train", f"--config={_CONFIG.value}:{preset}",
                   f"--workdir={run_dir}", "--quiet", f"--config.seed={seed}"] + [
                       f"--config.{o}" for o in overrides]
        print(f"[benchmark] {preset} seed {seed}: {' '.join(command[2:])}", flush=True)
        started = time.perf_counter()
        child = subprocess.Popen(command)
        _, status, usage = os.wait4(child.pid, 0)
        if os.waitstatus_to_exitcode(status) != 0:
            cli.fail(f"preset {preset} seed {seed} failed (exit "
                     f"{os.waitstatus_to_exitcode(status)}); its output is above")
        with open(memory_file, "w") as handle:
            json.dump({"peak_rss_mib": usage.ru_maxrss / 1024.0}, handle)  # Linux: KiB
        print(f"[benchmark] {preset} seed {seed}: done in "
              f"{time.perf_counter() - started:.0f} s", flush=True)
    with open(results_file) as handle, open(memory_file) as memory:
        results = json.load(handle)
        results["peak_rss_mib"] = json.load(memory)["peak_rss_mib"]
    results["removed_fraction"] = results["examples_removed"] / results["training_examples"]
    print(f"[benchmark] {preset} seed {seed}: class-IL {results['class_il']:.2f}", flush=True)
    return results


def _seeds(values):
    """--seeds as distinct integers in [0, 2**32), in the order given; one error line if not."""
    from sparcl_tf.config import SEEDS
    try:
        seeds = [int(value) for value in values]
    except ValueError:
        cli.fail(f"--seeds={','.join(values)} is invalid: must be integers, e.g. 0,1,2")
    if not seeds or len(set(seeds)) != len(seeds) or not all(0 <= s < SEEDS for s in seeds):
        cli.fail(f"--seeds={','.join(values)} is invalid: must be distinct integers in "
                 f"[0, 2**32)")
    return seeds


def mean_std(values):
    """(mean, sample standard deviation; 0 for one value) of `values`."""
    import numpy as np
    values = np.asarray(values, dtype=np.float64)
    return float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else 0.0


SUMMARY_FIELDS = ("class_il", "task_il", "forgetting", "training_flops", "wall_clock_s",
                  "peak_rss_mib", "removed_fraction")


def summarize(runs, presets, seeds, reference=REFERENCE):
    """Per preset, over `seeds`: (mean, std) of SUMMARY_FIELDS, of the paired ratios
    `flops_ratio` (reference FLOPs / preset FLOPs) and `speedup` (reference wall-clock / preset
    wall-clock), and of `class_il_delta` (preset - reference class-IL), each seed's run set
    against the reference's run on that seed. `runs`: (preset, seed) -> results."""
    summary = {}
    for preset in presets:
        rows = [runs[(preset, seed)] for seed in seeds]
        references = [runs[(reference, seed)] for seed in seeds]
        entry = {field: mean_std([row[field] for row in rows]) for field in SUMMARY_FIELDS}
        entry["flops_ratio"] = mean_std([r["training_flops"] / row["training_flops"]
                                         for row, r in zip(rows, references)])
        entry["speedup"] = mean_std([r["wall_clock_s"] / row["wall_clock_s"]
                                     for row, r in zip(rows, references)])
        entry["class_il_delta"] = mean_std([row["class_il"] - r["class_il"]
                                            for row, r in zip(rows, references)])
        summary[preset] = dict(entry, preset=preset, seeds=list(seeds))
    return summary


def _config(preset, overrides):
    """--config_file's config for `preset` with `overrides` (FIELD=VALUE texts) applied."""
    from sparcl_tf.config import apply_text_override
    from sparcl_tf.errors import ConfigError
    path = _CONFIG.value
    if not os.path.isfile(path):
        raise ConfigError(f"--config_file {path} cannot be used: no such file")
    spec = importlib.util.spec_from_file_location("benchmark_config", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as error:  # the config file is the user's code: say what it raised
        raise ConfigError(f"--config_file {path} cannot be loaded: {cli.one_line(error)}") \
            from None
    if not callable(getattr(module, "get_config", None)):
        raise ConfigError(f"--config_file {path} defines no get_config() function")
    config = module.get_config(preset)
    for override in overrides:
        apply_text_override(config, override)
    return config


def _checked_flags():
    """(presets, seeds, overrides) once every flag and every run's config has been checked:
    a bad one is one line before anything runs or is written."""
    from sparcl_tf.config import validate
    presets = _PRESETS.value
    if REFERENCE not in presets:
        cli.fail(f"--presets must include {REFERENCE} (the reference of every ratio)")
    only = [name for name, flag in (
        ("sessions_only", _SESSIONS_ONLY), ("litert_only", _LITERT_ONLY),
        ("distribute_only", _DISTRIBUTE_ONLY), ("ops_only", _OPS_ONLY)) if flag.value]
    if len(only) > 1:
        cli.fail(f"only one of --sessions_only, --litert_only, --distribute_only, --ops_only "
                 f"may be given, got --{' --'.join(only)}")
    for name, flag, low in (("step_repeats", _STEP_REPEATS, 0), ("litert_steps", _LITERT_STEPS, 1),
                            ("session_repeats", _SESSION_REPEATS, 1)):
        if flag.value < low:
            cli.fail(f"--{name} must be an integer >= {low}, got {flag.value}")
    seeds = _seeds(_SEEDS.value)
    overrides = [f"{k}={v}" for k, v in MODES[_MODE.value].items()] + list(_OVERRIDES.value)
    for preset in dict.fromkeys([*presets, *_LITERT_PRESETS.value]):
        for seed in seeds:
            cli.run_or_exit(lambda: validate(_config(preset, [*overrides, f"seed={seed}"])))
    return presets, seeds, overrides


def step_times(overrides, repeats):
    """Median ms per train step, replay on, identical host inputs, interleaved across variants;
    gradient masks refresh on the run's cadence (`dgm.refresh_every`)."""
    import tempfile

    import numpy as np

    from sparcl_tf.experiment import Experiment

    variants = {"dense DER++": "derpp", "SparCL-DER++ 0.90 (masks + DGM)": "sparcl_derpp_90",
                "SparCL-DER++ 0.90 (masks only)": "sparcl_derpp_90_no_dgm"}
    steps, engines, batches = 40, {}, None
    for label, preset in variants.items():
        config = _config(preset, overrides)
        config.log.progress = False
        run = Experiment(config, tempfile.mkdtemp(prefix="sparcl_step_"), verbose=0)
        if batches is None:
            batches = _host_batches(run, steps)
        every = config.dgm.refresh_every if config.dgm.enabled else 0
        engines[label] = (run.engine, every)
        for _ in range(2):  # trace and warm up
            _train_steps(run.engine, batches, every)
    timings = {label: [] for label in engines}
    for _ in range(repeats):
        for label, (engine, every) in engines.items():
            started = time.perf_counter()
            _train_steps(engine, batches, every)
            timings[label].append(1000.0 * (time.perf_counter() - started) / len(batches))
    return {label: float(np.median(values)) for label, values in timings.items()}


def _host_batches(run, steps):
    """Task 2's first batches with replay draws of task 1's images, as the session host makes
    them (normalised, fixed shapes, replay weight 1)."""
    import numpy as np

    plan, stream = run.plan, run.session.stream
    x, y, _ = stream.training(1)
    old, old_labels, _ = stream.training(0)
    batch, replay = plan.batch_size, plan.replay
    class_mask = np.isin(np.arange(plan.num_classes), run.tasks.tasks[1].classes).astype(np.float32)
    rng = np.random.default_rng(0)
    batches = []
    for step in range(min(steps, len(x) // batch)):
        rows = slice(step * batch, (step + 1) * batch)
        inputs = dict(images=stream.prepare(x[rows]), labels=y[rows].astype(np.int32),
                      class_mask=class_mask, learning_rate=np.float32(plan.learning_rate["base"]))
        if replay["draws"]:
            shape = (replay["draws"], replay["batch_size"])
            picks = rng.integers(0, len(old), shape)
            inputs.update(replay_images=stream.prepare(old[picks.ravel()]).reshape(
                shape + x.shape[1:]).astype(np.float32),
                replay_labels=old_labels[picks].astype(np.int32),
                replay_logits=rng.normal(size=shape + (plan.num_classes,)).astype(np.float32),
                replay_weight=np.float32(1.0))
        batches.append(inputs)
    return batches


def _train_steps(engine, batches, refresh_every):
    for step, inputs in enumerate(batches):
        engine.train(inputs, refresh=refresh_every > 0 and step % refresh_every == 0)


def _random_train_inputs(details, rng):
    """Train-signature inputs of the right shapes: replay on, classes 2 and 3, no DGM refresh."""
    import numpy as np
    inputs = {}
    for name, (shape, dtype) in details.items():
        inputs[name] = (rng.integers(0, 2, shape) if dtype == np.int32
                        else rng.normal(size=shape)).astype(dtype)
    inputs["class_mask"] = np.isin(np.arange(len(inputs["class_mask"])), [2, 3]).astype(
        np.float32)
    for name, value in (("replay_weight", 1.0), ("refresh_gradient_masks", 0.0),
                        ("learning_rate", 0.05)):
        if name in inputs:
            inputs[name] = np.float32(value)
    return inputs


def litert_step_times(overrides, repeats, presets=("derpp", "sparcl_derpp_90"), steps=20):
    """Median ms per call of the exported `train` signature on identical inputs, interleaved
    repeats: the module as a TF graph with TF's own kernels (the reference: what TF makes of
    the same step), as a TF graph of its builtins-only formulation, and the .tflite in LiteRT's
    Interpreter at 1 and 2 threads and in its CompiledModel (2 threads). Also the file size."""
    import tempfile

    import numpy as np
    import tensorflow as tf
    from ai_edge_litert import compiled_model
    from ai_edge_litert.interpreter import Interpreter

    from sparcl_tf.experiment import Experiment
    from sparcl_tf.export import convert, training_module
    from sparcl_tf.layers import use_builtin_gradients

    callers, sizes = {}, {}
    for preset in presets:
        config = _config(preset, overrides)
        config.log.progress = False
        run = Experiment(config, tempfile.mkdtemp(prefix="sparcl_litert_"), verbose=0)
        module = training_module(config, run.network)
        folder = tempfile.mkdtemp()
        content = convert(module, folder)
        path = os.path.join(folder, "model.tflite")
        with open(path, "wb") as handle:
            handle.write(content)
        sizes[preset] = len(content)
        runners = {threads: Interpreter(model_content=content, num_threads=threads)
                   .get_signature_runner("train") for threads in (1, 2)}
        inputs = _random_train_inputs(
            {name: (tuple(d["shape"]), d["dtype"])
             for name, d in runners[1].get_input_details().items()}, np.random.default_rng(0))
        arguments = [tf.constant(inputs[spec.name]) for spec in module.train.input_signature]
        # The same module with TF's kernels: a fresh tf.function traced without the builtins
        # gradients (its Flex ops run in TF, not in LiteRT).
        stock = training_module(config, run.network)
        use_builtin_gradients(stock._network, False)
        stock_train = tf.function(stock._train_signature,
                                  input_signature=module.train.input_signature)
        callers[f"{preset}|TF kernels"] = lambda f=stock_train, a=arguments: f(*a)
        callers[f"{preset}|TF graph, builtins form"] = lambda m=module, a=arguments: m.train(*a)
        for threads, runner in runners.items():
            callers[f"{preset}|LiteRT Interpreter {threads} thread{'s' * (threads > 1)}"] = (
                lambda r=runner, i=inputs: r(**i))
        callers[f"{preset}|LiteRT CompiledModel 2 threads"] = _compiled_caller(
            compiled_model, path, inputs)
        for call in [c for label, c in callers.items() if label.startswith(f"{preset}|")]:
            for _ in range(3):  # trace / allocate, warm up
                call()
    timings = {label: [] for label in callers}
    for _ in range(repeats):
        for label, call in callers.items():
            started = time.perf_counter()
            for _ in range(steps):
                call()
            timings[label].append(1000.0 * (time.perf_counter() - started) / steps)
    medians = {label: float(np.median(values)) for label, values in timings.items()}
    return {preset: {"ms": {label.split("|", 1)[1]: ms for label, ms in medians.items()
                            if label.startswith(f"{preset}|")},
                     "file_bytes": sizes[preset]} for preset in presets}


def _compiled_caller(compiled_model, path, inputs):
    """One train call through LiteRT's CompiledModel API (inputs written, outputs kept)."""
    import numpy as np
    options = compiled_model.Options(
        hardware_accelerators=compiled_model.HardwareAccelerator.CPU,
        cpu_options=compiled_model.CpuOptions(num_threads=2))
    model = compiled_model.CompiledModel.from_file(path, options=options)
    index = model.get_signature_index("train")
    names = model.get_signature_list()["train"]["inputs"]
    buffers = model.create_input_buffers(index), model.create_output_buffers(index)

    def call():
        for buffer, name in zip(buffers[0], names):
            buffer.write(np.ascontiguousarray(inputs[name]).reshape(-1))
        model.run_by_index(index, *buffers)
    return call


def _best_litert_ms(entry):
    """The fastest LiteRT setting's ms of one preset's `litert_step_times` entry."""
    return min(ms for setting, ms in entry["ms"].items() if setting.startswith("LiteRT"))


def _litert_lines(litert):
    lines = ["Exported train signature (tools.convert's module), same inputs, median ms per call "
             "(LiteRT / TF: the best LiteRT setting against TF's own kernels on the same step):",
             ""]
    settings = list(next(iter(litert.values()))["ms"])
    lines += ["| preset | " + " | ".join(settings) + " | LiteRT / TF | file (MB) |",
              "|---|" + "---:|" * (len(settings) + 2)]
    for preset, entry in litert.items():
        ms = entry["ms"]
        ratio = _best_litert_ms(entry) / ms["TF kernels"]
        lines.append(f"| {preset} | " + " | ".join(f"{ms[k]:.1f}" for k in settings)
                     + f" | {ratio:.2f}x | {entry['file_bytes'] / 1e6:.2f} |")
    presets = list(litert)
    for other in presets[1:]:
        ratio = _best_litert_ms(litert[presets[0]]) / _best_litert_ms(litert[other])
        lines.append(f"\nLiteRT train step, {presets[0]} / {other}: {ratio:.2f}x")
    return lines


def op_block_times(overrides, repeats, calls=20):
    """Per masked layer of the run's model (duplicates of a shape timed once): median ms of its
    forward + backward at the train signature's batch, as TF kernels and as LiteRT graphs of
    each builtins-only formulation (1 and 2 threads), outputs checked against TF. The blocks
    include the input gradient even of the first layer (the train step never computes it)."""
    import numpy as np
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter

    import tempfile

    from sparcl_tf import builtin_gradients
    from sparcl_tf.experiment import Experiment
    from sparcl_tf.layers import MaskedConv2D, MaskedDense, masked_layers

    config = _config("derpp", overrides)
    config.log.progress = False
    network = Experiment(config, tempfile.mkdtemp(prefix="sparcl_ops_"), verbose=0).network
    batch, rng, rows, seen = config.batch_size, np.random.default_rng(0), [], set()
    for layer in masked_layers(network):
        x_shape = (batch,) + tuple(int(d) for d in layer.input.shape[1:])
        kernel_shape = tuple(int(d) for d in layer.kernel.shape)
        if isinstance(layer, MaskedConv2D):
            key = ("conv", x_shape, kernel_shape, layer.strides, layer.padding)
            forms = {"kernel ops": lambda a, b, l=layer: builtin_gradients._conv2d_as_conv(
                         a, b, l.strides, l.padding, None, None),
                     "batch matmuls": lambda a, b, l=layer: builtin_gradients._conv2d_as_matmuls(
                         a, b, l.strides[0], l.padding, None, None)}
            stock = lambda a, b, l=layer: tf.nn.conv2d(a, b, l.strides, l.padding.upper())
            name = (f"conv {kernel_shape[0]}x{kernel_shape[1]} s{layer.strides[0]} "
                    f"{x_shape[1]}x{x_shape[2]}x{kernel_shape[2]}->{kernel_shape[3]}")
        elif isinstance(layer, MaskedDense):
            key = ("dense", x_shape, kernel_shape)
            forms = {"kernel ops": tf.matmul, "batch matmuls": builtin_gradients.matmul}
            stock = tf.matmul
            name = f"dense {kernel_shape[0]}->{kernel_shape[1]}"
        else:  # depthwise convs have one builtins-only form: nothing to choose between
            continue
        if key in seen:
            continue
        seen.add(key)
        x = rng.normal(size=x_shape).astype(np.float32)
        w = (0.1 * rng.normal(size=kernel_shape)).astype(np.float32)
        y_shape = tuple(int(d) for d in stock(x, w).shape)
        dy = rng.normal(size=y_shape).astype(np.float32)
        specs = [tf.TensorSpec(a.shape, tf.float32) for a in (x, w, dy)]

        def block(conv):
            @tf.function(input_signature=specs)
            def step(x, w, dy):
                with tf.GradientTape() as tape:
                    tape.watch([x, w])
                    y = conv(x, w)
                return (y,) + tuple(tape.gradient(y, [x, w], output_gradients=dy))
            return step

        reference = [t.numpy() for t in block(stock)(x, w, dy)]
        callers = {"TF kernels": lambda f=block(stock): f(x, w, dy)}
        for form, conv in forms.items():
            step = block(conv)
            content = tf.lite.TFLiteConverter.from_concrete_functions(
                [step.get_concrete_function()], step).convert()
            for threads in (1, 2):
                callers[f"LiteRT {form}, {threads} thread{'s' * (threads > 1)}"] = (
                    _interpreter_caller(Interpreter, content, threads, (x, w, dy), reference))
        timings = {label: [] for label in callers}
        for _ in range(repeats):
            for label, call in callers.items():
                call()
                started = time.perf_counter()
                for _ in range(calls):
                    call()
                timings[label].append(1000.0 * (time.perf_counter() - started) / calls)
        rows.append({"block": name, "count": sum(
            1 for other in masked_layers(network) if other is not layer and _same_block(
                other, layer)) + 1,
            "ms": {label: float(np.median(v)) for label, v in timings.items()}})
    return rows


def _same_block(a, b):
    return (type(a) is type(b) and tuple(a.input.shape) == tuple(b.input.shape)
            and tuple(a.kernel.shape) == tuple(b.kernel.shape)
            and getattr(a, "strides", None) == getattr(b, "strides", None)
            and getattr(a, "padding", None) == getattr(b, "padding", None))


def _interpreter_caller(interpreter_class, content, threads, arrays, reference):
    import numpy as np
    interpreter = interpreter_class(model_content=content, num_threads=threads)
    interpreter.allocate_tensors()
    inputs = [d["index"] for d in interpreter.get_input_details()]

    def call():
        for index, array in zip(inputs, arrays):
            interpreter.set_tensor(index, array)
        interpreter.invoke()
    call()
    outputs = sorted((interpreter.get_tensor(d["index"]) for d in
                      interpreter.get_output_details()), key=lambda a: a.shape)
    for value in outputs:  # outputs may come in any order: match by shape
        match = [r for r in reference if r.shape == value.shape]
        error = min(np.abs(value - r).max() / max(np.abs(r).max(), 1e-12) for r in match)
        if error > 1e-5:
            cli.fail(f"a LiteRT block differs from TF by {error:.1e} (relative)")
    return call


def _ops_report(workdir, overrides):
    rows = op_block_times(overrides, _STEP_REPEATS.value)
    with open(os.path.join(workdir, "ops.json"), "w") as handle:
        json.dump({"overrides": overrides, "blocks": rows}, handle, indent=2)
    labels = list(rows[0]["ms"])
    lines = [f"Forward + backward of each masked layer ({', '.join(overrides)}), median ms per "
             f"call of {_STEP_REPEATS.value} interleaved repeats; LiteRT graphs builtins-only, "
             f"'kernel ops' = CONV_2D, TRANSPOSE_CONV and the kernel gradient as a CONV_2D (convs) "
             f"or FULLY_CONNECTED (dense), 'batch matmuls' = im2col + BATCH_MATMUL:",
             "", "| block | layers | " + " | ".join(labels) + " |",
             "|---|---:|" + "---:|" * len(labels)]
    lines += [f"| {row['block']} | {row['count']} | "
              + " | ".join(f"{row['ms'][label]:.2f}" for label in labels) + " |" for row in rows]
    totals = {label: sum(row["count"] * row["ms"][label] for row in rows) for label in labels}
    lines.append("| all masked layers, one pass | | " + " | ".join(
        f"{totals[label]:.1f}" for label in labels) + " |")
    return _report(workdir, "ops.md", lines)


def host_session_times(workdir, repeats):
    """One converted SparCL-DER++ 0.90 session (SESSION_SIZE) run by the Python LiteRT host
    (tools.ondevice) and by the Kotlin session on the JVM (tflite/android/session.sh), each in
    its own process, interleaved repeats: medians of the ms per train call as each host times it
    and of the whole process's wall-clock (start-up, data, evaluation included)."""
    import statistics
    import tempfile

    model_dir = os.path.join(workdir, "session_model")
    model = os.path.join(model_dir, "model.tflite")
    if not os.path.exists(os.path.join(model_dir, "task_data.npz")):
        subprocess.run([sys.executable, "-m", "tools.convert", f"--workdir={model_dir}",
                        f"--config={_CONFIG.value}:sparcl_derpp_90", "--state=initial",
                        "--task_data", *[f"--config.{k}={v}" for k, v in SESSION_SIZE.items()]],
                       check=True, capture_output=True)
    subprocess.run(["bash", "tflite/android/build.sh"], check=True, capture_output=True)
    commands = {
        "Python LiteRT session": lambda state: [
            sys.executable, "-m", "tools.ondevice", f"--model={model}", f"--workdir={state}",
            "--quiet"],
        "Kotlin session (JVM)": lambda state: [
            "bash", "tflite/android/session.sh", f"--model={model}",
            f"--data={model_dir}/task_data.npz", f"--state_dir={state}"],
    }
    runs = {label: [] for label in commands}
    for _ in range(repeats):
        for label, command in commands.items():
            state = tempfile.mkdtemp(prefix="sparcl_host_")
            started = time.perf_counter()
            child = subprocess.Popen(command(state), stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
            _, status, usage = os.wait4(child.pid, 0)
            wall = time.perf_counter() - started
            if os.waitstatus_to_exitcode(status) != 0:
                cli.fail(f"the {label} failed (exit {os.waitstatus_to_exitcode(status)})")
            with open(os.path.join(state, "results.json")) as handle:
                results = json.load(handle)
            runs[label].append((results["train_step_ms"], wall, results["steps"],
                                results["class_il"], usage.ru_maxrss / 1024.0))
    return {label: {"train_step_ms": statistics.median(r[0] for r in measured),
                    "wall_s": statistics.median(r[1] for r in measured),
                    "steps": measured[0][2], "class_il": measured[0][3],
                    "peak_rss_mib": max(r[4] for r in measured)}
            for label, measured in runs.items()}


def _sessions_report(workdir):
    hosts = host_session_times(workdir, _SESSION_REPEATS.value)
    with open(os.path.join(workdir, "sessions.json"), "w") as handle:
        json.dump({"session": SESSION_SIZE, "hosts": hosts}, handle, indent=2)
    python = hosts["Python LiteRT session"]
    size = ", ".join(f"{k}={v}" for k, v in SESSION_SIZE.items())
    lines = [f"SparCL-DER++ 0.90 on Split Fashion-MNIST ({size}), one converted model, median "
             f"of {_SESSION_REPEATS.value} interleaved runs per host:", "",
             "| host | steps | class-IL | train call (ms) | vs Python | process wall-clock (s) | "
             "process peak RSS (MiB) |", "|---|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {label} | {h['steps']} | {h['class_il']:.2f} | {h['train_step_ms']:.1f} | "
              f"{h['train_step_ms'] / python['train_step_ms']:.2f}x | {h['wall_s']:.1f} | "
              f"{h['peak_rss_mib']:.0f} |" for label, h in hosts.items()]
    return _report(workdir, "sessions.md", lines)


# The run the distribution comparison trains (the --override flags apply on top).
DISTRIBUTE_SIZE = {"data.num_tasks": 2, "data.train_per_task": 1000, "data.test_per_task": 500,
                   "epochs_per_task": 1}
DISTRIBUTE_VARIANTS = {  # folder: (label, worker processes, config fields)
    "one_device": ("1 device", 1, []),
    "mirrored_sync": ("MirroredStrategy, 2 logical CPUs, BatchNorm sync", 1,
                      ["distribute.strategy=mirrored", "distribute.devices=2"]),
    "mirrored_local": ("MirroredStrategy, 2 logical CPUs, BatchNorm local", 1,
                       ["distribute.strategy=mirrored", "distribute.devices=2",
                        "distribute.batch_norm=local"]),
    "multi_worker": ("MultiWorkerMirroredStrategy, 2 workers", 2,
                     ["distribute.strategy=multi_worker"]),
}


def _final_variables(workdir):
    import numpy as np

    from sparcl_tf.checkpoint import CheckpointManager
    latest = CheckpointManager(os.path.join(workdir, "checkpoints"), {}).latest()
    with np.load(os.path.join(latest, "variables.npz")) as archive:
        return {key: archive[key] for key in archive.files if key.startswith("network/")}


def _difference(reference, variables):
    """(largest |difference| of a float network variable, mask entries that differ)."""
    import numpy as np
    largest, masks = 0.0, 0
    for key, value in reference.items():
        if key.endswith(".mask"):
            masks += int(np.count_nonzero(value != variables[key]))
        elif np.issubdtype(value.dtype, np.floating):
            largest = max(largest, float(np.abs(value - variables[key]).max(initial=0.0)))
    return largest, masks


def distribute_times(workdir, overrides, repeats):
    """Each variant of DISTRIBUTE_VARIANTS trained by `tools.train` (a worker process each),
    interleaved repeats: medians of the chief's ms per train step and of the wall-clock, the
    class-IL, and the first repeat's distance to the one-device run."""
    import statistics

    from sparcl_tf.distribute import local_cluster

    fields = [f"--config.{k}={v}" for k, v in DISTRIBUTE_SIZE.items()] + [
        f"--config.{o}" for o in overrides]
    measured = {label: [] for label, _, _ in DISTRIBUTE_VARIANTS.values()}
    for repeat in range(repeats):
        for folder, (label, workers, variant) in DISTRIBUTE_VARIANTS.items():
            run_dir = os.path.join(workdir, f"repeat_{repeat}", folder)
            shutil.rmtree(run_dir, ignore_errors=True)  # timed from scratch, never resumed
            command = [sys.executable, "-m", "tools.train",
                       f"--config={_CONFIG.value}:sparcl_derpp_90", f"--workdir={run_dir}",
                       "--quiet", *fields, *[f"--config.{v}" for v in variant]]
            clusters = local_cluster(workers) if workers > 1 else [None]
            started = time.perf_counter()
            children = [subprocess.Popen(command, stdout=subprocess.DEVNULL, env=dict(
                os.environ, **({"TF_CONFIG": tf_config} if tf_config else {})))
                for tf_config in clusters]
            codes = [child.wait() for child in children]
            wall = time.perf_counter() - started
            if any(codes):
                cli.fail(f"the run {label} failed (exit codes {codes})")
            with open(os.path.join(run_dir, "results.json")) as handle:
                results = json.load(handle)
            measured[label].append((results["train_step_ms"], wall, results["class_il"],
                                    run_dir))
            print(f"[benchmark] {label}: {results['train_step_ms']:.1f} ms / step, "
                  f"{wall:.0f} s", flush=True)
    reference = _final_variables(measured["1 device"][0][3])
    return {label: {"train_step_ms": statistics.median(m[0] for m in runs),
                    "wall_s": statistics.median(m[1] for m in runs), "class_il": runs[0][2],
                    **dict(zip(("largest_weight_difference", "mask_entries_differing"),
                               _difference(reference, _final_variables(runs[0][3]))))}
            for label, runs in measured.items()}


def _distribute_report(workdir, overrides, repeats):
    variants = distribute_times(workdir, overrides, repeats)
    with open(os.path.join(workdir, "distribute.json"), "w") as handle:
        json.dump({"run": DISTRIBUTE_SIZE, "overrides": overrides, "variants": variants},
                  handle, indent=2)
    one = variants["1 device"]
    size = ", ".join(f"{k}={v}" for k, v in DISTRIBUTE_SIZE.items())
    lines = [f"SparCL-DER++ 0.90 on Split Fashion-MNIST ({size}{', ' if overrides else ''}"
             f"{', '.join(overrides)}), median of {repeats} interleaved runs each, 2 CPU cores "
             f"shared by every replica and worker:", "",
             "| run | ms / step | vs 1 device | wall-clock (s) | class-IL | largest weight "
             "difference to 1 device | mask entries differing |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {label} | {v['train_step_ms']:.1f} | "
              f"{v['train_step_ms'] / one['train_step_ms']:.2f}x | {v['wall_s']:.1f} | "
              f"{v['class_il']:.2f} | {v['largest_weight_difference']:.1e} | "
              f"{v['mask_entries_differing']} |" for label, v in variants.items()]
    return _report(workdir, "distribute.md", lines)


def _report(workdir, name, lines):
    """Writes `lines` to WORKDIR/`name` and prints them; the binary's exit code."""
    report = "\n".join(lines)
    with open(os.path.join(workdir, name), "w") as handle:
        handle.write(report + "\n")
    print(report)
    return 0


def _pm(value, digits=2, scale=1.0):
    mean, std = value
    return f"{scale * mean:.{digits}f} +- {scale * std:.{digits}f}"


def _ratio(value, digits):
    """A ratio's mean, with its spread where it has one (FLOPs ratios are the same every seed)."""
    mean, std = value
    spread = f" +- {std:.{digits}f}" if round(std, digits) else ""
    return f"{mean:.{digits}f}x{spread}"


def _table(summary):
    lines = ["| preset | class-IL | vs DER++ | task-IL | forgetting | training FLOPs | "
             "FLOPs vs DER++ | wall-clock (s) | wall-clock vs DER++ | peak RSS (MiB) | "
             "data removed |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for entry in summary.values():
        lines.append(
            f"| {entry['preset']} | {_pm(entry['class_il'])} | {_pm(entry['class_il_delta'])} | "
            f"{_pm(entry['task_il'])} | {_pm(entry['forgetting'])} | "
            f"{entry['training_flops'][0]:.3g} | {_ratio(entry['flops_ratio'], 1)} fewer | "
            f"{_pm(entry['wall_clock_s'], 0)} | {_ratio(entry['speedup'], 2)} faster | "
            f"{entry['peak_rss_mib'][0]:.0f} | {100 * entry['removed_fraction'][0]:.0f} % |")
    return "\n".join(lines)


def _targets(summary, steps, litert=None, model="edge_cnn"):
    """The SparCL paper's claims, issue 15's accuracy bars and the on-device speed targets,
    checked against this benchmark's means over seeds (`summarize`)."""
    checks = []

    def check(name, measured, passed):
        checks.append({"target": name, "measured": measured, "met": bool(passed)})

    for preset, label, bar in (("sparcl_derpp", "SparCL-DER++ 0.75", 1.0),
                               ("sparcl_derpp_90", "SparCL-DER++ 0.90", -0.5),
                               ("sparcl_derpp_s90", "structured SparCL-DER++ s90", -2.0)):
        if preset in summary:
            delta = summary[preset]["class_il_delta"]
            check(f"{label} class-IL >= DER++ {bar:+g} point{'s' * (abs(bar) != 1)}",
                  f"{_pm(delta)} points", delta[0] >= bar)
    if "sparcl_derpp_95" in summary:
        ratio = summary["sparcl_derpp_95"]["flops_ratio"]
        check("SparCL-DER++ 0.95 training FLOPs >= 25x below DER++", f"{_pm(ratio, 1)}x",
              ratio[0] >= 25)
    if "sparcl_derpp_s90" in summary:
        ratio = summary["sparcl_derpp_s90"]["speedup"]
        check("structured SparCL-DER++ s90 whole run >= 2.3x faster than DER++ (wall-clock)",
              f"{_pm(ratio)}x", ratio[0] >= 2.3)
    if steps:
        dense = steps["dense DER++"]
        overhead = 100.0 * (steps["SparCL-DER++ 0.90 (masks + DGM)"] / dense - 1)
        check("train-step overhead of masks + DGM <= 10 %", f"{overhead:+.1f} %", overhead <= 10)
    limit = 1.5 if model == "resnet18" else 1.0
    best = {preset: _best_litert_ms(entry) for preset, entry in (litert or {}).items()}
    for preset, ms in best.items():
        ratio = ms / litert[preset]["ms"]["TF kernels"]
        check(f"{preset}: LiteRT train step <= {limit}x TF's", f"{ratio:.2f}x", ratio <= limit)
    if "derpp" in best and "sparcl_derpp_s90" in best:
        ratio = best["derpp"] / best["sparcl_derpp_s90"]
        check("structured s90 LiteRT step >= 3x faster than dense", f"{ratio:.2f}x", ratio >= 3)
    return checks


def _plot(summary, path):
    from matplotlib import colormaps
    from matplotlib.figure import Figure
    figure = Figure(figsize=(9, 5), layout="constrained")
    axis = figure.subplots()
    markers, colors = "osD^v<>pPX*h", colormaps["tab20"]
    for index, entry in enumerate(summary.values()):
        (flops, flops_std), (accuracy, accuracy_std) = entry["training_flops"], entry["class_il"]
        axis.errorbar(flops, accuracy, xerr=flops_std, yerr=accuracy_std, fmt=markers[index % 12],
                      color=colors(index % 20), markersize=7, capsize=3,
                      label=f"{entry['preset']} ({accuracy:.1f} +- {accuracy_std:.1f} %)")
    seeds = next(iter(summary.values()))["seeds"]
    axis.set_xscale("log")
    axis.set(xlabel="training FLOPs (multiply-accumulates, log scale)",
             ylabel="class-IL accuracy (%)",
             title=f"Split Fashion-MNIST: accuracy vs training cost (mean +- std over "
                   f"{len(seeds)} seed{'s' * (len(seeds) > 1)})")
    axis.grid(True, which="both", alpha=0.3)
    axis.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    figure.savefig(path, dpi=120)


def main(argv):
    del argv
    presets, seeds, overrides = _checked_flags()
    workdir = _WORKDIR.value
    from sparcl_tf.paths import usable_folder
    cli.run_or_exit(lambda: usable_folder(workdir))
    if _SESSIONS_ONLY.value:
        return _sessions_report(workdir)
    if _DISTRIBUTE_ONLY.value:
        return _distribute_report(workdir, list(_OVERRIDES.value), _SESSION_REPEATS.value)
    if _OPS_ONLY.value:
        return _ops_report(workdir, overrides)
    if _LITERT_ONLY.value:
        litert = litert_step_times(overrides, _STEP_REPEATS.value, _LITERT_PRESETS.value,
                                   _LITERT_STEPS.value)
        checks = _targets({}, {}, litert, _config(REFERENCE, overrides).model.name)
        with open(os.path.join(workdir, "litert.json"), "w") as handle:
            json.dump({"overrides": overrides, "export_train_ms": litert, "targets": checks},
                      handle, indent=2)
        return _report(workdir, "litert.md", _litert_lines(litert) + [""] + [
            f"{c['target']}: {c['measured']} ({'met' if c['met'] else 'not met'})"
            for c in checks])
    runs = {(preset, seed): _run_preset(preset, seed, workdir, overrides)
            for seed in seeds for preset in presets}
    summary = summarize(runs, presets, seeds)
    steps = {}
    if _STEP_REPEATS.value:
        print("[benchmark] timing train steps side by side", flush=True)
        steps = step_times(overrides, _STEP_REPEATS.value)
    litert = litert_step_times(overrides, max(1, _STEP_REPEATS.value), _LITERT_PRESETS.value,
                               _LITERT_STEPS.value)
    checks = _targets(summary, steps, litert, _config(REFERENCE, overrides).model.name)
    benchmark = {"mode": _MODE.value, "overrides": overrides, "seeds": seeds,
                 "runs": [dict(results, preset=preset, seed=seed)
                          for (preset, seed), results in runs.items()],
                 "summary": summary, "step_ms": steps, "export_train_ms": litert,
                 "targets": checks}
    with open(os.path.join(workdir, "benchmark.json"), "w") as handle:
        json.dump(benchmark, handle, indent=2)
    _plot(summary, os.path.join(workdir, "accuracy_vs_flops.png"))
    lines = [f"Split Fashion-MNIST, {_MODE.value} mode ({', '.join(overrides)}), seeds "
             f"{', '.join(map(str, seeds))}: mean +- sample std over seeds; ratios and the "
             f"class-IL difference paired by seed.", "", _table(summary), ""]
    if steps:
        lines += ["Train step, replay on, same batches, median of interleaved repeats:", "",
                  "| variant | ms / step | vs dense DER++ |", "|---|---:|---:|"]
        dense = steps["dense DER++"]
        lines += [f"| {label} | {ms:.2f} | {100 * (ms / dense - 1):+.1f} % |"
                  for label, ms in steps.items()] + [""]
    lines += _litert_lines(litert) + [""] if litert else []  # --litert_presets= skips it
    lines += ["| target | measured | met |", "|---|---:|:-:|"]
    lines += [f"| {c['target']} | {c['measured']} | {'yes' if c['met'] else 'no'} |"
              for c in checks]
    return _report(workdir, "benchmark.md", lines)


if __name__ == "__main__":
    sys.exit(cli.run_app(main))
