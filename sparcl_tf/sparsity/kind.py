"""A run's sparsity kind, decided once from its config (`sparsity_kind`): `Dense`, `WeightMasks`
(SparCL's TDM masks, optionally with DGM) or `FilterSlots` (channel-structured SparCL on a
compacted model, optionally with structured DGM).

The kind is the one place that knows what the run's sparsity means: which networks it trains and
counts FLOPs against, what the session plan counts (kernel entries or filter slots) and its
schedule constants, the train step's gradient masking (`sparsity.gradient_masking`, the same
object type for the Keras step and the exported train signature), the mask updater and the rule
the device's `update_masks` runs, and how a layer's sparsity is reported.
"""

import numpy as np

from sparcl_tf.errors import ConfigError
from sparcl_tf.layers import channel_masks, skip_masks, sparsifiable_layers
from sparcl_tf.models import structured_producers
from sparcl_tf.sparsity import dgm, structured
from sparcl_tf.sparsity.gradient_masking import FilterSelection, GradientMasking, WeightMasking
from sparcl_tf.sparsity.schedule import layer_targets, rate_scales
from sparcl_tf.sparsity.tdm import MaskUpdater

DEVICE_RULES = ("tdm", "rigl")  # weight-mask schedules whose masks change during a run


class SparsityKind:
    """The part every kind shares: units are the sparse layers' kernel entries. `config`: the
    run's (None for a kind made by hand, e.g. a bare `ContinualModel` in a test)."""

    unit = "weights"
    has_masks = True          # whether the sparse layers' weight masks are ever below one
    mask_rule = None          # the device's `update_masks` rule; None: masks never change
    gradient_masks = None     # DGM settings (`gradient_sparsity`, `threshold`) of weight masks
    reference_network = None  # the network FLOPs are counted against (None: the trained one)
    full_filters = None       # producer -> filters of the full layer (FilterSlots only)

    def __init__(self, config=None, shapes=None):
        self.config = config
        self.shapes = shapes  # sparse layer -> kernel shape, where the network was known

    def targets(self, names):
        """Sparse layer name -> target sparsity of the layers `names` (`schedule.layer_targets`:
        a non-uniform `sparsity.distribution` needs the kind made with its network)."""
        if self.shapes is None:
            if self.config.sparsity.distribution != "uniform":
                raise ConfigError(f"sparsity.distribution={self.config.sparsity.distribution!r} "
                                  f"needs the layers' shapes: make the kind with its network")
            return layer_targets(self.config, names)
        return layer_targets(self.config, {name: self.shapes[name] for name in names})

    @property
    def tracks_gradients(self):
        """Whether steps keep kernel gradients for the mask updates."""
        return self.mask_rule is not None

    def prepare(self, network):
        """Sets up `network`'s layers for this kind, once, before any step is traced."""

    def units(self, network):
        """[(sparse layer, units the plan counts)]."""
        return [(layer.name, int(np.prod(layer.kernel.shape)))
                for layer in sparsifiable_layers(network)]

    def unit_masks(self, network):
        """Per sparse layer, the device-state variable whose nonzeros are its active units."""
        return [f"{layer.name}__mask" for layer in sparsifiable_layers(network)]

    def gradient_masking(self, network, mask_dtype="float32"):
        return GradientMasking(sparsifiable_layers(network), self.tracks_gradients)

    def updater(self, network, optimizer):
        """The host-side mask updater (`initialize()`, `update(prune_to, grow_to, seed,
        gradients)`), or None."""
        return None

    def active_units(self, network):
        return [int(np.count_nonzero(layer.mask.numpy()))
                for layer in sparsifiable_layers(network)]

    def layer_sparsity(self, names, kernels, active):
        """Layer name -> reported sparsity, from its kernel and active units."""
        del active
        return {name: float(np.mean(kernel == 0)) for name, kernel in zip(names, kernels)}

    def description(self):
        """What the session plan's `model` needs to know this kind again (`described_kind`)."""
        return {"full_filters": None}

    def schedule_entry(self, names, horizon_tasks):
        """The kind's constants in the session plan's `schedule`."""
        s = self.config.sparsity
        targets = self.targets(names)
        return {"layer_targets": [targets[name] for name in names],
                "tdm": {"open_fraction": float(s.open_fraction),
                        "swap_fraction": float(s.swap_fraction)},
                "rigl": {"drop_fraction": float(s.rigl_drop_fraction),
                         "end_fraction": float(s.rigl_end_fraction),
                         "horizon_tasks": int(horizon_tasks)}}


class Dense(SparsityKind):
    """No masks: the plain model (masks all ones, skipped in the forward)."""

    has_masks = False

    def prepare(self, network):
        skip_masks(network)


