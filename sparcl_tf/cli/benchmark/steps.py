"""Train-step timings side by side: the Keras step of dense and SparCL variants on identical
batches, and the exported train signature in TF and in LiteRT under each setting."""

import os
import time

from sparcl_tf.cli.benchmark.runs import config_for


def step_times(config_file, overrides, repeats):
    """Median ms per train step, replay on, identical host inputs, interleaved across variants;
    gradient masks refresh on the run's cadence (`dgm.refresh_every`)."""
    import tempfile

    import numpy as np

    from sparcl_tf.experiment import Experiment
    from sparcl_tf.sparsity import dgm

    # the paper's presets: DGM at any schedule (the edge defaults' DGM waits for 6 epochs)
    variants = {"dense DER++": "derpp", "SparCL-DER++ 0.90 (masks + DGM)": "paper_sparcl_derpp_90",
                "SparCL-DER++ 0.90 (masks only)": "paper_sparcl_derpp_90_no_dgm"}
    steps, engines, batches = 40, {}, None
    for label, preset in variants.items():
        config = config_for(config_file, preset, overrides)
        config.log.progress = False
        run = Experiment(config, tempfile.mkdtemp(prefix="sparcl_step_"), verbose=0)
        if batches is None:
            batches = _host_batches(run, steps)
        every = config.dgm.refresh_every if dgm.active(config) else 0
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


def litert_step_times(config_file, overrides, repeats, presets=("derpp", "sparcl_derpp_90"),
                      steps=20):
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
        config = config_for(config_file, preset, overrides)
        config.log.progress = False
        run = Experiment(config, tempfile.mkdtemp(prefix="sparcl_litert_"), verbose=0)
        module = training_module(config, run.network, run.kind)
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
        stock = training_module(config, run.network, run.kind)
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

def best_litert_ms(entry):
    """The fastest LiteRT setting's ms of one preset's `litert_step_times` entry."""
    return min(ms for setting, ms in entry["ms"].items() if setting.startswith("LiteRT"))

def litert_lines(litert):
    lines = ["Exported train signature (tools.convert's module), same inputs, median ms per call "
             "(LiteRT / TF: the best LiteRT setting against TF's own kernels on the same step):",
             ""]
    settings = list(next(iter(litert.values()))["ms"])
    lines += ["| preset | " + " | ".join(settings) + " | LiteRT / TF | file (MB) |",
              "|---|" + "---:|" * (len(settings) + 2)]
    for preset, entry in litert.items():
        ms = entry["ms"]
        ratio = best_litert_ms(entry) / ms["TF kernels"]
        lines.append(f"| {preset} | " + " | ".join(f"{ms[k]:.1f}" for k in settings)
                     + f" | {ratio:.2f}x | {entry['file_bytes'] / 1e6:.2f} |")
    presets = list(litert)
    for other in presets[1:]:
        ratio = best_litert_ms(litert[presets[0]]) / best_litert_ms(litert[other])
        lines.append(f"\nLiteRT train step, {presets[0]} / {other}: {ratio:.2f}x")
    return lines
