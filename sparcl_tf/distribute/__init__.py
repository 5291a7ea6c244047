"""Data-parallel training on tf.distribute, equal to one device: where a run's variables live and
how its train step runs on the replicas of a `MirroredStrategy` (the devices of one machine) or a
`MultiWorkerMirroredStrategy` (processes named by TF_CONFIG).

The session host (`session.loop`) stays one: every worker runs the same loop on the same data in
the same order, so the replay buffer, example statistics, removal plan and random draws are
computed identically everywhere from what each step returns. A step splits the global batch (and
each replay draw) into equal contiguous shards, one per replica, and every replica

  - takes the mean loss of its shard and its gradients, then all-reduces both to their mean: the
    gradient of the global batch's mean loss, the same on every replica;
  - decides everything that writes state from those reduced values (TDM's last gradients, DGM's
    top-k, the weight update, re-masking), so every replica writes the same value into its own
    copy: in TF 2.21 a variable written inside a replica changes only that replica's copy, with
    no error, so only identical writes keep the copies identical;
  - gathers its logits and correctness into the global batch, in shard order, for the host.

Collectives may not sit inside a `tf.cond` (TF raises a merge_call error), so a distributed step
decides replay and gradient-mask refresh on the host (one trace per combination) and keeps the
all-reduce outside every branch. BatchNorm: `sync` normalises with the global batch's statistics
(Keras' synchronized BatchNormalization, three all-reduces per layer and forward) and so equals
one device; `local` normalises each shard with its own statistics and averages the moving
statistics after each step (one all-reduce), which is cheaper and not equal to one device.
"""

import contextlib
import json
import zlib

import keras
import numpy as np
import tensorflow as tf

from sparcl_tf.distribute.cluster import (check_addresses, cluster_from_environment, local_cluster,
                                         start_up_deadline, use_devices)
from sparcl_tf.errors import ClusterError, ConfigError, DivergedError

STRATEGIES = ("none", "mirrored", "multi_worker")
BATCH_NORM = ("sync", "local")


def validate(settings):
    """ConfigError for the first `distribute` field a run cannot use."""
    if settings.strategy not in STRATEGIES:
        raise ConfigError(f"distribute.strategy={settings.strategy!r} is invalid: must be one "
                          f"of {list(STRATEGIES)}")
    devices = settings.devices
    if not isinstance(devices, int) or isinstance(devices, bool) or devices < 0:
        raise ConfigError(f"distribute.devices={devices!r} is invalid: must be an integer >= 0")
    if settings.batch_norm not in BATCH_NORM:
        raise ConfigError(f"distribute.batch_norm={settings.batch_norm!r} is invalid: must be "
                          f"one of {list(BATCH_NORM)}")
    timeout = settings.startup_timeout_s
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not (
            0 < timeout < float("inf")):
        raise ConfigError(f"distribute.startup_timeout_s={timeout!r} is invalid: must be a "
                          f"number of seconds > 0")


class ReducedGradientsSGD(keras.optimizers.SGD):
    """Keras SGD for gradients the train step has all-reduced itself (it needs them reduced for
    its mask decisions): Keras 3 would sum them over the replicas once more. On one device it is
    plain SGD."""

    def _all_reduce_sum_gradients(self, grads_and_vars):
        return list(grads_and_vars)


def branch(condition, true_fn, false_fn):
    """`tf.cond` on a tensor; a Python bool picks its branch while tracing (a distributed step:
    its branches may hold collectives, which a tf.cond cannot)."""
    if isinstance(condition, (bool, np.bool_)):
        return true_fn() if condition else false_fn()
    return tf.cond(condition, true_fn, false_fn)


@contextlib.contextmanager
def _collectives():
    """A collective that fails because a peer is gone becomes a ClusterError (TensorFlow's health
    check aborts it within seconds instead of letting the survivors wait forever)."""
    try:
        yield
    except (tf.errors.UnavailableError, tf.errors.DeadlineExceededError,
            tf.errors.CancelledError) as error:
        raise ClusterError(f"a worker of the cluster stopped or cannot be reached "
                           f"({type(error).__name__}); every checkpoint written so far is "
                           f"intact: start all workers again with the same command to resume") \
            from None


