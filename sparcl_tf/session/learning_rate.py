"""The learning rate of every step, said once: a schedule over each task, as the optimizer is fresh
for each task.

The schedule reads the task's progress before the step, p = (epoch + cursor / L) / E (cursor: the
position in the epoch's L examples trained up to, E epochs per task), so later epochs shortened by
data removal stretch nothing:

  constant: lr
  cosine:   lr * (f + (1 - f) * (1 + cos(pi p)) / 2)     f = final_fraction
  step:     lr * gamma ** k                              k = milestones at or below p

The session plan carries the schedule (`learning_rate`); every host computes the value in float64
and feeds it, rounded to float32, to the train step's `learning_rate` input.
"""

import math

from sparcl_tf.errors import ConfigError

SCHEDULES = ("constant", "cosine", "step")


def plan_entry(optimizer_config):
    """The session plan's `learning_rate` field for `config.optimizer`."""
    o = optimizer_config
    return {"schedule": o.schedule, "base": float(o.learning_rate),
            "final_fraction": float(o.final_fraction),
            "milestones": [float(m) for m in o.milestones], "gamma": float(o.gamma)}


def task_progress(epoch, cursor, length, epochs):
    """Progress through a task before a step at `cursor` of epoch `epoch` (of `length` examples)."""
    return (epoch + cursor / length) / epochs


def value(entry, progress):
    """The learning rate at `progress` of a task under the plan's `entry` (float64)."""
    base = entry["base"]
    if entry["schedule"] == "cosine":
        final = entry["final_fraction"]
        return base * (final + (1.0 - final) * 0.5 * (1.0 + math.cos(math.pi * progress)))
    if entry["schedule"] == "step":
        for milestone in entry["milestones"]:
            if progress >= milestone:
                base *= entry["gamma"]
        return base
    return base


def validate(optimizer_config):
    o = optimizer_config
    if o.schedule not in SCHEDULES:
        raise ConfigError(f"optimizer.schedule={o.schedule!r} is unknown; choose one of "
                          f"{list(SCHEDULES)}")
    if not 0.0 <= o.final_fraction <= 1.0:
        raise ConfigError(f"optimizer.final_fraction={o.final_fraction!r} is invalid: must be in "
                          f"[0, 1]")
    if not 0.0 < o.gamma <= 1.0:
        raise ConfigError(f"optimizer.gamma={o.gamma!r} is invalid: must be in (0, 1]")
    milestones = list(o.milestones)
    if not all(isinstance(m, (int, float)) and not isinstance(m, bool) and 0.0 < m < 1.0
               for m in milestones) or milestones != sorted(milestones):
        raise ConfigError(f"optimizer.milestones={tuple(milestones)!r} is invalid: must be "
                          f"increasing fractions of a task in (0, 1)")
