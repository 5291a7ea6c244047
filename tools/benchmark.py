r"""Runs presets side by side on the same data, seed and epochs, and reports accuracy against cost.

  python -m tools.benchmark --mode=quick --workdir=runs/benchmark_quick
  python -m tools.benchmark --mode=full --workdir=runs/benchmark_full

Every preset trains in its own process (`tools.train`, so peak resident memory is that run's alone)
into WORKDIR/PRESET; a rerun resumes or reuses finished runs. Then the train step of dense DER++,
SparCL-DER++ 0.90 (masks + DGM) and the same with masks only is timed side by side on identical
batches (interleaved repeats, median), which is the overhead figure. Writes WORKDIR/benchmark.md,
benchmark.json and accuracy_vs_flops.png.

  python -m tools.benchmark --sessions_only --workdir=runs/benchmark_hosts

compares the two session hosts instead: one converted model's session run by the Python LiteRT
host and by the Kotlin session on the JVM (tflite/android), same steps, side by side.

Modes (Split Fashion-MNIST, edge CNN, seed 0):
  quick: 2000 training / 1000 test images per task, 3 epochs per task (about 15 min on 2 cores)
  full:  all 12000 / 2000 images per task, 5 epochs per task (several hours on 2 cores)
"""

import json
import os
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
}
REFERENCE = "derpp"

_MODE = flags.DEFINE_enum("mode", "quick", list(MODES), "Benchmark size.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Benchmark folder.", required=True)
_CONFIG = flags.DEFINE_string("config_file", "configs/split_fmnist.py", "Config file of the runs.")
_PRESETS = flags.DEFINE_list("presets", list(PRESETS), "Presets to run (must include derpp).")
_OVERRIDES = flags.DEFINE_multi_string(
    "override", [], "Extra --config.FIELD=VALUE for every run, e.g. model.name=resnet18.")
_STEP_REPEATS = flags.DEFINE_integer("step_repeats", 7, "Interleaved repeats of the step timing.")
_LITERT_PRESETS = flags.DEFINE_list("litert_presets", ["derpp", "sparcl_derpp_90"],
                                    "Presets whose exported train signature is timed in TF and "
                                    "LiteRT.")
_LITERT_STEPS = flags.DEFINE_integer("litert_steps", 20, "Calls per repeat of that timing.")
_SESSIONS_ONLY = flags.DEFINE_bool(
    "sessions_only", False, "Only compare the two session hosts (Python LiteRT, Kotlin on the "
    "JVM) on one converted model; writes WORKDIR/sessions.md and sessions.json.")
_SESSION_REPEATS = flags.DEFINE_integer("session_repeats", 3, "Interleaved repeats of each host.")

# The session the host comparison runs (the Kotlin parity test's: tests/test_android_session.py).
SESSION_SIZE = {"data.num_tasks": 3, "data.train_per_task": 300, "data.test_per_task": 100,
                "epochs_per_task": 1}


