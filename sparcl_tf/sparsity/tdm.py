"""Applies mask updates to a model's sparse layers: initial magnitude masks and prune-and-grow
by exact counts. Decisions come from `masks` (math), `growth` (seeded random scores) and the
session plan (counts and seeds); this module only reads weights and gradients and writes masks,
kernels and optimizer slots.

Importance (TDM): I = |W| + lambda * |G * mask|, G the dense gradient of the total loss of the last
mini-batch before the update. Growth: random (the official code; here the seeded `growth` hash,
the same on every engine), or by |dense gradient| (RigL). RigL prunes by |W| alone. Grown weights
start at exactly zero.
"""

import numpy as np

from sparcl_tf.sparsity import growth
from sparcl_tf.sparsity import masks as mask_math


def optimizer_slots(optimizer, variable):
    """Optimizer variables shaped like `variable` and named after it (momentum, ...)."""
    prefix = variable.path.replace("/", "_") + "_"
    return [v for v in optimizer.variables
            if v.path.split("/", 1)[-1].startswith(prefix)
            and tuple(v.shape) == tuple(variable.shape)]


def prune_and_grow(kernel, mask, gradient, keep, active_after, seed, layer_index, rule="tdm",
                   grow="random", importance_lambda=0.5):
    """One prune-and-grow step of one layer (numpy): (pruned mask, grown mask).

    `keep` / `active_after`: active entries after pruning / after growing; `gradient` the last
    dense kernel gradient; `rule` 'tdm' (importance prune, `grow` growth) or 'rigl' (magnitude
    prune, gradient growth); `seed`, `layer_index`: the random growth's hash inputs.
    """
    weights = np.abs(kernel).astype(np.float32)
    dense = np.abs(gradient).astype(np.float32)
    scores = weights if rule == "rigl" else weights + np.float32(importance_lambda) * dense * mask
    pruned = mask_math.prune(mask, scores, keep)
    if rule == "rigl" or grow == "gradient":
        grow_scores = dense
    else:
        grow_scores = growth.scores(np.arange(mask.size), seed, layer_index)
    return pruned, mask_math.grow(pruned, grow_scores, active_after)


class MaskUpdater:
    """Owns the masks of `layers` (the model's sparsifiable layers) at per-layer `targets`."""

    def __init__(self, layers, targets, optimizer, importance_lambda=0.5, grow="random",
                 rule="tdm"):
        self.layers = layers
        self.rule = rule  # "tdm" or "rigl"
        self.targets = targets  # layer name -> target sparsity
        self.optimizer = optimizer
        self.importance_lambda = importance_lambda
        self.grow = grow

    def _write(self, layer, mask):
        layer.mask.assign(mask.astype(np.float32))
        layer.apply_mask_to_kernel()
        mask = mask.astype(np.float32)
        for slot in optimizer_slots(self.optimizer, layer.kernel):
            slot.assign(slot.numpy() * mask)

    def initialize(self):
        """Magnitude-prunes the (randomly initialised) kernels to their targets."""
        for layer in self.layers:
            self._write(layer, mask_math.magnitude_mask(layer.kernel.numpy(),
                                                        self.targets[layer.name]))

    def update(self, prune_to, grow_to, seed, gradients):
        """One prune-and-grow step on every layer to the given active counts; `gradients` are
        the layers' last dense kernel gradients (numpy). Returns the active counts after."""
        active = []
        for index, (layer, gradient) in enumerate(zip(self.layers, gradients)):
            pruned, grown = prune_and_grow(
                layer.kernel.numpy(), layer.mask.numpy(), gradient, prune_to[index],
                grow_to[index], seed, index, rule=self.rule, grow=self.grow,
                importance_lambda=self.importance_lambda)
            # Writing the pruned mask first zeroes the dropped weights and their slots, so every
            # grown position (even one dropped and regrown in this update) starts at exactly 0.
            self._write(layer, pruned)
            self._write(layer, grown)
            active.append(int(grown.sum()))
        return active
