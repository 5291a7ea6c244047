"""The Keras step engine: a network's `ContinualModel` steps and its mask updaters, driven by the
one task loop (`session.loop`) for a `ContinualLearner`, whatever model it trains.

The engine holds the network (the compacted one for channel-structured SparCL, with the full
model kept for its sizes and FLOPs), the train step, the optimizer and the mask updaters; the
loop decides everything else from the session plan.
"""

import numpy as np

from sparcl_tf.data.pipeline import Normalizer, eval_batches
from sparcl_tf.distribute import ReducedGradientsSGD, Replication
from sparcl_tf.reporting.flops import FlopsLedger, flops_table
from sparcl_tf.session.engine import Engine
from sparcl_tf.session.loop import TaskStream
from sparcl_tf.session.plan import build_plan, state_name
from sparcl_tf.training.continual_model import ContinualModel


def model_description(network, kind):
    """The session plan's `model`: what a host that has only the .tflite reports the run by.
    `unit_masks`: per sparse layer, the state variable whose nonzeros are its active units;
    `parameters`: trainable parameters; `flops`: the `flops_table`; `variables`: the
    device-state names of the network's variables in order (Keras numbers a user's layers per
    process, so a host maps a device's state onto its own model by position); and what the
    `kind` (`sparsity.kind`) needs to be known again from the plan (`described_kind`)."""
    return {"unit_masks": kind.unit_masks(network),
            "parameters": int(sum(np.prod(v.shape) for v in network.trainable_variables)),
            "flops": flops_table(network, kind.reference_network),
            **kind.description(),
            "variables": [state_name(v) for v in network.variables]}


def session_plan(config, tasks, network, kind, method):
    """The session plan of a run of `config` training `network` (of sparsity `kind`) with
    `method` on `tasks`."""
    return build_plan(config, tasks, kind.units(network), kind, method.replay_draws,
                      model=model_description(network, kind))


def image_stream(method, tasks):
    """The Keras and LiteRT engines' stream: the method's training arrays, normalised images."""
    normalizer = Normalizer(tasks.mean, tasks.std)
    return TaskStream(tasks, lambda index: method.task_training_data(tasks, index), normalizer,
                      lambda task: normalizer(task.x_test))


class KerasEngine(Engine):
    """The Keras step engine: `ContinualModel` steps of `network` with `method` under the run's
    sparsity `kind` (`sparsity.kind`: for channel-structured SparCL `network` is the compacted
    model), host-side mask updaters. `replication`: one device (default) or a tf.distribute
    strategy's replicas, in whose scope `network` (and the kind's full network) were built."""

    def __init__(self, config, network, method, kind, replication=None):
        self.config, self.network, self.method, self.kind = config, network, method, kind
        self.replication = replication or Replication()
        self.replication.check_network(network)
        self.replication.check_batch("batch_size", config.batch_size)
        self.replication.check_batch("replay.batch_size", config.replay.batch_size)
        with self.replication.scope():
            self.model = ContinualModel(network, method, kind, self.replication)
            self.model.compile(optimizer=ReducedGradientsSGD(
                learning_rate=config.optimizer.learning_rate,
                momentum=config.optimizer.momentum))
            self.model.optimizer.build(network.trainable_variables)
        self.layer_names = [name for name, _ in kind.units(network)]
        self.ledger = FlopsLedger(flops_table(network, kind.reference_network))
        self.updater = kind.updater(network, self.model.optimizer)
        if self.updater is not None:  # a restored checkpoint overwrites these initial masks
            self.updater.initialize()

    # --- the engine interface (session.loop) -------------------------------------------------

    def begin_task(self, task_index, reset_optimizer):
        if reset_optimizer:
            self.model.reset_optimizer()

    def train(self, inputs, refresh):
        self.model.optimizer.learning_rate.assign(inputs["learning_rate"])
        if "replay_images" not in inputs:  # a method without replay: empty draws
            shape = (0, self.config.replay.batch_size)
            inputs = dict(inputs, replay_images=np.zeros(shape + inputs["images"].shape[1:],
                                                         np.float32),
                          replay_labels=np.zeros(shape, np.int32),
                          replay_logits=np.zeros(shape + (len(inputs["class_mask"]),),
                                                 np.float32))
        out = self.model.step(
            inputs["images"], inputs["labels"], inputs["class_mask"], inputs["replay_images"],
            inputs["replay_labels"], inputs["replay_logits"], inputs.get("replay_weight", 0.0),
            refresh)
        return {key: value.numpy() for key, value in out.items()}

    def update_masks(self, prune_to, grow_to, seed):
        return self.updater.update(prune_to, grow_to, seed,
                                   [v.numpy() for v in self.model.last_gradients])

    def active_units(self):
        return self.kind.active_units(self.network)

    def logits(self, images):
        return np.concatenate([self.model.logits(batch) for batch in eval_batches(
            images, self.config.log.eval_batch_size, lambda x: x)])

    def variables(self):
        """Name -> variable for checkpoints, keyed by position: a user's model has Keras'
        auto-numbered layer names, which differ between two builds of the same model."""
        variables = {f"network/{i:03d}.{v.name}": v for i, v in enumerate(self.network.variables)}
        variables.update({f"optimizer/{i:03d}": v
                          for i, v in enumerate(self.model.optimizer.variables)})
        variables.update({f"run/{name}": v for name, v in self.model.state().items()})
        return variables

    def before_save(self):
        self.replication.check_identical(self.variables())

    def results(self):
        sparsity = self.kind.layer_sparsity(
            self.layer_names, [layer.kernel.numpy() for layer in self.model.sparse],
            self.active_units())
        results = {"layer_sparsity": sparsity, "parameters": int(sum(
            np.prod(v.shape) for v in self.network.trainable_variables))}
        if self.replication.distributed:
            results["distribute"] = self.replication.describe()
        return results
