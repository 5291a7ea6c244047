"""One short run on one device, under MirroredStrategy and under MultiWorkerMirroredStrategy:
step time, wall-clock and how far each run's final weights and masks are from one device's."""

import json
import os
import shutil
import subprocess
import sys
import time

from sparcl_tf.cli import app as cli
from sparcl_tf.cli.benchmark.report import write_report


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

def distribute_times(workdir, config_file, overrides, repeats):
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
            command = [sys.executable, "-m", "sparcl_tf.cli.train",
                       f"--config={config_file}:sparcl_derpp_90", f"--workdir={run_dir}",
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

def distribute_report(workdir, config_file, overrides, repeats):
    variants = distribute_times(workdir, config_file, overrides, repeats)
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
    return write_report(workdir, "distribute.md", lines)
