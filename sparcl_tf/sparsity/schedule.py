"""When masks change and data is removed inside a task, and to what targets. No tensors here.

Events sit at fractions of a task's epochs: update i of U at epoch progress i * epochs / U (the
official code: U = 10 updates at epochs 0, 5, ..., 45 of 50). With fewer epochs than updates the
events fall inside epochs; the session plan places them by the share of the epoch's examples.
"""

import dataclasses
import math

from sparcl_tf.errors import ConfigError

SCHEDULES = ("none", "static", "tdm", "rigl")
# sparsity.distribution: how the global target spreads over the sparse layers (`layer_targets`)
DISTRIBUTIONS = ("uniform", "erk", "erk_fc")
# sparsity.rate_scaling -> p: a sparse layer of target density d learns at the run's rate * d ** -p
RATE_SCALING_POWERS = {"same": 0.0, "inverse_sqrt_density": 0.5, "inverse_density": 1.0}


@dataclasses.dataclass(frozen=True)
class UpdateSlot:
    """A slot of a task's update schedule, at a progress in epochs (the plan turns each into a
    `session.plan.PlannedEvent` at an example position)."""
    progress: float          # in epochs since the task started
    update_index: int        # 0 .. updates_per_task - 1
    mask_update: bool
    removal_stage: int       # 1-based DDR stage at this event, 0 for none


def task_events(updates, mask_updates, removal_stages, epochs):
    """Events of one task, in order: `updates` update slots, each a mask update when
    `mask_updates`, slots 1 .. `removal_stages` also data-removal stages."""
    events = []
    for index in range(updates):
        stage = index if 1 <= index <= removal_stages else 0
        if mask_updates or stage:
            events.append(UpdateSlot(index * epochs / updates, index, mask_updates, stage))
    return events


def tdm_phase(update_index, updates_per_task, level, opening, swap):
    """(prune_to, grow_to) of TDM update `update_index`, in any unit that adds: active filters
    (structured), or sparsity with negative `opening` / `swap` (`tdm_targets`).

    First update of a task: open `opening` above the target level (plasticity for the new task);
    middle updates: prune `swap` below it, then regrow to it (swap); last update: prune back to
    the target and grow nothing (the mask is frozen at the target for the end of the task).
    """
    if update_index == 0:
        return level, level + opening
    if update_index == updates_per_task - 1:
        return level, level
    return level - swap, level


def tdm_targets(update_index, updates_per_task, sparsity, open_fraction, swap_fraction):
    """(prune_to, grow_to) sparsities of TDM update `update_index` for a layer at `sparsity`."""
    prune_to, grow_to = tdm_phase(update_index, updates_per_task, sparsity, -open_fraction,
                                  -swap_fraction)
    return min(1.0, prune_to), max(0.0, grow_to)


def rigl_targets(run_progress, sparsity, drop_fraction, end_fraction):
    """(prune_to, grow_to) of a RigL update at `run_progress` (0..1 of the whole run).

    A cosine-decayed share of the active weights is dropped and as many regrown (Evci et al. 2020);
    no updates after `end_fraction` of training.
    """
    if run_progress >= end_fraction:
        return sparsity, sparsity
    drop = drop_fraction / 2 * (1 + math.cos(math.pi * run_progress / end_fraction))
    return sparsity + drop * (1 - sparsity), sparsity


def validate_minimum(value, field):
    """ConfigError unless `value` (of the config field `field`: a wait before DDR or DGM acts)
    is an integer >= 0."""
    if not (isinstance(value, int) and not isinstance(value, bool) and value >= 0):
        raise ConfigError(f"{field}={value!r} must be an integer >= 0")


def rate_scales(config, shapes):
    """Per sparse layer (`shapes`: name -> kernel shape), the factor on its learning rate
    (`sparsity.rate_scaling`), or None when every layer learns at the run's rate."""
    power = RATE_SCALING_POWERS[config.sparsity.rate_scaling]
    if not power:
        return None
    targets = layer_targets(config, shapes)
    return [(1.0 - targets[name]) ** -power for name in shapes]