def _bits(variable):
    """A variable's value as integers of its exact bit pattern (for checksums)."""
    value = tf.convert_to_tensor(variable)
    if value.dtype == tf.float32:
        return tf.cast(tf.bitcast(value, tf.int32), tf.int64)
    if value.dtype == tf.float64:
        return tf.bitcast(value, tf.int64)
    return tf.cast(value, tf.int64)


class Replication:
    """One device (`strategy` None) or the replicas of a tf.distribute `strategy`, with
    BatchNorm `batch_norm` ('sync' or 'local') across them."""

    def __init__(self, strategy=None, batch_norm="sync"):
        self.distributed = strategy is not None
        self.strategy = strategy or tf.distribute.get_strategy()
        self.replicas = int(self.strategy.num_replicas_in_sync)
        self.batch_norm = batch_norm
        resolver = getattr(self.strategy, "cluster_resolver", None) \
            if isinstance(self.strategy, tf.distribute.MultiWorkerMirroredStrategy) else None
        cluster = resolver.cluster_spec().as_dict() if resolver is not None else {}
        self.workers = max(sum(len(tasks) for tasks in cluster.values()), 1)
        self.is_chief = resolver is None or (resolver.task_type, int(resolver.task_id)) == (
            ("chief", 0) if "chief" in cluster else ("worker", 0))
        self._local_statistics = []
        self._checks = 0
        self._checksum_names = self._checksum_rows = None

    @property
    def name(self):
        if not self.distributed:
            return "none"
        return "multi_worker" if isinstance(self.strategy,
                                            tf.distribute.MultiWorkerMirroredStrategy) \
            else "mirrored"

    def scope(self):
        """Where the network, the train step's variables and the optimizer must be built."""
        return self.strategy.scope() if self.distributed else contextlib.nullcontext()

    def check_network(self, network):
        """ValueError unless `network`'s variables were made in this strategy's scope."""
        if not self.distributed:
            return
        plain = [v.path for v in network.variables if not isinstance(
            getattr(v, "value", v), tf.distribute.DistributedValues)]
        if plain:
            raise ValueError(f"the model's variables ({plain[0]}, ...) were not made in the "
                             f"strategy's scope: build the model inside `with strategy.scope():`")

    def check_batch(self, field, size):
        if size % self.replicas:
            raise ConfigError(f"{field}={size} must split evenly over the {self.replicas} "
                              f"replicas of distribute.strategy={self.name}")

    def prepare(self, network):
        """Makes `network`'s BatchNorm layers follow `batch_norm` across the replicas."""
        if self.replicas == 1:
            return
        norms = [layer for layer in network._flatten_layers(include_self=False)
                 if isinstance(layer, keras.layers.BatchNormalization)]
        if self.batch_norm == "sync":
            for layer in norms:
                layer.synchronized = True
        else:
            self._local_statistics = [v for layer in norms
                                      for v in (layer.moving_mean, layer.moving_variance)]

    # --- inside one replica's step --------------------------------------------------------------

    def mean(self, values):
        """The mean over replicas of a nest of tensors (all-reduced; itself on one device)."""
        if self.replicas == 1:
            return values
        return tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.MEAN,
                                                              values)

    def gather(self, values):
        """A nest of per-example tensors of this replica's shard as the global batch's, in shard
        order (itself on one device)."""
        if self.replicas == 1:
            return values
        context = tf.distribute.get_replica_context()
        return tf.nest.map_structure(lambda value: context.all_gather(value, axis=0), values)

    def settle(self):
        """After a step's updates: local BatchNorm's moving statistics become their replica mean
        (nothing to do for sync BatchNorm, whose statistics are already global)."""
        if self._local_statistics:
            averaged = self.mean([tf.convert_to_tensor(v) for v in self._local_statistics])
            for variable, value in zip(self._local_statistics, averaged):
                variable.assign(value)

    # --- the host side --------------------------------------------------------------------------

    def compile(self, replica_step, split_axes):
        """`call(*args, **flags)`: `replica_step` on every replica, each positional argument split
        along its entry of `split_axes` (None: the whole value to every replica), the keyword
        flags Python values fixed while tracing; returns replica 0's result, which
        `replica_step` made global (`mean`, `gather`)."""
        strategy = self.strategy

        @tf.function
        def distributed(*args, **flags):
            out = strategy.run(replica_step, args=args, kwargs=flags)
            return strategy.experimental_local_results(out)[0]

        def call(*args, **flags):
            values = [value if axis is None else self._split(value, axis)
                      for value, axis in zip(args, split_axes)]
            with _collectives():
                return distributed(*values, **flags)
        return call

    def _split(self, value, axis):
        parts = np.split(np.asarray(value), self.replicas, axis=axis)
        return self.strategy.experimental_distribute_values_from_function(
            lambda context: parts[context.replica_id_in_sync_group])

    def _gather_rows(self, make_row):
        """A function giving [replicas, n]: every replica's `make_row()` (an int64 vector), on
        every worker."""
        strategy = self.strategy

        @tf.function
        def gathered():
            def replica():
                return tf.distribute.get_replica_context().all_gather(make_row()[None], axis=0)
            return strategy.experimental_local_results(strategy.run(replica))[0]
        def rows():
            with _collectives():
                return gathered().numpy()
        return rows

    def check_identical(self, variables):
        """DivergedError unless every replica holds the same bits in its copy of each of
        `variables` (name -> variable), compared by a checksum of the bit patterns."""
        if self.replicas == 1:
            return
        names = sorted(variables)
        if self._checksum_names != names:  # traced once: a run checks the same set every time
            self._checksum_names = names
            self._checksum_rows = self._gather_rows(lambda: tf.stack(
                [tf.reduce_sum(_bits(variables[name])) for name in names]))
        rows = self._checksum_rows()
        differing = [name for name, column in zip(names, rows.T) if len(set(column)) > 1]
        if differing:
            raise DivergedError(f"the replicas' copies of {differing[:3]} differ "
                                f"({len(differing)} variables): a replicated update was not the "
                                f"same on every replica")
        self._checks += 1

    def require_same_start(self, step, state):
        """ConfigError on every worker unless all start at the same `step` with the same
        `state` (a JSON-able dict; compared by checksum)."""
        if self.workers == 1:
            return
        row = np.asarray([step, zlib.crc32(json.dumps(state, sort_keys=True).encode())], np.int64)
        rows = self._gather_rows(lambda: tf.constant(row))()
        if not (rows == rows[0]).all():
            raise ConfigError(f"the workers start from different states (step "
                              f"{rows[:, 0].tolist()} by replica): every worker needs the same "
                              f"config and data, and the chief's workdir (a shared folder) to "
                              f"resume from")

    def describe(self):
        """What results.json records of the run's distribution."""
        return {"strategy": self.name, "replicas": self.replicas, "workers": self.workers,
                "batch_norm": self.batch_norm if self.replicas > 1 else "none",
                "replica_checks": self._checks}


# --- making a strategy from the config --------------------------------------------------------

def create(settings):
    """The `Replication` that `settings` (a config's `distribute`) asks for. A strategy must be
    made before TensorFlow runs its first op in the process (logical devices, collectives)."""
    validate(settings)
    if settings.strategy == "none":
        return Replication()
    if settings.strategy == "mirrored":
        devices = use_devices(settings.devices, multi_worker=False)
        strategy = tf.distribute.MirroredStrategy(devices)
    else:
        spec = cluster_from_environment()
        check_addresses(spec)
        use_devices(settings.devices, multi_worker=True)
        try:
            with start_up_deadline(spec, settings.startup_timeout_s):
                strategy = tf.distribute.MultiWorkerMirroredStrategy()
        except (RuntimeError, ValueError) as error:
            raise ConfigError(f"distribute.strategy=multi_worker could not start: {error} (make "
                              f"the strategy first in a fresh process)") from None
    return Replication(strategy, settings.batch_norm)


__all__ = ["BATCH_NORM", "STRATEGIES", "ReducedGradientsSGD", "Replication", "branch",
           "check_addresses", "cluster_from_environment", "create", "local_cluster", "validate"]