def _run_preset(preset, workdir, overrides):
    """Trains `preset` in a child process; returns (results, peak resident MiB of that child)."""
    run_dir = os.path.join(workdir, preset)
    memory_file = os.path.join(run_dir, "peak_rss.json")
    results_file = os.path.join(run_dir, "results.json")
    if os.path.exists(results_file) and os.path.exists(memory_file):
        with open(results_file) as handle, open(memory_file) as memory:
            return json.load(handle), json.load(memory)["peak_rss_mib"]
    command = [sys.executable, "-m", "tools.train", f"--config={_CONFIG.value}:{preset}",
               f"--workdir={run_dir}", "--quiet"] + [f"--config.{o}" for o in overrides]
    print(f"[benchmark] {preset}: {' '.join(command[2:])}", flush=True)
    started = time.perf_counter()
    child = subprocess.Popen(command)
    _, status, usage = os.wait4(child.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        cli.fail(f"preset {preset} failed (exit {os.waitstatus_to_exitcode(status)}); its output "
                 f"is above")
    peak_mib = usage.ru_maxrss / 1024.0  # Linux reports KiB
    with open(memory_file, "w") as handle:
        json.dump({"peak_rss_mib": peak_mib}, handle)
    with open(results_file) as handle:
        results = json.load(handle)
    print(f"[benchmark] {preset}: class-IL {results['class_il']:.2f} in "
          f"{time.perf_counter() - started:.0f} s", flush=True)
    return results, peak_mib


def _config(preset, overrides):
    import importlib.util
    spec = importlib.util.spec_from_file_location("benchmark_config", _CONFIG.value)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config(preset)
    for override in overrides:
        path, _, value = override.partition("=")
        *parents, leaf = path.split(".")
        node = config
        for key in parents:
            node = node[key]
        node[leaf] = type(node[leaf])(value) if not isinstance(node[leaf], bool) else (
            value.lower() in ("1", "true"))
    return config


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
    class_mask = np.isin(np.arange(plan.num_classes), plan.tasks[1]["classes"]).astype(np.float32)
    rng = np.random.default_rng(0)
    batches = []
    for step in range(min(steps, len(x) // batch)):
        rows = slice(step * batch, (step + 1) * batch)
        inputs = dict(images=stream.prepare(x[rows]), labels=y[rows].astype(np.int32),
                      class_mask=class_mask)
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


def litert_step_times(overrides, repeats, presets=("derpp", "sparcl_derpp_90"), steps=20):
    """Median ms per call of the exported `train` signature: the same module as a TF graph
    (tf.function) and as the .tflite in LiteRT, identical inputs (replay on, no DGM refresh),
    interleaved repeats."""
    import tempfile

    import numpy as np
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter

    from sparcl_tf.experiment import Experiment
    from sparcl_tf.export import convert, training_module

    callers = {}
    for preset in presets:
        config = _config(preset, overrides)
        run = Experiment(config, tempfile.mkdtemp(prefix="sparcl_litert_"), verbose=0)
        module = training_module(config, run.network)
        lite = Interpreter(model_content=convert(module, tempfile.mkdtemp()))
        runner = lite.get_signature_runner("train")
        rng = np.random.default_rng(0)
        inputs = {}
        for name, detail in runner.get_input_details().items():
            shape, dtype = tuple(detail["shape"]), detail["dtype"]
            inputs[name] = (rng.integers(0, 2, shape) if dtype == np.int32
                            else rng.normal(size=shape)).astype(dtype)
        inputs["class_mask"] = np.isin(np.arange(len(inputs["class_mask"])), [2, 3]).astype(
            np.float32)
        inputs["replay_weight"] = np.float32(1.0)
        if "refresh_gradient_masks" in inputs:
            inputs["refresh_gradient_masks"] = np.float32(0.0)
        arguments = [tf.constant(inputs[spec.name]) for spec in module.train.input_signature]
        callers[f"{preset} TF graph"] = lambda m=module, a=arguments: m.train(*a)
        callers[f"{preset} LiteRT"] = lambda r=runner, i=inputs: r(**i)
        for call in (callers[f"{preset} TF graph"], callers[f"{preset} LiteRT"]):
            for _ in range(3):  # trace / allocate, warm up
                call()
    timings = {label: [] for label in callers}
    for _ in range(repeats):
        for label, call in callers.items():
            started = time.perf_counter()
            for _ in range(steps):
                call()
            timings[label].append(1000.0 * (time.perf_counter() - started) / steps)
    return {label: float(np.median(values)) for label, values in timings.items()}


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
            subprocess.run(command(state), check=True, capture_output=True)
            wall = time.perf_counter() - started
            with open(os.path.join(state, "results.json")) as handle:
                results = json.load(handle)
            runs[label].append((results["train_step_ms"], wall, results["steps"],
                                results["class_il"]))
    return {label: {"train_step_ms": statistics.median(r[0] for r in measured),
                    "wall_s": statistics.median(r[1] for r in measured),
                    "steps": measured[0][2], "class_il": measured[0][3]}
            for label, measured in runs.items()}


def _sessions_report(workdir):
    hosts = host_session_times(workdir, _SESSION_REPEATS.value)
    with open(os.path.join(workdir, "sessions.json"), "w") as handle:
        json.dump({"session": SESSION_SIZE, "hosts": hosts}, handle, indent=2)
    python = hosts["Python LiteRT session"]
    size = ", ".join(f"{k}={v}" for k, v in SESSION_SIZE.items())
    lines = [f"SparCL-DER++ 0.90 on Split Fashion-MNIST ({size}), one converted model, median "
             f"of {_SESSION_REPEATS.value} interleaved runs per host:", "",
             "| host | steps | class-IL | train call (ms) | vs Python | process wall-clock (s) |",
             "|---|---:|---:|---:|---:|---:|"]
    lines += [f"| {label} | {h['steps']} | {h['class_il']:.2f} | {h['train_step_ms']:.1f} | "
              f"{h['train_step_ms'] / python['train_step_ms']:.2f}x | {h['wall_s']:.1f} |"
              for label, h in hosts.items()]
    report = "\n".join(lines)
    with open(os.path.join(workdir, "sessions.md"), "w") as handle:
        handle.write(report + "\n")
    print(report)
    return 0


def _table(rows, reference):
    lines = ["| preset | class-IL | task-IL | forgetting | training FLOPs | FLOPs vs DER++ | "
             "wall-clock (s) | wall-clock vs DER++ | peak RSS (MiB) | data removed |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        lines.append(
            f"| {row['preset']} | {row['class_il']:.2f} | {row['task_il']:.2f} | "
            f"{row['forgetting']:.2f} | {row['training_flops']:.3g} | "
            f"{reference['training_flops'] / row['training_flops']:.1f}x fewer | "
            f"{row['wall_clock_s']:.0f} | "
            f"{reference['wall_clock_s'] / row['wall_clock_s']:.2f}x faster | "
            f"{row['peak_rss_mib']:.0f} | {100 * row['removed_fraction']:.0f} % |")
    return "\n".join(lines)


def _targets(by_preset, steps):
    """The SparCL paper's claims, checked against this benchmark's numbers."""
    reference = by_preset[REFERENCE]
    checks = []

    def check(name, measured, passed):
        checks.append({"target": name, "measured": measured, "met": bool(passed)})

    if "sparcl_derpp" in by_preset:
        delta = by_preset["sparcl_derpp"]["class_il"] - reference["class_il"]
        check("SparCL-DER++ 0.75 class-IL >= DER++ + 1 point", f"{delta:+.2f} points", delta >= 1)
    if "sparcl_derpp_90" in by_preset:
        delta = by_preset["sparcl_derpp_90"]["class_il"] - reference["class_il"]
        check("SparCL-DER++ 0.90 class-IL >= DER++ - 0.5 point", f"{delta:+.2f} points",
              delta >= -0.5)
    if "sparcl_derpp_95" in by_preset:
        ratio = reference["training_flops"] / by_preset["sparcl_derpp_95"]["training_flops"]
        check("SparCL-DER++ 0.95 training FLOPs >= 25x below DER++", f"{ratio:.1f}x",
              ratio >= 25)
    if "sparcl_derpp_s90" in by_preset:
        ratio = reference["wall_clock_s"] / by_preset["sparcl_derpp_s90"]["wall_clock_s"]
        check("structured SparCL-DER++ 0.90 whole run >= 2.3x faster than DER++ (wall-clock)",
              f"{ratio:.2f}x", ratio >= 2.3)
    if steps:
        dense = steps["dense DER++"]
        overhead = 100.0 * (steps["SparCL-DER++ 0.90 (masks + DGM)"] / dense - 1)
        check("train-step overhead of masks + DGM <= 10 %", f"{overhead:+.1f} %", overhead <= 10)
    return checks


def _plot(rows, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    figure, axis = plt.subplots(figsize=(9, 5), constrained_layout=True)
    markers = "osD^v<>pPX*h"
    for index, row in enumerate(rows):
        axis.scatter(row["training_flops"], row["class_il"], s=55, marker=markers[index % 12],
                     label=f"{row['preset']} ({row['class_il']:.1f} %)")
    axis.set_xscale("log")
    axis.set(xlabel="training FLOPs (multiply-accumulates, log scale)",
             ylabel="class-IL accuracy (%)", title="Split Fashion-MNIST: accuracy vs training cost")
    axis.grid(True, which="both", alpha=0.3)
    axis.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    figure.savefig(path, dpi=120)
    plt.close(figure)


def main(argv):
    del argv
    presets = _PRESETS.value
    if REFERENCE not in presets:
        cli.fail(f"--presets must include {REFERENCE} (the reference of every ratio)")
    overrides = [f"{k}={v}" for k, v in MODES[_MODE.value].items()] + list(_OVERRIDES.value)
    workdir = _WORKDIR.value
    os.makedirs(workdir, exist_ok=True)
    if _SESSIONS_ONLY.value:
        return _sessions_report(workdir)
    rows = []
    for preset in presets:
        results, peak = _run_preset(preset, workdir, overrides)
        rows.append(dict(results, preset=preset, peak_rss_mib=peak,
                         removed_fraction=results["examples_removed"] / results[
                             "training_examples"]))
    by_preset = {row["preset"]: row for row in rows}
    print("[benchmark] timing train steps side by side", flush=True)
    steps = step_times(overrides, _STEP_REPEATS.value)
    litert = litert_step_times(overrides, _STEP_REPEATS.value, _LITERT_PRESETS.value,
                               _LITERT_STEPS.value)
    checks = _targets(by_preset, steps)
    summary = {"mode": _MODE.value, "overrides": overrides, "runs": rows,
               "step_ms": steps, "export_train_ms": litert, "targets": checks}
    with open(os.path.join(workdir, "benchmark.json"), "w") as handle:
        json.dump(summary, handle, indent=2)
    _plot(rows, os.path.join(workdir, "accuracy_vs_flops.png"))
    lines = [f"Split Fashion-MNIST, {_MODE.value} mode ({', '.join(overrides)}), seed 0.",
             "", _table(rows, by_preset[REFERENCE]), "",
             "Train step, replay on, same batches, median of interleaved repeats:", "",
             "| variant | ms / step | vs dense DER++ |", "|---|---:|---:|"]
    dense = steps["dense DER++"]
    lines += [f"| {label} | {ms:.2f} | {100 * (ms / dense - 1):+.1f} % |"
              for label, ms in steps.items()]
    lines += ["", "Exported train signature (tools.convert's module), same inputs, median ms per "
              "call:", "", "| preset | TF graph | LiteRT | LiteRT / TF |", "|---|---:|---:|---:|"]
    for preset in dict.fromkeys(label.rsplit(" ", 2)[0] for label in litert):
        graph, lite = litert[f"{preset} TF graph"], litert[f"{preset} LiteRT"]
        lines.append(f"| {preset} | {graph:.1f} | {lite:.1f} | {lite / graph:.2f}x |")
    presets = list(dict.fromkeys(label.rsplit(" ", 2)[0] for label in litert))
    for other in presets[1:]:
        lines.append(f"\nLiteRT train step, {presets[0]} / {other}: "
                     f"{litert[f'{presets[0]} LiteRT'] / litert[f'{other} LiteRT']:.2f}x")
    lines += ["", "| target (paper) | measured | met |", "|---|---:|:-:|"]
    lines += [f"| {c['target']} | {c['measured']} | {'yes' if c['met'] else 'no'} |"
              for c in checks]
    report = "\n".join(lines)
    with open(os.path.join(workdir, "benchmark.md"), "w") as handle:
        handle.write(report + "\n")
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(cli.run_app(main))
