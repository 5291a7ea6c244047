"""Golden vectors of the session policy: the events Python's planner computes for many task
indices and sizes, which the Kotlin session (`GoldenCheck.kt`) and the board C code
(`test_sparcl_micro.c`) must compute alike.

  python -m tools.policy_golden tflite/session_golden.json

writes the file; tests/test_policy_golden.py checks that it is current and runs both twins on it.
The cases cover weight masks under TDM and RigL (past its task horizon too), filter slots, data
removal with and without mask updates, and task sizes that are not multiples of the batch.
"""

import json
import sys

import numpy as np

from configs.split_fmnist import get_config
from sparcl_tf.data.tasks import TaskSequence
from sparcl_tf.session.plan import build_plan

TASK_SIZES = (31, 237, 300, 411, 12000)
TASK_INDICES = (0, 1, 4, 7)
_WEIGHT_LAYERS = [("conv2", 4608), ("conv3", 18432), ("conv4", 36864), ("fc1", 401408),
                  ("odd", 37)]
_SLOT_LAYERS = [("conv2", 34), ("conv3", 66), ("conv4", 66), ("fc1", 128)]
_FULL_FILTERS = {"conv2": 64, "conv3": 128, "conv4": 128, "fc1": 256}


def _cases():
    """(name, config, layers, full_filters, horizon) of each case."""
    cases = []
    for name, preset, overrides, layers, full, horizon in (
            ("weights_tdm", "sparcl_derpp_90", {}, _WEIGHT_LAYERS, None, 5),
            ("weights_tdm_3_epochs_7_updates", "sparcl_derpp_95",
             {"epochs_per_task": 3, "sparsity.updates_per_task": 7, "ddr.stages": 3,
              "seed": 12345}, _WEIGHT_LAYERS, None, 5),
            ("weights_rigl", "rigl_derpp_90", {"epochs_per_task": 2}, _WEIGHT_LAYERS, None, 5),
            ("weights_rigl_horizon_2", "rigl_derpp_90", {"epochs_per_task": 1, "seed": 7},
             _WEIGHT_LAYERS, None, 2),
            ("filter_slots", "sparcl_derpp_s90", {}, _SLOT_LAYERS, _FULL_FILTERS, 5),
            ("removal_only", "sparcl_derpp_90_no_tdm", {"epochs_per_task": 5},
             _WEIGHT_LAYERS, None, 5)):
        config = get_config(preset)
        for key, value in overrides.items():
            section, _, field = key.rpartition(".")
            (config[section] if section else config)[field] = value
        cases.append((name, config, layers, full, horizon))
    return cases


def _event_json(event):
    return {"epoch": event.epoch, "numerator": event.numerator,
            "denominator": event.denominator, "update_index": event.update_index,
            "mask_update": event.mask_update, "seed": event.seed,
            "prune_to": list(event.prune_to), "grow_to": list(event.grow_to),
            "removal_stage": event.removal_stage, "removal_target": event.removal_target}


def golden_vectors():
    """The golden file's content."""
    data = TaskSequence([], 10, (28, 28, 1), list(range(10)), np.array([0.286], np.float32),
                        np.array([0.353], np.float32), 0)
    cases = []
    for name, config, layers, full_filters, horizon in _cases():
        plan = build_plan(config, data, layers, full_filters, replay_draws=2,
                          horizon_tasks=horizon)
        plan_json = {key: value for key, value in plan.to_json().items()
                     if key not in ("run_config", "model")}
        cases.append({"name": name, "plan": plan_json, "tasks": [
            {"task": task, "examples": size,
             "events": [_event_json(e) for e in plan.task_events(task, size)]}
            for task in TASK_INDICES for size in TASK_SIZES]})
    return {"about": "tools/policy_golden.py: events of SessionPlan.task_events",
            "cases": cases}


def write(path):
    with open(path, "w") as handle:
        json.dump(golden_vectors(), handle, separators=(",", ":"))
        handle.write("\n")


if __name__ == "__main__":
    write(sys.argv[1])
