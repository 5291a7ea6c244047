"""Channel-structured TDM: SparCL's task-aware schedule at filter granularity, on a model whose
pruned layers are physically compacted.

Masks on dense kernels save counted FLOPs but not time; a conv with fewer filters is simply a
smaller conv. So each pruned layer is built with a fixed number of filter *slots* (its capacity:
the target count plus the task-start opening, so shapes stay static and the model is traced and
exported once), and a `ChannelMask` after its activation switches slots on and off. A slot holds
one logical filter of the full layer (`ChannelMask.logical`, for rebuilding the full view).

Targets: `sparsity.structured_target` 'weights' (the presets) reads a layer's target sparsity s as
the share of weights to remove, as the unstructured presets do, and derives the filter sparsity
(`filter_sparsity`); 'filters' reads s as the filter sparsity itself. Counts are in filters:
target = n - round(s n) of the full layer's n filters; opening and swap are
max(1, round(fraction n)) (1 % of 64 filters would round to none). Per task, as TDM: first update
prune to the target and grow `opening` slots, middle updates prune `swap` below the target and
regrow to it, last update prune to the target. Slot importance: sum over the filter of
|W| + lambda |G| (G the last step's kernel gradient). Pruning zeroes the slot's filter, its bias
and BatchNorm parameters, its momentum and the consumers' input weights for it. Growth activates
free slots by the seeded `growth` hash with a fresh He-uniform filter drawn from the same hash
(the exported `update_masks` does exactly this on the device) and zero outgoing weights, so the
network's function is unchanged at the moment of growth (with zero weights on both sides a slot
would never receive a gradient).
"""

import math

import numpy as np

from sparcl_tf.layers import channel_masks, sparsifiable_layers
from sparcl_tf.models import MODEL_SPECS
from sparcl_tf.sparsity import growth
from sparcl_tf.sparsity.masks import active_count
from sparcl_tf.sparsity.schedule import layer_targets
from sparcl_tf.sparsity.tdm import optimizer_slots


def filter_sparsity(config, weight_sparsity):
    """The filter sparsity of a pruned layer whose target is `weight_sparsity` (see the module
    doc). A kernel loses the filters of its own layer and the input channels of a pruned layer
    before it. Where pruned layers feed each other (the edge CNN: conv2 -> conv3 -> conv4 -> fc1)
    a kernel keeps about the square of the filter fraction, so keeping sqrt(1 - s) of the filters
    keeps about 1 - s of the weights; where each pruned layer feeds unpruned layers only (ResNet
    block conv1 -> conv2, MobileNetV2 expand -> depthwise -> projection) producer and consumers
    keep the filter fraction itself."""
    spec = MODEL_SPECS.get(config.model.name)
    if config.sparsity.structured_target == "filters" or not (spec and spec.chained_producers):
        return weight_sparsity
    return 1.0 - math.sqrt(1.0 - weight_sparsity)


def gradient_filter_sparsity(config, weight_sparsity):
    """Structured DGM's filter sparsity of the kernel-gradient selection for a layer at target
    `weight_sparsity`: a step updates the share (1 - g) / (1 - s) of the active filters that
    unstructured DGM updates of the active weights (g = dgm.gradient_sparsity); for 'filters'
    targets, or unchained layers, that is g itself."""
    keep = 1.0 - filter_sparsity(config, weight_sparsity)
    g = config.dgm.gradient_sparsity
    if config.sparsity.structured_target == "filters":
        return g
    return 1.0 - (1.0 - g) * keep / (1.0 - weight_sparsity)


def filter_targets(config, producers):
    """Producer -> filter sparsity of a channel-structured run (from `layer_targets`)."""
    return {name: filter_sparsity(config, target)
            for name, target in layer_targets(config, producers).items()}


def gradient_filter_targets(config, producers):
    """Producer -> filter sparsity of structured DGM's kernel-gradient selection."""
    return {name: gradient_filter_sparsity(config, target)
            for name, target in layer_targets(config, producers).items()}


def filter_counts(num_filters, sparsity, open_fraction, swap_fraction):
    """(target, opening, swap) in filters for a layer of `num_filters` at `sparsity`."""
    target = active_count(num_filters, sparsity)
    opening = max(1, round(open_fraction * num_filters)) if open_fraction > 0 else 0
    swap = max(1, round(swap_fraction * num_filters)) if swap_fraction > 0 else 0
    return target, min(opening, num_filters - target), min(swap, target - 1)


def capacity(num_filters, sparsity_config, sparsity):
    target, opening, _ = filter_counts(num_filters, sparsity, sparsity_config.open_fraction,
                                       sparsity_config.swap_fraction)
    return target + opening


