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

import json
import os

from absl import flags

from sparcl_tf.cli import app as cli
from sparcl_tf.cli.benchmark.distributed import distribute_report
from sparcl_tf.cli.benchmark.ops import ops_report
from sparcl_tf.cli.benchmark.report import plot, table, targets, write_report
from sparcl_tf.cli.benchmark.runs import (MODES, PRESETS, REFERENCE, config_for, parse_seeds,
                                          run_preset, summarize)
from sparcl_tf.cli.benchmark.sessions import sessions_report
from sparcl_tf.cli.benchmark.steps import litert_lines, litert_step_times, step_times

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


def _checked_flags():
    """(presets, seeds, overrides, config file) once every flag and every run's config has been
    checked: a bad one is one line before anything runs or is written."""
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
    seeds = parse_seeds(_SEEDS.value)
    overrides = [f"{k}={v}" for k, v in MODES[_MODE.value].items()] + list(_OVERRIDES.value)
    config_file = cli.config_file(_CONFIG.value)
    for preset in dict.fromkeys([*presets, *_LITERT_PRESETS.value]):
        for seed in seeds:
            cli.run_or_exit(lambda: validate(config_for(config_file, preset,
                                                         [*overrides, f"seed={seed}"])))
    return presets, seeds, overrides, config_file


def main(argv):
    del argv
    presets, seeds, overrides, config_file = _checked_flags()
    workdir = _WORKDIR.value
    from sparcl_tf.paths import usable_folder
    cli.run_or_exit(lambda: usable_folder(workdir))
    if _SESSIONS_ONLY.value:
        return sessions_report(workdir, config_file, _SESSION_REPEATS.value)
    if _DISTRIBUTE_ONLY.value:
        return distribute_report(workdir, config_file, list(_OVERRIDES.value),
                                 _SESSION_REPEATS.value)
    if _OPS_ONLY.value:
        return ops_report(workdir, config_file, overrides, _STEP_REPEATS.value)
    if _LITERT_ONLY.value:
        litert = litert_step_times(config_file, overrides, _STEP_REPEATS.value,
                                   _LITERT_PRESETS.value, _LITERT_STEPS.value)
        checks = targets({}, {}, litert, config_for(config_file, REFERENCE,
                                                    overrides).model.name)
        with open(os.path.join(workdir, "litert.json"), "w") as handle:
            json.dump({"overrides": overrides, "export_train_ms": litert, "targets": checks},
                      handle, indent=2)
        return write_report(workdir, "litert.md", litert_lines(litert) + [""] + [
            f"{c['target']}: {c['measured']} ({'met' if c['met'] else 'not met'})"
            for c in checks])
    runs = {(preset, seed): run_preset(config_file, preset, seed, workdir, overrides)
            for seed in seeds for preset in presets}
    summary = summarize(runs, presets, seeds)
    steps = {}
    if _STEP_REPEATS.value:
        print("[benchmark] timing train steps side by side", flush=True)
        steps = step_times(config_file, overrides, _STEP_REPEATS.value)
    litert = litert_step_times(config_file, overrides, max(1, _STEP_REPEATS.value),
                               _LITERT_PRESETS.value, _LITERT_STEPS.value)
    checks = targets(summary, steps, litert, config_for(config_file, REFERENCE,
                                                        overrides).model.name)
    benchmark = {"mode": _MODE.value, "overrides": overrides, "seeds": seeds,
                 "runs": [dict(results, preset=preset, seed=seed)
                          for (preset, seed), results in runs.items()],
                 "summary": summary, "step_ms": steps, "export_train_ms": litert,
                 "targets": checks}
    with open(os.path.join(workdir, "benchmark.json"), "w") as handle:
        json.dump(benchmark, handle, indent=2)
    plot(summary, os.path.join(workdir, "accuracy_vs_flops.png"))
    lines = [f"Split Fashion-MNIST, {_MODE.value} mode ({', '.join(overrides)}), seeds "
             f"{', '.join(map(str, seeds))}: mean +- sample std over seeds; ratios and the "
             f"class-IL difference paired by seed.", "", table(summary), ""]
    if steps:
        lines += ["Train step, replay on, same batches, median of interleaved repeats:", "",
                  "| variant | ms / step | vs dense DER++ |", "|---|---:|---:|"]
        dense = steps["dense DER++"]
        lines += [f"| {label} | {ms:.2f} | {100 * (ms / dense - 1):+.1f} % |"
                  for label, ms in steps.items()] + [""]
    lines += litert_lines(litert) + [""] if litert else []  # --litert_presets= skips it
    lines += ["| target | measured | met |", "|---|---:|:-:|"]
    lines += [f"| {c['target']} | {c['measured']} | {'yes' if c['met'] else 'no'} |"
              for c in checks]
    return write_report(workdir, "benchmark.md", lines)


run = cli.entry_point(main, __doc__)


if __name__ == "__main__":
    run()
