"""SparCL's host policy as data: the session plan every engine and every device app follows.

`build_plan` turns a run's config into the plan: for every task, its mask-update events (position
in the task, growth seed, exact per-layer counts in the unit the model's `update_masks` expects:
weights, or filter slots of a channel-structured model), its data-removal stages with their
counts, the gradient-mask refresh cadence, the replay shape, normalisation, augmentation and the
random stream. `tools.convert` writes it into signatures.json; the LiteRT session reads it back
from there, as an app does. The spec is `tflite/README.md` ("Session plan"); `VERSION` changes
whenever a field's meaning does.

Rounding, said once: an event at epoch progress e + r / U (U updates per task) of an epoch of L
examples falls at position floor((2 r L + U) / (2 U)) (nearest, halves up); removal totals are
floor(f n + 1/2) of a task's n examples, and stage k of K ends at floor((2 T k + K) / (2 K)).
"""

import dataclasses
import json
import math

from sparcl_tf.errors import DataError
from sparcl_tf.session import learning_rate
from sparcl_tf.session import random as session_random
from sparcl_tf.sparsity import schedule, structured
from sparcl_tf.sparsity.masks import active_count

VERSION = 2


@dataclasses.dataclass(frozen=True)
class Event:
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


def _layer_counts(config, event, task_index, num_tasks, layers, full_filters):
    """(prune_to, grow_to) per layer: weights, or filter slots when `full_filters` is given."""
    s = config.sparsity
    if full_filters is not None:
        targets = structured.filter_targets(config, [name for name, _ in layers])
        counts = [schedule.tdm_phase(event.update_index, s.updates_per_task,
                                     *structured.filter_counts(full_filters[name], targets[name],
                                                               s.open_fraction, s.swap_fraction))
                  for name, _ in layers]
    else:
        targets = schedule.layer_targets(config, [name for name, _ in layers])
        _, targets_of = schedule.update_targets(config, event, task_index, num_tasks)
        counts = [(active_count(size, prune), active_count(size, grow)) for (name, size), (
            prune, grow) in zip(layers, (targets_of(targets[name]) for name, _ in layers))]
    return tuple(p for p, _ in counts), tuple(g for _, g in counts)


def build_plan(config, tasks, sizes, layers, full_filters=None, replay_draws=0):
    """The plan of `config` over `tasks` (the run's task stream; `sizes`: the examples each task
    trains on) for sparse `layers` [(name, units)]; `full_filters` (producer -> filters of the
    full layer) for a channel-structured model, whose units are filter slots."""
    s, ddr = config.sparsity, config.ddr
    num_tasks = len(tasks.tasks)
    plan_tasks = []
    for task_index, task in enumerate(tasks.tasks):
        removal = removal_targets(sizes[task_index], ddr.total_fraction, ddr.stages) \
            if ddr.enabled else []
        events = []
        for event in schedule.task_events(s, ddr, config.epochs_per_task):
            span = event.update_index * config.epochs_per_task
            epoch = span // s.updates_per_task
            prune_to = grow_to = ()
            if event.mask_update:
                prune_to, grow_to = _layer_counts(config, event, task_index, num_tasks, layers,
                                                  full_filters)
            events.append(Event(
                epoch, span - epoch * s.updates_per_task, s.updates_per_task,
                event.update_index, event.mask_update,
                session_random.growth_seed(config.seed, task_index, event.update_index)
                if event.mask_update else 0, prune_to, grow_to, event.removal_stage,
                removal[event.removal_stage - 1] if event.removal_stage else 0))
        plan_tasks.append({"classes": [int(c) for c in task.classes],
                           "training_examples": sizes[task_index], "events": events})
    return SessionPlan(
        version=VERSION, seed=int(config.seed), epochs_per_task=int(config.epochs_per_task),
        batch_size=int(config.batch_size), num_classes=int(tasks.num_classes),
        learning_rate=learning_rate.plan_entry(config.optimizer),
        image_shape=[int(d) for d in tasks.image_shape],
        replay={"buffer_size": int(config.replay.buffer_size) if replay_draws else 0,
                "from_task": int(config.replay.from_task), "draws": int(replay_draws),
                "batch_size": int(config.replay.batch_size) if replay_draws else 0},
        momentum_reset_per_task=True,
        unit="filter_slots" if full_filters is not None else "weights",
        sparse_layers=[name for name, _ in layers], layer_units=[int(u) for _, u in layers],
        dgm_refresh_every=int(config.dgm.refresh_every) if config.dgm.enabled else 0,
        normalization={"mean": [float(m) for m in tasks.mean],
                       "std": [float(v) for v in tasks.std],
                       "formula": "(pixel / 255 - mean) / std, per channel"},
        augmentation={"kind": config.data.augment, "crop_padding": int(config.data.crop_padding)},
        random={"generator": "splitmix64", "purposes": dict(session_random.PURPOSES)},
        tasks=plan_tasks, run_config=json.loads(config.to_json()))


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
    normalization: dict
    augmentation: dict
    random: dict
    tasks: list               # per task: classes, training_examples, events
    run_config: dict = None   # the run's config, for the reference host; apps ignore it

    def events(self, task_index):
        return self.tasks[task_index]["events"]

    def to_json(self):
        data = dataclasses.asdict(self)
        for task in data["tasks"]:
            task["events"] = [dict(event, prune_to=list(event["prune_to"]),
                                   grow_to=list(event["grow_to"])) for event in task["events"]]
        return data

    @classmethod
    def from_json(cls, data):
        """The plan in a signatures.json's "session_plan"; DataError when it is not one."""
        fields = [f.name for f in dataclasses.fields(cls)]
        version = data.get("version") if isinstance(data, dict) else None
        if version != VERSION:
            raise DataError(f"session plan version {version!r} is not {VERSION}: convert the "
                            f"run again with tools.convert")
        missing = [name for name in fields if name not in data and name != "run_config"]
        if missing:
            raise DataError(f"session plan lacks {missing}")
        try:
            tasks = [dict(task, events=[Event(**dict(event, prune_to=tuple(event["prune_to"]),
                                                     grow_to=tuple(event["grow_to"])))
                                        for event in task["events"]]) for task in data["tasks"]]
        except (KeyError, TypeError) as error:
            raise DataError(f"session plan has a malformed event: {error}") from None
        return cls(**{**{name: data.get(name) for name in fields}, "tasks": tasks})

    def differences(self, other):
        """Fields in which two plans differ (what a model converted for one cannot run)."""
        mine, theirs = self.to_json(), other.to_json()
        return sorted(key for key in mine if key != "run_config" and mine[key] != theirs[key])
