"""Applies mask updates to a model's sparse layers: initial magnitude masks, TDM prune-and-grow,
RigL prune-and-grow. Decisions come from `masks` (math) and `schedule` (targets); this module only
reads the layers' weights and gradients and writes masks, kernels and optimizer slots.

Importance (TDM): I = |W| + lambda * |G|, G the masked gradient of the total loss of the last
mini-batch before the update. Growth: uniformly random among inactive positions (the official
code), or by |dense gradient| (RigL). RigL prunes by |W| alone. Grown weights start at exactly zero.
"""

import numpy as np

from sparcl_tf.sparsity import masks as mask_math


def _optimizer_slots(optimizer, layer):
    """Optimizer variables shaped like `layer`'s kernel and named after it (momentum, ...)."""
    prefix = layer.kernel.path.replace("/", "_") + "_"
    return [v for v in optimizer.variables
            if v.path.split("/", 1)[-1].startswith(prefix)
            and tuple(v.shape) == tuple(layer.kernel.shape)]


def tie_break_ranks(seed, layer_index, size):
    """Fixed seeded ranks that order equal scores of a layer (so resumes agree)."""
    return np.random.default_rng([seed, 29, layer_index]).permutation(size).astype(np.int32)


def prune_and_grow(kernel, mask, gradient, prune_to, grow_to, tie_break, rng, rule="tdm",
                   grow="random", importance_lambda=0.5):
    """One prune-and-grow step of one layer (numpy): (pruned mask, grown mask).

    `prune_to` / `grow_to` are sparsities; `gradient` the last dense kernel gradient; `rule`
    'tdm' (importance prune, `grow` growth) or 'rigl' (magnitude prune, gradient growth).
    """
    if rule == "rigl":
        scores = np.abs(kernel)
    else:
        scores = np.abs(kernel) + importance_lambda * np.abs(gradient * mask)
    pruned = mask_math.prune(mask, scores, prune_to, tie_break)
    if rule == "rigl" or grow == "gradient":
        grown = mask_math.grow_by_score(pruned, np.abs(gradient), grow_to, tie_break)
    else:
        grown = mask_math.grow_random(pruned, grow_to, rng)
    return pruned, grown


class MaskUpdater:
    """Owns the masks of `layers` (the model's sparsifiable layers) at per-layer `targets`."""

    def __init__(self, layers, targets, optimizer, seed, importance_lambda=0.5, grow="random"):
        self.layers = layers
        self.targets = targets  # layer name -> target sparsity
        self.optimizer = optimizer
        self.seed = seed
        self.importance_lambda = importance_lambda
        self.grow = grow
        self._tie_breaks = {}

    def _tie_break(self, index, size):
        """Fixed per-layer ranks that order equal scores (seeded, so resumes agree)."""
        if index not in self._tie_breaks:
            self._tie_breaks[index] = tie_break_ranks(self.seed, index, size)
        return self._tie_breaks[index]

    def _write(self, layer, mask):
        layer.mask.assign(mask.astype(np.float32))
        layer.apply_mask_to_kernel()
        mask = mask.astype(np.float32)
        for slot in _optimizer_slots(self.optimizer, layer):
            slot.assign(slot.numpy() * mask)

    def initialize(self):
        """Magnitude-prunes the (randomly initialised) kernels to their targets."""
        for index, layer in enumerate(self.layers):
            kernel = layer.kernel.numpy()
            self._write(layer, mask_math.magnitude_mask(
                kernel, self.targets[layer.name], self._tie_break(index, kernel.size)))

    def update(self, targets_of, gradients, rng, rule="tdm"):
        """One prune-and-grow step on every layer.

        targets_of(layer_target) -> (prune_to, grow_to); `gradients` are the layers' last dense
        kernel gradients (numpy); `rule` is 'tdm' (importance prune, configured growth) or 'rigl'
        (magnitude prune, gradient growth).
        """
        for index, (layer, gradient) in enumerate(zip(self.layers, gradients)):
            prune_to, grow_to = targets_of(self.targets[layer.name])
            pruned, grown = prune_and_grow(
                layer.kernel.numpy(), layer.mask.numpy(), gradient, prune_to, grow_to,
                self._tie_break(index, int(np.prod(layer.kernel.shape))), rng, rule=rule,
                grow=self.grow, importance_lambda=self.importance_lambda)
            # Writing the pruned mask first zeroes the dropped weights and their slots, so every
            # grown position (even one dropped and regrown in this update) starts at exactly 0.
            self._write(layer, pruned)
            self._write(layer, grown)
