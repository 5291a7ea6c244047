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
            self._tie_breaks[index] = np.random.default_rng([self.seed, 29, index]).permutation(
                size).astype(np.int32)
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
            kernel, mask = layer.kernel.numpy(), layer.mask.numpy()
            tie_break = self._tie_break(index, kernel.size)
            if rule == "rigl":
                scores = np.abs(kernel)
            else:
                scores = np.abs(kernel) + self.importance_lambda * np.abs(gradient * mask)
            pruned = mask_math.prune(mask, scores, prune_to, tie_break)
            # Writing the pruned mask first zeroes the dropped weights and their slots, so every
            # grown position (even one dropped and regrown in this update) starts at exactly 0.
            self._write(layer, pruned)
            if rule == "rigl" or self.grow == "gradient":
                grown = mask_math.grow_by_score(pruned, np.abs(gradient), grow_to, tie_break)
            else:
                grown = mask_math.grow_random(pruned, grow_to, rng)
            self._write(layer, grown)