def gradient_filters(num_filters, gradient_sparsity, slots):
    """Filters whose kernel gradients a structured-DGM step computes: the layer's total
    gradient sparsity in filters, at least one, at most its slots."""
    return max(1, min(slots, active_count(num_filters, gradient_sparsity)))


class ChannelUpdater:
    """Owns the slot masks of a compacted `network` (its ChannelMask layers)."""

    def __init__(self, network, optimizer, targets, full_filters, sparsity_config):
        self.network, self.optimizer = network, optimizer
        self.groups = channel_masks(network)
        self.targets = targets            # producer name -> target sparsity
        self.full_filters = full_filters  # producer name -> filters of the full layer
        self.config = sparsity_config

    def _counts(self, group):
        name = group.producer
        return filter_counts(self.full_filters[name], self.targets[name],
                             self.config.open_fraction, self.config.swap_fraction)

    def _variables(self, group):
        """(variable, axis) pairs whose entries along `axis` belong to the group's slots."""
        producer = self.network.get_layer(group.producer)
        pairs = [(producer.kernel, -1)] + ([(producer.bias, 0)] if producer.bias is not None
                                           else [])
        if group.norm:
            norm = self.network.get_layer(group.norm)
            pairs += [(v, 0) for v in norm.weights]
        return pairs

    def _set(self, variable, axis, slots, values):
        array = variable.numpy()
        index = [slice(None)] * array.ndim
        index[axis] = slots
        array[tuple(index)] = values
        variable.assign(array)

    def _zero_slots(self, variable, axis, slots):
        self._set(variable, axis, slots, 0.0)
        for slot_variable in optimizer_slots(self.optimizer, variable):
            self._set(slot_variable, axis, slots, 0.0)

    def _consumer_kernels(self, group):
        return [self.network.get_layer(name).kernel for name in group.consumers]

    def _zero_consumer_inputs(self, group, slots):
        capacity_ = int(group.mask.shape[0])
        for kernel in self._consumer_kernels(group):
            for variable in [kernel] + optimizer_slots(self.optimizer, kernel):
                array = variable.numpy()
                view = array.reshape(-1, capacity_, array.shape[-1])  # positions x slots x out
                view[:, slots, :] = 0.0
                variable.assign(view.reshape(array.shape))

    def deactivate(self, group, slots):
        """Switches `slots` off: zero filter, bias, momentum and outgoing weights; BN reset."""
        slots = np.asarray(slots, np.int64)
        if not len(slots):
            return
        mask = group.mask.numpy()
        mask[slots] = 0.0
        group.mask.assign(mask)
        for variable, axis in self._variables(group):
            name = variable.path.rsplit("/", 1)[-1]
            self._zero_slots(variable, axis, slots)
            if name in ("gamma", "moving_variance"):
                self._set(variable, axis, slots, 1.0)
        self._zero_consumer_inputs(group, slots)

    def activate(self, group, slots, seed, layer_index):
        """Switches `slots` on with fresh logical filters: seeded He-uniform filter (the device's
        hash), zero outgoing weights."""
        slots = np.asarray(slots, np.int64)
        if not len(slots):
            return
        kernel = self.network.get_layer(group.producer).kernel
        fresh = growth.fresh_filter_values(tuple(kernel.shape), seed, layer_index)
        self._set(kernel, -1, slots, fresh[..., slots])
        for upstream in self.groups:  # inputs from switched-off slots upstream stay exactly 0
            if group.producer in upstream.consumers:
                self._zero_consumer_inputs(upstream, np.flatnonzero(upstream.mask.numpy() == 0))
        logical = group.logical.numpy()
        free = np.setdiff1d(np.arange(self.full_filters[group.producer]), logical[
            group.mask.numpy() > 0])
        logical[slots] = free[:len(slots)]  # bookkeeping for the full view only
        group.logical.assign(logical)
        mask = group.mask.numpy()
        mask[slots] = 1.0
        group.mask.assign(mask)

    def initialize(self):
        """Keeps the `target` slots whose initial filters are largest (L2), switches off the rest;
        slot i holds logical filter i to start with."""
        for group in self.groups:
            target, _, _ = self._counts(group)
            kernel = self.network.get_layer(group.producer).kernel.numpy()
            norms = np.sqrt((kernel.reshape(-1, kernel.shape[-1]) ** 2).sum(axis=0))
            order = np.lexsort((np.arange(len(norms)), -norms))
            group.logical.assign(np.arange(len(norms), dtype=np.int32))
            self.deactivate(group, order[target:])

    def update(self, prune_to, grow_to, seed, gradients):
        """One TDM update on every group to the given active slot counts; `gradients`: the last
        kernel gradients of the network's sparsifiable layers, in order. Returns the active slot
        counts after."""
        gradients = dict(zip((layer.name for layer in sparsifiable_layers(self.network)),
                             gradients))
        for index, group in enumerate(self.groups):
            kernel = self.network.get_layer(group.producer).kernel.numpy()
            scores = (np.abs(kernel) + np.float32(self.config.importance_lambda) * np.abs(
                gradients[group.producer])).reshape(-1, kernel.shape[-1]).sum(axis=0)
            active = np.flatnonzero(group.mask.numpy() > 0)
            if len(active) > prune_to[index]:
                ranked = active[np.lexsort((active, -scores[active]))]
                self.deactivate(group, ranked[prune_to[index]:])
                active = ranked[:prune_to[index]]
            free = np.flatnonzero(group.mask.numpy() == 0)
            count = min(max(grow_to[index] - len(active), 0), len(free))
            chosen = free[np.argsort(-growth.scores(free, seed, index), kind="stable")[:count]]
            self.activate(group, np.sort(chosen), seed, index)
        return [int(group.mask.numpy().sum()) for group in self.groups]

    def active_filters(self):
        return {group.producer: int(group.mask.numpy().sum()) for group in self.groups}


