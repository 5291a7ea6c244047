"""A micro session as the board's C task loop reads it (`tflite/micro/board_session.c`).

`write_board_session` writes, before the session trains, everything the C loop
(`tflite/micro/sparcl_session.c`) needs to learn the same stream as the Python micro engine: the
head's shapes and initial state, the session plan's policy, learning-rate schedule, replay shape,
DGM cadence and mask-update rule, and each task's int8 features, labels, ids and classes with
its test set. Lines of numbers (floats in shortest round-trip form, which strtod reads back
exactly):

  sparcl_board_session 3
  head F H C scale zero_point gradient_keep w1_rate_scale
  policy seed epochs batch updates rule stages fraction min_task_steps open swap drop end
         horizon layers
  units F*H
  targets target
  rate schedule base final_fraction gamma milestones m1 ...
  session replay_rows draws replay_from_task buffer_capacity refresh_every lambda grow
  term kind weight                       (one per replay draw; kind 0 MSE, 1 CE)
  w1 ... / b1 ... / w2 ... / b2 ... / mask ... / gradient_mask ...
  tasks T
  task train_examples test_examples num_classes   (per task, then:)
  classes c ...
  train id label f ...                   (per training example)
  test label f ...                       (per test example)
"""

import numpy as np

from sparcl_tf.errors import ConfigError

FORMAT = "sparcl_board_session 3"
RULES = {"none": 0, "tdm": 1, "rigl": 2}  # sparcl_policy.h's SPARCL_RULE_*
RATE_SCHEDULES = {"constant": 0, "cosine": 1, "step": 2}  # sparcl_session.h's SPARCL_LR_*
TERM_KINDS = {"mse": 0, "ce": 1}  # sparcl_micro.h's SPARCL_TERM_*
MAX_MILESTONES = 8  # SPARCL_MAX_MILESTONES


def policy_lines(plan):
    """The `policy`, `units` and `targets` lines of a weight-unit plan (its JSON form), as
    sparcl_policy.h's `sparcl_policy` holds them."""
    entry = plan["schedule"]
    tdm, rigl = entry.get("tdm", {}), entry.get("rigl", {})
    units = plan["layer_units"]
    return [" ".join(str(v) for v in (
        "policy", plan["seed"], plan["epochs_per_task"], plan["batch_size"],
        entry["updates_per_task"], RULES[entry["mask_rule"]], entry["removal"]["stages"],
        repr(float(entry["removal"]["fraction"])), entry["removal"]["min_task_steps"],
        repr(float(tdm.get("open_fraction", 0))),
        repr(float(tdm.get("swap_fraction", 0))), repr(float(rigl.get("drop_fraction", 0))),
        repr(float(rigl.get("end_fraction", 0))), rigl.get("horizon_tasks", 1), len(units))),
        " ".join(["units"] + [str(u) for u in units]),
        " ".join(["targets"] + [repr(float(t)) for t in entry.get(
            "layer_targets", [0.0] * len(units))])]


def _numbers(values):
    values = np.asarray(values).ravel()
    if np.issubdtype(values.dtype, np.floating):
        return " ".join(repr(float(np.float32(v))) for v in values)
    return " ".join(str(int(v)) for v in values)


def write_board_session(path, session):
    """Writes `session` (a `micro.session.MicroSession` not yet run) for the board's C loop."""
    plan, engine, head = session.session.plan, session.engine, session.head
    rate = plan.learning_rate
    if len(rate["milestones"]) > MAX_MILESTONES:
        raise ConfigError(f"optimizer.milestones has {len(rate['milestones'])} entries; the "
                          f"board's loop holds at most {MAX_MILESTONES}")
    grow = 1 if engine.rule == "rigl" or engine.grow == "gradient" else 0
    importance = 0.0 if engine.rule == "rigl" else engine.importance_lambda
    lines = [FORMAT, f"head {head.features} {head.hidden} {head.classes} "
                     f"{repr(float(np.float32(head.scale)))} {head.zero_point} "
                     f"{head.gradient_keep} {repr(float(np.float32(head.w1_rate_scale)))}"]
    lines += policy_lines(plan.to_json())
    lines.append(" ".join(str(v) for v in (
        "rate", RATE_SCHEDULES[rate["schedule"]], repr(rate["base"]),
        repr(rate["final_fraction"]), repr(rate["gamma"]), len(rate["milestones"]),
        *(repr(m) for m in rate["milestones"]))))
    replay = plan.replay
    lines.append(" ".join(str(v) for v in (
        "session", replay["batch_size"], replay["draws"], replay["from_task"],
        replay["buffer_size"], plan.dgm_refresh_every, repr(float(np.float32(importance))),
        grow)))
    lines += [f"term {TERM_KINDS[kind]} {repr(float(np.float32(weight)))}"
              for kind, weight in head.replay_terms[:replay["draws"]]]
    for name in ("w1", "b1", "w2", "b2"):
        lines.append(f"{name} {_numbers(engine.params[name])}")
    lines.append(f"mask {_numbers(engine.mask.astype(np.int32))}")
    lines.append(f"gradient_mask {_numbers(engine.gradient_mask.astype(np.int32))}")
    tasks, features = session.tasks.tasks, session.features
    lines.append(f"tasks {len(tasks)}")
    for task in tasks:
        train, test = features.train[task.index], features.test[task.index]
        lines.append(f"task {len(train)} {len(test)} {len(task.classes)}")
        lines.append(f"classes {_numbers(task.classes)}")
        lines += [f"train {int(i)} {int(y)} {_numbers(x)}"
                  for i, y, x in zip(task.ids_train, task.y_train, train)]
        lines += [f"test {int(y)} {_numbers(x)}" for y, x in zip(task.y_test, test)]
    with open(path, "w") as handle:
        handle.write("\n".join(lines) + "\n")
