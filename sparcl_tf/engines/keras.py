"""The Keras step engine: a network's `ContinualModel` steps and its mask updaters, driven by the
one task loop (`session.loop`) for a `ContinualLearner`, whatever model it trains.

The engine holds the network (the compacted one for channel-structured SparCL, with the full
model kept for its sizes and FLOPs), the train step, the optimizer and the mask updaters; the
loop decides everything else from the session plan.
"""

import types

import numpy as np

from sparcl_tf.continual_model import ContinualModel
from sparcl_tf.data.pipeline import Normalizer, eval_batches
from sparcl_tf.distribute import ReducedGradientsSGD, Replication
from sparcl_tf.flops import FlopsLedger, flops_table
from sparcl_tf.layers import channel_masks, sparsifiable_layers
from sparcl_tf.models import build_model, structured_producers
from sparcl_tf.session.engine import Engine
from sparcl_tf.session.loop import TaskStream
from sparcl_tf.session.plan import state_name
from sparcl_tf.sparsity.schedule import layer_targets
from sparcl_tf.sparsity.structured import (ChannelUpdater, filter_targets, gradient_filter_targets,
                                           gradient_filters)
from sparcl_tf.sparsity.tdm import MaskUpdater


def sparse_units(network, full_filters):
    """[(sparse layer, units the plan counts)]: kernel entries, or filter slots."""
    if full_filters is not None:
        return [(group.producer, int(group.mask.shape[0])) for group in channel_masks(network)]
    return [(layer.name, int(np.prod(layer.kernel.shape)))
            for layer in sparsifiable_layers(network)]


def model_description(network, full_network=None, full_filters=None):
    """The session plan's `model`: what a host that has only the .tflite reports the run by.
    `unit_masks`: per sparse layer, the state variable whose nonzeros are its active units;
    `parameters`: trainable parameters; `flops`: the `flops_table`; `full_filters`: filters of
    each full layer of a compacted model (None for weight masks); `variables`: the device-state
    names of the network's variables in order (Keras numbers a user's layers per process, so a
    host maps a device's state onto its own model by position)."""
    if full_filters is not None:
        unit_masks = [f"{group.name}__mask" for group in channel_masks(network)]
    else:
        unit_masks = [f"{layer.name}__mask" for layer in sparsifiable_layers(network)]
    return {"unit_masks": unit_masks,
            "parameters": int(sum(np.prod(v.shape) for v in network.trainable_variables)),
            "flops": flops_table(network, full_network),
            "full_filters": dict(full_filters) if full_filters is not None else None,
            "variables": [state_name(v) for v in network.variables]}


def full_filter_counts(config, network):
    """Producer name -> filters of the full layer, for a compacted `network` of `config`."""
    full = build_model(config.model.name, tuple(network.input_shape[1:]),
                       int(network.output_shape[-1]), width=config.model.width)
    return {n: int(full.get_layer(n).kernel.shape[-1])
            for n in structured_producers(config.model.name, full)}


def structured_gradient_filters(config, network, full_filters):
    """Structured DGM: per sparse layer of a compacted `network`, the filters a step updates."""
    layers = sparsifiable_layers(network)
    targets = gradient_filter_targets(config, [layer.name for layer in layers])
    return [gradient_filters(full_filters[layer.name], targets[layer.name],
                             int(layer.kernel.shape[-1])) for layer in layers]


def image_stream(method, tasks):
    """The Keras and LiteRT engines' stream: the method's training arrays, normalised images."""
    normalizer = Normalizer(tasks.mean, tasks.std)
    return TaskStream(tasks, lambda index: method.task_training_data(tasks, index), normalizer,
                      lambda task: normalizer(task.x_test))


class KerasEngine(Engine):
    """The Keras step engine: `ContinualModel` steps of `network` with `method`, host-side mask
    updaters. For channel-structured SparCL `network` is the compacted model and
    `full_network` / `full_filters` the full one and its filters per producer. `replication`:
    one device (default) or a tf.distribute strategy's replicas, in whose scope `network` (and
    `full_network`) were built."""

    def __init__(self, config, network, method, full_network=None, full_filters=None,
                 replication=None):
        self.config = config
        s = config.sparsity
        self.network, self.full_network, self.full_filters = network, full_network, full_filters
        self.replication = replication or Replication()
        self.replication.check_network(network)
        self.replication.check_batch("batch_size", config.batch_size)
        self.replication.check_batch("replay.batch_size", config.replay.batch_size)
        structured = self.full_filters is not None
        self.method = method
        with self.replication.scope():
            self.model = ContinualModel(
                self.network, self.method, int(network.output_shape[-1]),
                replay_batch_size=config.replay.batch_size,
                masking=s.schedule != "none" and not structured,
                gradient_masks=config.dgm if config.dgm.enabled and not structured else None,
                track_gradients=s.schedule in ("tdm", "rigl"),
                filter_gradients=self._filter_gradients() if structured and config.dgm.enabled
                else None, replication=self.replication)
            self.model.compile(optimizer=ReducedGradientsSGD(
                learning_rate=config.optimizer.learning_rate,
                momentum=config.optimizer.momentum))
            self.model.optimizer.build(self.network.trainable_variables)
        self.layer_names = [name for name, _ in sparse_units(self.network, self.full_filters)]
        self.ledger = FlopsLedger(flops_table(self.network, self.full_network))
        self.updater = None
        if structured:
            self.updater = ChannelUpdater(self.network, self.model.optimizer,
                                          filter_targets(config, self.layer_names),
                                          self.full_filters, s)
        elif s.schedule != "none":
            self.updater = MaskUpdater(self.model.sparse, layer_targets(config, self.layer_names),
                                       self.model.optimizer, s.importance_lambda, s.grow)
        if self.updater is not None:  # a restored checkpoint overwrites these initial masks
            self.updater.initialize()

    def _filter_gradients(self):
        """Structured DGM settings: filters per sparse layer and its slot mask."""
        slot_masks = {group.producer: group.mask for group in channel_masks(self.network)}
        return types.SimpleNamespace(
            keep=structured_gradient_filters(self.config, self.network, self.full_filters),
            slot_masks=[slot_masks[layer.name] for layer in sparsifiable_layers(self.network)])

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
        gradients = [v.numpy() for v in self.model.last_gradients]
        if self.full_filters is not None:
            return self.updater.update(prune_to, grow_to, seed, {
                layer.name: gradient for layer, gradient in zip(self.model.sparse, gradients)})
        rule = "rigl" if self.config.sparsity.schedule == "rigl" else "tdm"
        return self.updater.update(prune_to, grow_to, seed, gradients, rule=rule)

    def active_units(self):
        if self.full_filters is not None:
            return [int(group.mask.numpy().sum()) for group in channel_masks(self.network)]
        return [int(np.count_nonzero(layer.mask.numpy())) for layer in self.model.sparse]

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
        """Exact zeros per sparse kernel; for a compacted model, the share of the full layer's
        filters that are not active."""
        if self.full_filters is None:
            sparsity = {layer.name: float(np.mean(layer.kernel.numpy() == 0))
                        for layer in self.model.sparse}
        else:
            sparsity = {name: 1.0 - active / self.full_filters[name]
                        for name, active in zip(self.layer_names, self.active_units())}
        results = {"layer_sparsity": sparsity, "parameters": int(sum(
            np.prod(v.shape) for v in self.network.trainable_variables))}
        if self.replication.distributed:
            results["distribute"] = self.replication.describe()
        return results
