"""`update_masks` on the device, in TFLite builtins: TDM / RigL prune-and-grow of weight masks,
and filter-slot switching of channel-structured models.

Rankings are full TOPK_V2 sorts with exact counts (ties to the lower index); random growth uses
`sparsity.growth`'s integer hash with the session plan's seed, so the device grows what the host
engines grow. Dropped weights and their momentum are zeroed; grown weights start at 0 (a grown
filter slot: a fresh He-uniform filter from the same hash, zero outgoing weights).
"""

import numpy as np
import tensorflow as tf

from sparcl_tf.layers import channel_masks
from sparcl_tf.sparsity import growth


def _running_index(always_true):
    """0, 1, ..., n-1 from a runtime bool tensor that is true everywhere (for example indices >= 0).
    Computed from values because tf.range, ones_like or a cast of a bool get folded by the
    converter into an n-entry constant (1.6 MB for the edge CNN's fc1)."""
    return tf.cumsum(tf.cast(always_true, tf.int32)) - 1


def _select_top(scores, candidates, count):
    """(bool mask of the `count` highest `scores` among `candidates`, positions 0..n-1); flat;
    exact count, capped at the number of candidates; ties go to the lower index."""
    size = scores.shape[0]
    floor = tf.reduce_min(scores) - tf.ones([], scores.dtype)
    ranked = tf.where(candidates, scores, floor)
    _, order = tf.math.top_k(ranked, k=size)
    count = tf.minimum(count, tf.reduce_sum(tf.cast(candidates, tf.int32)))
    positions = _running_index(order >= 0)  # TOPK_V2's indices are all >= 0
    chosen = tf.cast(positions < count, tf.int32)
    return tf.scatter_nd(order[:, None], chosen, [size]) > 0, positions