def full_view(compact, full):
    """Writes a compacted network's state into `full` (the same model built without capacities):
    each active slot's filter at its logical position, inactive filters zero with BatchNorm
    reset. `full` then computes what `compact` does (inference): the check that slots, logical
    indices and consumer slices are consistent."""
    groups = {group.producer: group for group in channel_masks(compact)}
    consumed = {name: group for group in groups.values() for name in group.consumers}
    norms = {group.norm: group for group in groups.values() if group.norm}
    followed = {name: group for group in groups.values() for name in group.followers}

    def active_map(group):
        slots = np.flatnonzero(group.mask.numpy() > 0)
        return slots, group.logical.numpy()[slots]

    for layer in full.layers:
        if not layer.weights:
            continue
        source = compact.get_layer(layer.name)
        if layer.name in followed:  # per-channel weights ((k, k, C, 1) kernels, C vectors)
            slots, logical = active_map(followed[layer.name])
            for target, variable in zip(layer.weights, source.weights):
                name, value = target.path.rsplit("/", 1)[-1], variable.numpy()
                fill = 1.0 if name in ("gamma", "moving_variance", "mask") else 0.0
                channels = -2 if len(target.shape) == 4 else 0  # depthwise kernel, vector
                view = np.full(target.shape, fill, np.float32).reshape(
                    -1, target.shape[channels])
                if name != "mask":
                    view[:, logical] = value.reshape(-1, value.shape[channels])[:, slots]
                target.assign(view.reshape(target.shape))
            continue
        out_group = groups.get(layer.name) or norms.get(layer.name)
        in_group = consumed.get(layer.name)
        for target, variable in zip(layer.weights, source.weights):
            name, value = target.path.rsplit("/", 1)[-1], variable.numpy()
            if out_group is None and in_group is None or name == "mask":
                target.assign(value if name != "mask" else np.ones(target.shape))
                continue
            result = np.full(target.shape, 1.0 if name in ("gamma", "moving_variance") else 0.0,
                             np.float32)
            out_size = target.shape[-1]
            out_src, out_dst = active_map(out_group) if out_group is not None and (
                name != "kernel" or layer.name in groups) else (np.arange(out_size),) * 2
            if name == "kernel":
                k_in = int(in_group.mask.shape[0]) if in_group is not None else None
                rows = value.reshape(-1, value.shape[-1])
                if in_group is not None:
                    in_src, in_dst = active_map(in_group)
                    n_in = target.shape[-2] if len(target.shape) > 2 else None
                    positions = rows.shape[0] // k_in
                    full_in = (n_in if n_in is not None else
                               int(np.prod(target.shape[:-1])) // positions)
                    c = value.reshape(positions, k_in, value.shape[-1])
                    f = result.reshape(positions, full_in, out_size)
                    f[:, in_dst[:, None], out_dst[None, :]] = c[:, in_src[:, None],
                                                                out_src[None, :]]
                    result = f.reshape(target.shape)
                else:
                    f = result.reshape(-1, out_size)
                    f[:, out_dst] = rows[:, out_src]
                    result = f.reshape(target.shape)
            else:  # bias or BatchNorm vectors
                result[out_dst] = value[out_src]
            target.assign(result)
    return full