def layer_targets(config, shapes):
    """Sparse layer name -> target sparsity, for the layers of `shapes` (name -> kernel shape; the
    names alone do where the distribution is uniform, as in filter runs):
    `sparsity.layer_sparsity` where it names the layer, else the global target spread by
    `sparsity.distribution`: `uniform`, every layer at it; `erk`, `erk_sparsities` over all of
    them; `erk_fc`, over the fully connected ones (2-D kernels, whose FLOPs are their weights,
    so the run's FLOPs stay those of the uniform target), convolutions at the target."""
    s = config.sparsity
    unknown = sorted(set(s.layer_sparsity) - set(shapes))
    if unknown:
        raise ConfigError(f"sparsity.layer_sparsity names {unknown}, which are not sparse "
                          f"layers of {config.model.name} ({list(shapes)})")
    spread = {}
    if s.distribution != "uniform":
        spread = erk_sparsities({name: shape for name, shape in shapes.items()
                                 if s.distribution == "erk" or len(shape) == 2},
                                s.weight_sparsity)
    return {name: float(s.layer_sparsity.get(name, spread.get(name, s.weight_sparsity)))
            for name in shapes}


def erk_sparsities(shapes, sparsity):
    """Erdos-Renyi-Kernel (Evci et al. 2020, RigL's `get_sparsities_erdos_renyi`): a layer of
    kernel shape (k..., in, out) keeps a share proportional to sum(shape) / prod(shape) (small
    layers denser), scaled so that all layers together keep (1 - `sparsity`) of their weights;
    a layer that would keep more than all of them is dense and the rest share what is left."""
    if not shapes:
        return {}
    sizes = {name: float(math.prod(shape)) for name, shape in shapes.items()}
    raw = {name: sum(shape) / sizes[name] for name, shape in shapes.items()}
    dense = set()
    while True:
        budget = sum((1.0 - sparsity) * sizes[n] for n in sizes if n not in dense) \
            - sum(sparsity * sizes[n] for n in dense)
        scale = budget / sum(raw[n] * sizes[n] for n in sizes if n not in dense)
        densest = max(raw[n] for n in sizes if n not in dense)
        if scale * densest <= 1.0 or len(dense) + 1 == len(sizes):
            break
        dense |= {n for n in sizes if n not in dense and raw[n] == densest}
    return {name: 0.0 if name in dense else 1.0 - scale * raw[name] for name in shapes}


def validate(sparsity_config):
    """ConfigError for the first `sparsity` field a run cannot use (DDR's and DGM's fields are
    checked beside them: `ddr.validate`, `dgm.validate`)."""
    s = sparsity_config
    if s.schedule not in SCHEDULES:
        raise ConfigError(f"sparsity.schedule={s.schedule!r} is unknown; choose one of "
                          f"{list(SCHEDULES)}")
    if not 0.0 <= s.weight_sparsity < 1.0:
        raise ConfigError(f"sparsity.weight_sparsity={s.weight_sparsity} must be in [0, 1)")
    for name, value in s.layer_sparsity.items():
        if not 0.0 <= value < 1.0:
            raise ConfigError(f"sparsity.layer_sparsity[{name!r}]={value} must be in [0, 1)")
    if s.granularity not in ("weight", "filter"):
        raise ConfigError(f"sparsity.granularity={s.granularity!r} must be 'weight' or 'filter'")
    if s.structured_target not in ("weights", "filters"):
        raise ConfigError(f"sparsity.structured_target={s.structured_target!r} must be "
                          f"'weights' or 'filters'")
    if s.granularity == "filter":
        if s.schedule not in ("tdm", "static"):
            raise ConfigError(f"sparsity.granularity=filter needs sparsity.schedule tdm or "
                              f"static, got {s.schedule!r}")
    scaling = s.rate_scaling
    if scaling not in RATE_SCALING_POWERS:
        raise ConfigError(f"sparsity.rate_scaling={scaling!r} is unknown; choose one of "
                          f"{list(RATE_SCALING_POWERS)}")
    if scaling != "same" and s.granularity == "filter":
        raise ConfigError(f"sparsity.rate_scaling={scaling!r} applies to weight masks; a "
                          f"granularity=filter run trains dense compacted layers: must be 'same'")
    if s.distribution not in DISTRIBUTIONS:
        raise ConfigError(f"sparsity.distribution={s.distribution!r} is unknown; choose one of "
                          f"{list(DISTRIBUTIONS)}")
    if s.distribution != "uniform" and s.granularity == "filter":
        raise ConfigError(f"sparsity.distribution={s.distribution!r} spreads weight masks; a "
                          f"granularity=filter run counts filters: must be 'uniform'")
    if s.grow not in ("random", "gradient"):
        raise ConfigError(f"sparsity.grow={s.grow!r} must be 'random' or 'gradient'")
    if s.updates_per_task < 2:
        raise ConfigError(f"sparsity.updates_per_task={s.updates_per_task} must be >= 2")
    for field in ("open_fraction", "swap_fraction", "importance_lambda", "rigl_drop_fraction"):
        if s[field] < 0:
            raise ConfigError(f"sparsity.{field}={s[field]} must be >= 0")
