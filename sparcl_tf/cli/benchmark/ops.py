"""Where the exported train step spends its time: every masked layer's forward + backward at its
shape, as TF's kernels and as builtins-only LiteRT graphs in each formulation."""

import json
import os
import time

from sparcl_tf.cli import app as cli
from sparcl_tf.cli.benchmark.report import write_report
from sparcl_tf.cli.benchmark.runs import config_for


def op_block_times(config_file, overrides, repeats, calls=20):
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

    config = config_for(config_file, "derpp", overrides)
    config.log.progress = False
    network = Experiment(config, tempfile.mkdtemp(prefix="sparcl_ops_"), verbose=0).network
    batch, rng, rows, seen = config.batch_size, np.random.default_rng(0), [], set()
    for layer in masked_layers(network):
        x_shape = (batch,) + tuple(int(d) for d in layer.input.shape[1:])
        kernel_shape = tuple(int(d) for d in layer.kernel.shape)
        if isinstance(layer, MaskedConv2D):
            key = ("conv", x_shape, kernel_shape, layer.strides, layer.padding)
            forms = {"kernel ops": lambda a, b, c=layer: builtin_gradients._conv2d_as_conv(
                         a, b, c.strides, c.padding, None, None),
                     "batch matmuls": lambda a, b, c=layer: builtin_gradients._conv2d_as_matmuls(
                         a, b, c.strides[0], c.padding, None, None)}

            def stock(a, b, c=layer):
                return tf.nn.conv2d(a, b, c.strides, c.padding.upper())
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

def ops_report(workdir, config_file, overrides, repeats):
    rows = op_block_times(config_file, overrides, repeats)
    with open(os.path.join(workdir, "ops.json"), "w") as handle:
        json.dump({"overrides": overrides, "blocks": rows}, handle, indent=2)
    labels = list(rows[0]["ms"])
    lines = [f"Forward + backward of each masked layer ({', '.join(overrides)}), median ms per "
             f"call of {repeats} interleaved repeats; LiteRT graphs builtins-only, "
             f"'kernel ops' = CONV_2D, TRANSPOSE_CONV and the kernel gradient as a CONV_2D (convs) "
             f"or FULLY_CONNECTED (dense), 'batch matmuls' = im2col + BATCH_MATMUL:",
             "", "| block | layers | " + " | ".join(labels) + " |",
             "|---|---:|" + "---:|" * len(labels)]
    lines += [f"| {row['block']} | {row['count']} | "
              + " | ".join(f"{row['ms'][label]:.2f}" for label in labels) + " |" for row in rows]
    totals = {label: sum(row["count"] * row["ms"][label] for row in rows) for label in labels}
    lines.append("| all masked layers, one pass | | " + " | ".join(
        f"{totals[label]:.1f}" for label in labels) + " |")
    return write_report(workdir, "ops.md", lines)
