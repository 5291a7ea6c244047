"""Golden vectors of the session policy: the events Python's planner computes for many task
indices and sizes, which the Kotlin session (`GoldenCheck.kt`) and the board C code
(`test_sparcl_policy.c`) must compute alike.

  python -m tools.policy_golden

writes tflite/session_golden.json (every case) and tflite/micro/session_golden.txt (the
weight-unit cases, as numbers a C test reads with fscanf); tests/test_policy.py checks that both
are current and runs the Kotlin and C twins on them.
The cases cover weight masks under TDM and RigL (past its task horizon too), filter slots, data
removal with and without mask updates, removal in long tasks only, and task sizes that are not
multiples of the batch.
"""

import json
import math
import os
import sys

import numpy as np

from configs.split_fmnist import get_config
from sparcl_tf.data.tasks import TaskSequence
from sparcl_tf.micro.board import policy_lines
from sparcl_tf.session.plan import build_plan
from sparcl_tf.sparsity.kind import FilterSlots, sparsity_kind

TASK_SIZES = (31, 237, 300, 411, 12000)
TASK_INDICES = (0, 1, 4, 7)
_WEIGHT_SHAPES = {"conv2": (3, 3, 32, 16), "conv3": (3, 3, 32, 64), "conv4": (3, 3, 64, 64),
                  "fc1": (1568, 256), "odd": (37, 1)}  # odd: a layer ERK makes dense
_WEIGHT_LAYERS = [(name, math.prod(shape)) for name, shape in _WEIGHT_SHAPES.items()]
_SLOT_LAYERS = [("conv2", 34), ("conv3", 66), ("conv4", 66), ("fc1", 128)]
_FULL_FILTERS = {"conv2": 64, "conv3": 128, "conv4": 128, "fc1": 256}


def _cases():
    """(name, config, layers, full_filters, horizon) of each case."""
    cases = []
    for name, preset, overrides, layers, full, horizon in (
            ("weights_tdm", "paper_sparcl_derpp_90", {}, _WEIGHT_LAYERS, None, 5),
            # the edge defaults: removal only in tasks of 500 steps or more (12,000 examples),
            # ERK targets over the fully connected layers (odd dense, fc1 sparser)
            ("weights_tdm_edge", "sparcl_derpp_90", {}, _WEIGHT_LAYERS, None, 5),
            ("weights_tdm_3_epochs_7_updates", "paper_sparcl_derpp_95",
             {"epochs_per_task": 3, "sparsity.updates_per_task": 7, "ddr.stages": 3,
              "seed": 12345}, _WEIGHT_LAYERS, None, 5),
            ("weights_rigl", "rigl_derpp_90", {"epochs_per_task": 2}, _WEIGHT_LAYERS, None, 5),
            ("weights_rigl_horizon_2", "rigl_derpp_90", {"epochs_per_task": 1, "seed": 7},
             _WEIGHT_LAYERS, None, 2),
            ("filter_slots", "paper_sparcl_derpp_s90", {}, _SLOT_LAYERS, _FULL_FILTERS, 5),
            ("removal_only", "paper_sparcl_derpp_90_no_tdm", {"epochs_per_task": 5},
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
        kind = FilterSlots(config, full_filters) if full_filters else sparsity_kind(
            config, shapes=_WEIGHT_SHAPES)
        plan = build_plan(config, data, layers, kind, replay_draws=2,
                          horizon_tasks=horizon)
        plan_json = {key: value for key, value in plan.to_json().items()
                     if key not in ("run_config", "model")}
        cases.append({"name": name, "plan": plan_json, "tasks": [
            {"task": task, "examples": size,
             "events": [_event_json(e) for e in plan.task_events(task, size)]}
            for task in TASK_INDICES for size in TASK_SIZES]})
    return {"about": "tools/policy_golden.py: events of SessionPlan.task_events",
            "cases": cases}


def golden_text(vectors):
    """The weight-unit cases of `vectors` as lines of numbers (doubles in shortest round-trip
    form, which strtod reads back exactly): per case `case NAME` and the plan's `policy`,
    `units` and `targets` lines (`micro.board.policy_lines`); per task `task index examples
    events`; per event `event epoch numerator denominator update mask seed stage target
    prune... grow...`."""
    lines = []
    for case in vectors["cases"]:
        plan = case["plan"]
        if plan["unit"] != "weights":
            continue
        lines += [f"case {case['name']}"] + policy_lines(plan)
        for task in case["tasks"]:
            lines.append(f"task {task['task']} {task['examples']} {len(task['events'])}")
            for e in task["events"]:
                counts = (e["prune_to"] + e["grow_to"]) if e["mask_update"] else []
                lines.append("event " + " ".join(str(int(v)) for v in (
                    e["epoch"], e["numerator"], e["denominator"], e["update_index"],
                    e["mask_update"], e["seed"], e["removal_stage"], e["removal_target"],
                    *counts)))
    return "\n".join(lines) + "\n"


JSON_PATH = os.path.join("tflite", "session_golden.json")
TEXT_PATH = os.path.join("tflite", "micro", "session_golden.txt")


def write(root="."):
    vectors = golden_vectors()
    with open(os.path.join(root, JSON_PATH), "w") as handle:
        json.dump(vectors, handle, separators=(",", ":"))
        handle.write("\n")
    with open(os.path.join(root, TEXT_PATH), "w") as handle:
        handle.write(golden_text(vectors))


if __name__ == "__main__":
    write(sys.argv[1] if len(sys.argv) > 1 else ".")