class WeightMasks(SparsityKind):
    """Weight masks at per-layer targets (magnitude at the start; TDM or RigL updates when
    `mask_rule` says), kernels re-masked after every step; `gradient_masks`: DGM settings
    (`gradient_sparsity`, `threshold`) or None."""

    def __init__(self, config=None, mask_rule=None, gradient_masks=None, shapes=None):
        super().__init__(config, shapes)
        self.mask_rule, self.gradient_masks = mask_rule, gradient_masks

    def gradient_masking(self, network, mask_dtype="float32"):
        layers = sparsifiable_layers(network)
        return WeightMasking(layers, self.tracks_gradients, self.gradient_masks, mask_dtype,
                             rate_scales(self.config, kernel_shapes(network))
                             if self.config else None)

    def updater(self, network, optimizer):
        layers = sparsifiable_layers(network)
        s = self.config.sparsity
        return MaskUpdater(layers, layer_targets(self.config, kernel_shapes(network)),
                           optimizer, s.importance_lambda, s.grow, self.mask_rule or "tdm")


class FilterSlots(SparsityKind):
    """Channel-structured SparCL: the trained network is the compacted one, whose ChannelMask
    slots the schedule switches; `full_filters` (producer -> filters of the full layer) and the
    full network it came from (`reference_network`, for FLOPs; None where only a plan is read).
    With DGM, steps compute the kernel gradients of selected filters only."""

    unit = "filter_slots"
    has_masks = False  # the slots are switched by ChannelMask layers

    def __init__(self, config, full_filters, full_network=None):
        super().__init__(config)
        self.full_filters, self.reference_network = dict(full_filters), full_network
        self.mask_rule = "slots" if config.sparsity.schedule == "tdm" else None

    def capacities(self):
        """Producer -> filter slots of its compacted layer (the target plus the task-start
        opening)."""
        targets = structured.filter_targets(self.config, list(self.full_filters))
        return {name: structured.capacity(full, self.config.sparsity, targets[name])
                for name, full in self.full_filters.items()}

    def prepare(self, network):
        skip_masks(network)

    def units(self, network):
        return [(group.producer, int(group.mask.shape[0])) for group in channel_masks(network)]

    def unit_masks(self, network):
        return [f"{group.name}__mask" for group in channel_masks(network)]

    def gradient_masking(self, network, mask_dtype="float32"):
        layers = sparsifiable_layers(network)
        if not dgm.active(self.config):
            return GradientMasking(layers, self.tracks_gradients)
        targets = structured.gradient_filter_targets(self.config, [layer.name for layer in layers])
        slot_masks = {group.producer: group.mask for group in channel_masks(network)}
        keep = [structured.gradient_filters(self.full_filters[layer.name], targets[layer.name],
                                            int(layer.kernel.shape[-1])) for layer in layers]
        return FilterSelection(layers, keep, [slot_masks[layer.name] for layer in layers],
                               self.tracks_gradients)

    def updater(self, network, optimizer):
        names = [name for name, _ in self.units(network)]
        return structured.ChannelUpdater(network, optimizer,
                                         structured.filter_targets(self.config, names),
                                         self.full_filters, self.config.sparsity)

    def active_units(self, network):
        return [int(group.mask.numpy().sum()) for group in channel_masks(network)]

    def layer_sparsity(self, names, kernels, active):
        """The share of the full layer's filters that are not active."""
        del kernels
        return {name: 1.0 - count / self.full_filters[name] for name, count in zip(names, active)}

    def description(self):
        return {"full_filters": dict(self.full_filters)}

    def schedule_entry(self, names, horizon_tasks):
        s = self.config.sparsity
        targets = structured.filter_targets(self.config, names)
        return {"filter_counts": [list(structured.filter_counts(
            self.full_filters[name], targets[name], s.open_fraction, s.swap_fraction))
            for name in names]}


def kernel_shapes(network):
    """Sparse layer name -> kernel shape, in `network`'s order."""
    return {layer.name: tuple(int(d) for d in layer.kernel.shape)
            for layer in sparsifiable_layers(network)}


def sparsity_kind(config, network=None, shapes=None):
    """The kind of a (validated) run `config`; `network`: the model built for it (for a
    filter-granularity run the full model whose compacted version it trains); `shapes`: the
    sparse layers' kernel shapes where no Keras model exists (the board's head); with neither, a
    kind for a plan's host, which reads the targets from the plan."""
    s = config.sparsity
    if s.granularity == "filter":
        producers = structured_producers(config.model.name, network)
        return FilterSlots(config, {n: int(network.get_layer(n).kernel.shape[-1])
                                    for n in producers}, network)
    if s.schedule == "none":
        return Dense(config)
    return WeightMasks(config, s.schedule if s.schedule in DEVICE_RULES else None,
                       config.dgm if dgm.active(config) else None,
                       kernel_shapes(network) if network is not None else shapes)


def described_kind(config, model):
    """The kind of `config` for a model known only by its session plan's description `model`
    (`engines.keras.model_description`), as a host of an exported model knows it."""
    if config.sparsity.granularity == "filter":
        return FilterSlots(config, model["full_filters"])
    return sparsity_kind(config)
