"""SparCL's host policy as data: the session plan every engine and every device app follows.

The plan is a policy, not a list of tasks: `build_plan` turns a run's config into the constants
from which any host computes a task's events when the task begins, from the task's index and its
example count alone (`SessionPlan.task_events`): mask updates with their positions, growth seeds
and exact per-layer counts in the unit the model's `update_masks` expects (weights, or filter
slots of a channel-structured model), data-removal stages with their counts, plus the
gradient-mask refresh cadence, the replay shape, normalisation, augmentation and the random
stream. Nobody needs to know at export time which classes will come or how many examples.
`tools.convert` and `ContinualLearner.export` write it into signatures.json; every device host
reads it back from there. The spec is `tflite/README.md` ("Session plan"); the Kotlin
(`SessionPlan.kt`) and board C (`sparcl_micro.c`) twins are held to this reference by the golden
vectors of `tools/policy_golden.py`. `VERSION` changes whenever a field's meaning does.

Rounding, said once: an event at epoch progress e + r / U (U updates per task) of an epoch of L
examples falls at position floor((2 r L + U) / (2 U)) (nearest, halves up); removal totals are
floor(f n + 1/2) of a task's n examples, and stage k of K ends at floor((2 T k + K) / (2 K));
a layer of N weights at sparsity s keeps N - rint(s N) (halves to even, IEEE doubles).

RigL's drop fraction decays over the run's progress (t + p) / H, H = `rigl.horizon_tasks` (the
task count of the run it was converted for). An open-ended stream goes past it: from task H on
the progress is >= 1, beyond `end_fraction`, and the updates neither drop nor grow (the mask stays
as the schedule left it); convert with a larger `data.num_tasks` to stretch the schedule.
"""

import dataclasses
import json
import math

from sparcl_tf.errors import DataError
from sparcl_tf.session import learning_rate
from sparcl_tf.session import random as session_random
from sparcl_tf.sparsity import dgm, schedule
from sparcl_tf.sparsity.kind import sparsity_kind
from sparcl_tf.sparsity.masks import active_count

VERSION = 4

MASK_RULES = ("none", "tdm", "rigl")


@dataclasses.dataclass(frozen=True)
class PlannedEvent:
    """One event of a task: train up to its position, then apply it."""
    epoch: int
    numerator: int            # position in the epoch: numerator / denominator of its examples
    denominator: int
    update_index: int
    mask_update: bool
    seed: int                 # growth seed of the mask update
    prune_to: tuple           # per sparse layer: active units kept after pruning
    grow_to: tuple            # per sparse layer: active units after growing
    removal_stage: int        # 1-based data-removal stage at this event, 0 for none
    removal_target: int       # examples of the task removed in total once this stage is done

    def position(self, length):
        return (2 * self.numerator * length + self.denominator) // (2 * self.denominator)


