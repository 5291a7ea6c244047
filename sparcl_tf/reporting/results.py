"""The parts of results.json every runner writes the same way (Keras trainer, LiteRT session,
microcontroller run), and writing it with its plots."""

import dataclasses
import json
import os

import numpy as np

from sparcl_tf.reporting import metrics


@dataclasses.dataclass
class RunCounters:
    """What every runner counts and checkpoints, and `cost` / `accuracy` read."""
    task: int = 0                     # tasks finished
    global_step: int = 0
    examples_presented: int = 0
    examples_removed: int = 0
    dense_flops_without_removal: float = 0.0
    train_time_s: float = 0.0
    first_step_s: float = 0.0         # the first step of each process (graph tracing), summed
    first_steps: int = 0
    wall_clock_s: float = 0.0
    class_il_matrix: list = dataclasses.field(default_factory=list)
    task_il_matrix: list = dataclasses.field(default_factory=list)


def identity(config, method, tasks):
    """What run this was."""
    return {"preset": config.preset, "method": method.name, "dataset": config.data.source,
            "model": config.model.name, "seed": config.seed, "num_tasks": len(tasks),
            "epochs_per_task": config.epochs_per_task, "class_order": tasks.class_order}


def _square(matrix):
    """Rows padded with None (not evaluated) to the number of tasks: a learner's rows grow as
    its tasks arrive."""
    width = max((len(row) for row in matrix), default=0)
    return [list(row) + [None] * (width - len(row)) for row in matrix]


def accuracy(class_il_matrix, task_il_matrix):
    """Final averages, the matrices and their summaries (rows: after task t, in %)."""
    class_il_matrix, task_il_matrix = _square(class_il_matrix), _square(task_il_matrix)
    class_summary = metrics.summarize(np.array(class_il_matrix, dtype=float))
    task_summary = metrics.summarize(np.array(task_il_matrix, dtype=float))
    class_summary, task_summary = ({key: None if np.isnan(value) else value
                                    for key, value in summary.items()}
                                   for summary in (class_summary, task_summary))
    return {"class_il": class_summary["average"], "task_il": task_summary["average"],
            "class_il_matrix": class_il_matrix, "task_il_matrix": task_il_matrix,
            "forgetting": class_summary["forgetting"],
            "task_il_forgetting": task_summary["forgetting"],
            "backward_transfer": class_summary["backward_transfer"],
            "learning_accuracy": class_summary["learning_accuracy"]}


# Keys of results.json that measure the machine, not the run: a resumed run matches an
# uninterrupted one on every other key.
MACHINE_DEPENDENT = ("wall_clock_s", "train_time_s", "train_step_ms", "first_step_s",
                     "peak_rss_mib")


def cost(ledger, progress):
    """FLOPs, time and examples of a run whose `progress` counts steps and examples."""
    return {"training_flops": float(ledger.training_flops.numpy()),
            "dense_training_flops": progress.dense_flops_without_removal,
            "forward_flops_per_example": ledger.forward_flops(),
            "wall_clock_s": progress.wall_clock_s, "train_time_s": progress.train_time_s,
            "steps": progress.global_step,
            # A process's first step traces the graph: its time is reported on its own.
            "train_step_ms": 1000.0 * (progress.train_time_s - progress.first_step_s) / max(
                progress.global_step - progress.first_steps, 1),
            "first_step_s": progress.first_step_s,
            "examples_presented": progress.examples_presented,
            "examples_removed": progress.examples_removed,
            "peak_rss_mib": _peak_rss_mib()}


def _peak_rss_mib():
    """This process's peak resident memory so far (Linux reports KiB)."""
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def write(workdir, results):
    """results.json (atomically) and the accuracy plots."""
    path = os.path.join(workdir, "results.json")
    with open(path + ".tmp", "w") as handle:
        json.dump(results, handle, indent=2)
    os.replace(path + ".tmp", path)
    from sparcl_tf.reporting import plots  # only runs that write results draw
    plots.plot_accuracy_matrices(results, os.path.join(workdir, "accuracy_matrix.png"))
    plots.plot_task_curves(results, os.path.join(workdir, "task_accuracy.png"))