class DeviceMasks:
    """The mask updates of `network`'s `sparse` layers: `rule` "tdm", "rigl" or "slots";
    `last_gradients` the train step's stored kernel gradients; `momenta(variable)` the optimizer
    velocities of a variable (empty without momentum)."""

    def __init__(self, network, sparse, last_gradients, momenta, rule, grow="random",
                 importance_lambda=0.5):
        self._network, self._sparse, self._last_gradients = network, sparse, last_gradients
        self._momenta = momenta
        self._mask_rule, self._grow = rule, grow
        self._importance_lambda = float(importance_lambda)

    def _write_mask(self, layer, mask):
        layer.mask.assign(mask)
        layer.apply_mask_to_kernel()
        for velocity in self._momenta(layer.kernel):
            velocity.assign(velocity * tf.cast(mask, tf.float32))

    def update(self, prune_to, grow_to, seed):
        """The `update_masks` signature: active units per sparse layer after the update."""
        if self._mask_rule == "slots":
            return self._update_slots(prune_to, grow_to, seed)
        active_after = []
        for index, (layer, gradient) in enumerate(zip(self._sparse, self._last_gradients)):
            shape = layer.kernel.shape
            mask = tf.reshape(layer.mask, [-1])
            weights = tf.abs(tf.reshape(layer.kernel, [-1]))
            dense_gradient = tf.abs(tf.reshape(gradient, [-1]))
            if self._mask_rule == "rigl":
                scores = weights
            else:
                scores = weights + self._importance_lambda * dense_gradient * tf.cast(
                    mask, tf.float32)
            pruned, positions = _select_top(scores, mask, prune_to[index])
            # Writing the pruned mask first zeroes dropped weights, so every grown position (one
            # dropped and regrown in this update too) starts at exactly 0.
            self._write_mask(layer, tf.reshape(pruned, shape))
            missing = grow_to[index] - tf.reduce_sum(tf.cast(pruned, tf.int32))
            if self._mask_rule == "rigl" or self._grow == "gradient":
                grow_scores = dense_gradient
            else:
                grow_scores = growth.scores_tf(positions, seed, index)
            grown = pruned | _select_top(grow_scores, ~pruned, tf.maximum(missing, 0))[0]
            self._write_mask(layer, tf.reshape(grown, shape))
            active_after.append(tf.reduce_sum(tf.cast(grown, tf.int32)))
        return {"active": tf.stack(active_after)}

    # --- channel-structured models: filter slots (sparsity/structured.py on the host) -------

    def _scale_slots(self, variable, keep, axis_from_end=1, fill=0.0):
        """variable <- variable * keep + fill * (1 - keep) along the slot axis (last by
        default; `axis_from_end=2` for a consumer's input axis, slots x outputs)."""
        shape = variable.shape
        if axis_from_end == 1:
            view = tf.reshape(variable, [-1, shape[-1]])
            factor = keep[None, :]
        else:
            view = tf.reshape(variable, [-1, keep.shape[0], shape[-1]])
            factor = keep[None, :, None]
        variable.assign(tf.reshape(view * factor + fill * (1.0 - factor), shape))

    def _switch_off(self, group, keep):
        """Zeroes the slots where keep == 0: filter, bias, momentum, consumers' inputs; BN reset."""
        producer = self._network.get_layer(group.producer)
        pairs = [producer.kernel] + ([producer.bias] if producer.bias is not None else [])
        for variable in pairs:
            for target in [variable] + self._momenta(variable):
                self._scale_slots(target, keep)
        if group.norm:
            norm = self._network.get_layer(group.norm)
            for variable in norm.weights:
                ones = variable.path.rsplit("/", 1)[-1] in ("gamma", "moving_variance")
                self._scale_slots(variable, keep, fill=1.0 if ones else 0.0)
                for velocity in self._momenta(variable):
                    self._scale_slots(velocity, keep)
        for name in group.consumers:
            kernel = self._network.get_layer(name).kernel
            for target in [kernel] + self._momenta(kernel):
                self._scale_slots(target, keep, axis_from_end=2)

    def _update_slots(self, prune_to, grow_to, seed):
        active_after = []
        groups = channel_masks(self._network)
        for index, (group, gradient) in enumerate(zip(groups, self._last_gradients)):
            kernel = self._network.get_layer(group.producer).kernel
            mask = group.mask > 0
            slots = mask.shape[0]
            scores = tf.reduce_sum(tf.reshape(
                tf.abs(kernel) + self._importance_lambda * tf.abs(gradient), [-1, slots]), 0)
            kept, positions = _select_top(scores, mask, prune_to[index])
            self._switch_off(group, tf.cast(kept | ~mask, tf.float32))
            count = tf.maximum(grow_to[index] - tf.reduce_sum(tf.cast(kept, tf.int32)), 0)
            grown = _select_top(growth.scores_tf(positions, seed, index), ~kept, count)[0]
            # A grown slot: a fresh He-uniform filter (seeded hash), zero outgoing weights (left
            # zero by the switch-off), no input from switched-off upstream slots.
            flat = tf.reshape(kernel, [-1])
            entries = _running_index(tf.abs(flat) >= 0.0)  # finite kernel values
            hashed = growth.scores_tf(entries, seed, index + growth.FRESH_FILTER_LAYER_OFFSET)
            limit = float(np.sqrt(6.0 / np.prod(kernel.shape[:-1])))
            fresh = tf.reshape((tf.cast(hashed, tf.float32) / float(growth.M) * 2.0 - 1.0) * limit,
                               kernel.shape)
            take = tf.cast(grown, tf.float32)
            kernel.assign(tf.reshape(
                tf.reshape(kernel, [-1, slots]) * (1.0 - take) + tf.reshape(fresh, [-1, slots])
                * take, kernel.shape))
            for upstream in groups:
                if group.producer in upstream.consumers:
                    self._scale_slots(kernel, tf.cast(upstream.mask > 0, tf.float32),
                                      axis_from_end=2)
            new_mask = kept | grown
            group.mask.assign(tf.cast(new_mask, group.mask.dtype))
            active_after.append(tf.reduce_sum(tf.cast(new_mask, tf.int32)))
        return {"active": tf.stack(active_after)}