def removal_targets(num_examples, total_fraction, stages):
    """Examples removed in total after each stage 1..stages (cumulative, halves up)."""
    total = math.floor(total_fraction * num_examples + 0.5)
    return [(2 * total * k + stages) // (2 * stages) for k in range(1, stages + 1)]


def event_schedule(config, layers, kind, horizon_tasks):
    """The plan's `schedule`: the constants from which every task's events follow (the spec is
    `SessionPlan.task_events`)."""
    s, ddr = config.sparsity, config.ddr
    rule = s.schedule if s.schedule in ("tdm", "rigl") else "none"
    return {"updates_per_task": int(s.updates_per_task), "mask_rule": rule,
            "removal": {"fraction": float(ddr.total_fraction) if ddr.enabled else 0.0,
                        "stages": int(ddr.stages) if ddr.enabled else 0,
                        "min_task_steps": int(ddr.min_task_steps)},
            **kind.schedule_entry([name for name, _ in layers], horizon_tasks)}


def build_plan(config, data, layers, kind=None, replay_draws=0, horizon_tasks=None,
               model=None):
    """The plan of `config` for sparse `layers` [(name, units)] of a model taking `data`'s images
    (a `TaskSequence`: classes, image shape, normalisation; its tasks are not read); `kind`: the
    run's `sparsity.kind` (default: the config's, for weight granularity; a channel-structured
    run's `FilterSlots` counts filter slots). `horizon_tasks`: the tasks RigL's run progress
    spans (default: the config's task count, at least 1). `model`: what a host reports the model by
    (`engine.model_description`)."""
    if horizon_tasks is None:
        horizon_tasks = max(len(data.tasks), int(config.data.num_tasks), 1)
    kind = kind or sparsity_kind(config)
    return SessionPlan(
        version=VERSION, seed=int(config.seed), epochs_per_task=int(config.epochs_per_task),
        batch_size=int(config.batch_size), num_classes=int(data.num_classes),
        learning_rate=learning_rate.plan_entry(config.optimizer),
        image_shape=[int(d) for d in data.image_shape],
        replay={"buffer_size": int(config.replay.buffer_size) if replay_draws else 0,
                "from_task": int(config.replay.from_task), "draws": int(replay_draws),
                "batch_size": int(config.replay.batch_size) if replay_draws else 0},
        momentum_reset_per_task=True,
        unit=kind.unit,
        sparse_layers=[name for name, _ in layers], layer_units=[int(u) for _, u in layers],
        dgm_refresh_every=int(config.dgm.refresh_every) if dgm.active(config) else 0,
        schedule=event_schedule(config, layers, kind, horizon_tasks),
        normalization={"mean": [float(m) for m in data.mean],
                       "std": [float(v) for v in data.std],
                       "formula": "(pixel / 255 - mean) / std, per channel"},
        augmentation={"kind": config.data.augment, "crop_padding": int(config.data.crop_padding)},
        random={"generator": "splitmix64", "purposes": dict(session_random.PURPOSES)},
        run_config=json.loads(config.to_json()), model=model)


@dataclasses.dataclass
class SessionPlan:
    version: int
    seed: int
    epochs_per_task: int
    batch_size: int
    num_classes: int
    learning_rate: dict       # the per-task schedule (session/learning_rate.py)
    image_shape: list
    replay: dict
    momentum_reset_per_task: bool
    unit: str
    sparse_layers: list
    layer_units: list
    dgm_refresh_every: int
    schedule: dict            # the constants every task's events follow from (`task_events`)
    normalization: dict
    augmentation: dict
    random: dict
    run_config: dict = None   # the run's config, for the reference host; apps ignore it
    model: dict = None        # unit masks, parameters, FLOPs table: for hosts that report them

    def task_steps(self, num_examples):
        """The steps of a task of `num_examples` examples were none removed: every epoch's full
        batches."""
        return self.epochs_per_task * (num_examples // self.batch_size)

    def removal_stages(self, num_examples):
        """The data-removal stages of a task of `num_examples` examples: none in a task of fewer
        than `removal.min_task_steps` steps, whose statistics would rank examples by one or two
        presentations of a barely trained network."""
        removal = self.schedule["removal"]
        return removal["stages"] if self.task_steps(num_examples) >= removal["min_task_steps"] \
            else 0

    def task_events(self, task_index, num_examples):
        """The events of task `task_index` (0-based) training on `num_examples` examples, in
        order: update slot i of U sits at epoch progress i E / U; every slot is a mask update
        unless the rule is 'none'; slots 1 .. stages are also data-removal stages
        (`removal_stages`)."""
        entry, epochs = self.schedule, self.epochs_per_task
        updates, rule = entry["updates_per_task"], entry["mask_rule"]
        stages = self.removal_stages(num_examples)
        removal = removal_targets(num_examples, entry["removal"]["fraction"], stages)
        events = []
        for event in schedule.task_events(updates, rule != "none", stages, epochs):
            span = event.update_index * epochs
            epoch = span // updates
            prune_to, grow_to = self._counts(event, task_index) if event.mask_update else ((), ())
            events.append(PlannedEvent(
                epoch, span - epoch * updates, updates, event.update_index, event.mask_update,
                session_random.growth_seed(self.seed, task_index, event.update_index)
                if event.mask_update else 0, prune_to, grow_to, event.removal_stage,
                removal[event.removal_stage - 1] if event.removal_stage else 0))
        return events

    def _counts(self, event, task_index):
        """(prune_to, grow_to) per sparse layer at a mask update, in the plan's unit."""
        entry, updates = self.schedule, self.schedule["updates_per_task"]
        if self.unit == "filter_slots":
            counts = [schedule.tdm_phase(event.update_index, updates, *filters)
                      for filters in entry["filter_counts"]]
        else:
            if entry["mask_rule"] == "tdm":
                tdm = entry["tdm"]
                targets = [schedule.tdm_targets(event.update_index, updates, target,
                                                tdm["open_fraction"], tdm["swap_fraction"])
                           for target in entry["layer_targets"]]
            else:
                rigl = entry["rigl"]
                run_progress = (task_index + event.progress / self.epochs_per_task) / rigl[
                    "horizon_tasks"]
                targets = [schedule.rigl_targets(run_progress, target, rigl["drop_fraction"],
                                                 rigl["end_fraction"])
                           for target in entry["layer_targets"]]
            counts = [(active_count(units, prune), active_count(units, grow))
                      for units, (prune, grow) in zip(self.layer_units, targets)]
        return tuple(p for p, _ in counts), tuple(g for _, g in counts)

    def to_json(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data):
        """The plan in a signatures.json's "session_plan"; DataError when it is not one."""
        fields = [f.name for f in dataclasses.fields(cls)]
        version = data.get("version") if isinstance(data, dict) else None
        if version != VERSION:
            raise DataError(f"session plan version {version!r} is not {VERSION}: convert the "
                            f"model again with tools.convert (or ContinualLearner.export)")
        missing = [name for name in fields
                   if name not in data and name not in ("run_config", "model")]
        if missing:
            raise DataError(f"session plan lacks {missing}")
        plan = cls(**{name: data.get(name) for name in fields})
        problem = _schedule_problem(plan)
        if problem:
            raise DataError(f"session plan schedule: {problem}")
        return plan

    def differences(self, other):
        """Fields in which two plans differ (what a model converted for one cannot run)."""
        mine, theirs = self.to_json(), other.to_json()
        return sorted(key for key in mine if key != "run_config" and mine[key] != theirs[key])


def _is_int(value, low=0):
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


def _is_fraction(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value <= 1


def _schedule_problem(plan):
    """What makes a file's `schedule` one no host can follow, or None."""
    entry, layers = plan.schedule, len(plan.sparse_layers)
    try:
        updates, rule, removal = entry["updates_per_task"], entry["mask_rule"], entry["removal"]
        if not _is_int(updates, 2) or rule not in MASK_RULES:
            return f"updates_per_task {updates!r} (>= 2) or mask_rule {rule!r} {MASK_RULES}"
        if not (_is_fraction(removal["fraction"]) and _is_int(removal["stages"])
                and removal["stages"] < updates and _is_int(removal["min_task_steps"])):
            return (f"removal {removal!r} needs a fraction, 0 <= stages < updates_per_task and "
                    f"min_task_steps >= 0")
        if rule == "none":
            return None
        if plan.unit == "filter_slots":
            counts = entry["filter_counts"]
            if rule != "tdm" or len(counts) != layers or not all(
                    len(c) == 3 and all(_is_int(v) for v in c) for c in counts):
                return "filter_slots need mask_rule tdm and [target, opening, swap] per layer"
            return None
        targets, tdm, rigl = entry["layer_targets"], entry["tdm"], entry["rigl"]
        if len(targets) != layers or not all(_is_fraction(t) and t < 1 for t in targets):
            return f"layer_targets needs a sparsity in [0, 1) for each of {layers} layers"
        if not all(_is_fraction(v) for v in (tdm["open_fraction"], tdm["swap_fraction"],
                                             rigl["drop_fraction"], rigl["end_fraction"])) \
                or not _is_int(rigl["horizon_tasks"], 1):
            return "tdm and rigl fractions must lie in [0, 1], rigl.horizon_tasks >= 1"
    except (KeyError, TypeError) as error:
        return f"malformed ({error!r})"
    return None


def state_name(variable):
    """The name a network variable has in the device state (`get_state` / `set_state`)."""
    return variable.path.replace("/", "__")
