"""A session's run state: where it stands (task, epoch, position, events applied, removals,
refresh cadence, counters, accuracy so far), saved as JSON beside the variables in every
checkpoint, and the hash of the config fields a resume must match."""

import dataclasses
import hashlib
import json

import numpy as np

from sparcl_tf.reporting import results as run_results
from sparcl_tf.errors import CheckpointError

# Fields that may differ when a run is resumed: they change how it reports, or where it runs
# (one device or a strategy's replicas compute the same run, to float rounding).
RESUME_FREE_FIELDS = ("log", "checkpoint", "distribute")


@dataclasses.dataclass
class Progress(run_results.RunCounters):
    """Host-side session state saved beside the variables in every checkpoint."""
    epoch: int = 0
    epoch_order: list = None          # rows of the task's arrays this epoch walks
    cursor: int = 0                   # position in epoch_order trained up to
    events_done: int = 0              # events of this epoch already applied
    removed: list = dataclasses.field(default_factory=list)  # example ids removed this task
    task_steps: int = 0
    task_dense_flops_start: float = 0.0
    refresh_pending: bool = True
    steps_since_refresh: int = 0
    active: list = None               # active units per sparse layer
    gradient_density_sum: list = None
    gradient_density_steps: int = 0
    task_examples: list = dataclasses.field(default_factory=list)  # training examples per task
    config_hash: str = ""             # the run's config (`config_hash`): a resume must match it

    @classmethod
    def from_checkpoint(cls, state, where):
        """The progress in a checkpoint's state.json, checked field by field."""
        fields = {field.name: field for field in dataclasses.fields(cls)}
        unknown = sorted(set(state) - set(fields))
        if unknown:
            raise CheckpointError(f"{where} has unknown progress fields {unknown[:5]} (written "
                                  f"by another version of sparcl-tf?)")
        for name, value in state.items():
            kind = fields[name].type
            number = isinstance(value, (int, float)) and not isinstance(value, bool)
            if not (value is None and fields[name].default is None
                    or kind is float and number and np.isfinite(value)
                    or kind is int and number and isinstance(value, int)
                    or kind is bool and isinstance(value, bool)
                    or kind in (list, str) and isinstance(value, kind)):
                raise CheckpointError(f"{where}: progress field {name}={value!r:.60} is not a "
                                      f"{kind.__name__}")
        return cls(**state)


def config_hash(config):
    """SHA-256 of the config fields that decide what a run computes."""
    fields = {key: value for key, value in json.loads(config.to_json()).items()
              if key not in RESUME_FREE_FIELDS}
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()
