"""The preset runs a benchmark compares and their summary over seeds: each run trains in its own
process (`tools.train`), and accuracy, forgetting and cost are paired against DER++ seed by seed."""

import functools
import importlib.util
import json
import os
import subprocess
import sys
import time

# first: it keeps TensorFlow's start-up lines off the binary's stderr
from sparcl_tf.cli import app as cli
from sparcl_tf.reporting import metrics


PRESETS = ("finetune", "derpp", "sparcl_derpp", "sparcl_derpp_90", "sparcl_derpp_95",
           "paper_sparcl_derpp_90", "static_derpp_90", "rigl_derpp_90",
           "paper_sparcl_derpp_90_no_tdm", "paper_sparcl_derpp_90_no_ddr",
           "paper_sparcl_derpp_90_no_dgm", "sparcl_derpp_s75", "sparcl_derpp_s90",
           "sparcl_derpp_s95")

MODES = {
    "quick": {"data.train_per_task": 2000, "data.test_per_task": 1000, "epochs_per_task": 3},
    "full": {"data.train_per_task": 0, "data.test_per_task": 0, "epochs_per_task": 5},
    "config": {},  # the config file's own sizes and epochs (configs/split_fmnist_paper.py)
}

REFERENCE = "derpp"

def run_preset(config_file, preset, seed, workdir, overrides):
    """Trains `preset` at `seed` in a child process; returns its results.json with the child's
    peak resident MiB (`peak_rss_mib`) and the share of training data removed added."""
    run_dir = os.path.join(workdir, preset, f"seed_{seed}")
    memory_file = os.path.join(run_dir, "peak_rss.json")
    results_file = os.path.join(run_dir, "results.json")
    if not (os.path.exists(results_file) and os.path.exists(memory_file)):
        command = [sys.executable, "-m", "sparcl_tf.cli.train", f"--config={config_file}:{preset}",
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
    # The same-draw dense count: the ledger charges a dense model for the examples this run
    # processed, so a run with fewer replay draws is not credited for them twice.
    results["same_draw_flops_ratio"] = (results["dense_training_flops"]
                                        / results["training_flops"])
    results["new_task_class_il"] = metrics.worst_learning_accuracy(results["class_il_matrix"])
    print(f"[benchmark] {preset} seed {seed}: class-IL {results['class_il']:.2f}", flush=True)
    return results

def parse_seeds(values):
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
                  "peak_rss_mib", "removed_fraction", "same_draw_flops_ratio",
                  "new_task_class_il")

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

@functools.lru_cache(maxsize=None)
def _config_module(path):
    """The config file at `path`, executed once however many (preset, seed) configs it gives."""
    from sparcl_tf.errors import ConfigError
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
    return module


def config_for(config_file, preset, overrides):
    """--config_file's config for `preset` with `overrides` (FIELD=VALUE texts) applied."""
    from sparcl_tf.config import apply_text_override
    module = _config_module(config_file)
    config = module.get_config(preset)
    for override in overrides:
        apply_text_override(config, override)
    return config
