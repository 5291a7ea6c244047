"""Dynamic data removal: drop the current task's examples that are never forgotten.

At each removal stage the examples presented since the previous stage are ranked by forgetting
events in that window (correct at one presentation, wrong at the next); an example never classified
correctly in the window counts as the maximum, so the hardest are kept. The official code breaks the
many ties arbitrarily; here the rule is deterministic and meaningful when windows are short (one or
two presentations, where counts collapse to 0 for almost everyone): among equal counts, the example
with the larger classification margin at its last presentation (true logit minus the largest other
logit) goes first, and a permutation from the session's portable stream settles exact ties.
Only presented examples are candidates. Removed examples leave the training stream (and so are
never offered to the replay buffer); the buffer itself is never filtered.
"""

import numpy as np

from sparcl_tf.errors import ConfigError
from sparcl_tf.sparsity import schedule


def removal_order(example_ids, stats, tie_break):
    """`example_ids` of presented examples, easiest (first to remove) first.

    `stats` is `ExampleStats.snapshot(example_ids)`; `tie_break` a permutation of their
    positions that orders exact ties (lower first).
    """
    example_ids = np.asarray(example_ids)
    presented = stats["presentations"] > 0
    events = np.where(stats["correct"] > 0, stats["forgetting_events"],
                      np.iinfo(np.int32).max).astype(np.int64)
    # lexsort's last key is the primary one
    order = np.lexsort((np.asarray(tie_break), -stats["last_margin"], events))
    return example_ids[order][presented[order]]


def select_removals(example_ids, stats, count, tie_break):
    """The `count` easiest presented examples (fewer if fewer were presented)."""
    return removal_order(example_ids, stats, tie_break)[:max(count, 0)]


def validate(ddr_config, updates_per_task):
    """ConfigError for the first `ddr` field a run cannot use: removal stages sit at mask-update
    slots 1 .. stages, so there must be fewer stages than update slots."""
    schedule.validate_minimum(ddr_config.min_task_steps, "ddr.min_task_steps")
    if ddr_config.enabled:
        if not 0.0 < ddr_config.total_fraction < 1.0:
            raise ConfigError(f"ddr.total_fraction={ddr_config.total_fraction} must be in (0, 1)")
        if not 1 <= ddr_config.stages < updates_per_task:
            raise ConfigError(f"ddr.stages={ddr_config.stages} must be in [1, "
                              f"sparsity.updates_per_task - 1]")
