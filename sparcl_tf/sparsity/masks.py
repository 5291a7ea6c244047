"""Mask math on numpy arrays: exact-count pruning and growing, nothing about layers or schedules.

Counts are exact: a layer of n weights at sparsity s keeps n - round(s * n) entries, so every layer
hits its target within one weight. Ties in a score are broken by a fixed seeded permutation, never
by memory order, so results do not depend on the layout of the kernel.
"""

import numpy as np


def active_count(size, sparsity):
    """Entries a layer of `size` weights keeps at `sparsity`."""
    return size - int(round(float(sparsity) * size))


def _top_indices(scores, count, tie_break, candidates=None):
    """Flat indices of the `count` largest scores among `candidates` (default: all entries);
    among equal scores, lowest `tie_break` first.

    Linear time (a partition, then a sort of the ties at the boundary only): mask updates on
    ResNet-sized layers stay cheap.
    """
    candidates = np.arange(scores.size) if candidates is None else candidates
    values = scores.ravel()[candidates]
    if count <= 0:
        return np.empty(0, np.int64)
    if count >= len(values):
        return candidates
    boundary = np.partition(values, len(values) - count)[len(values) - count]
    above = candidates[values > boundary]
    ties = candidates[values == boundary]
    ties = ties[np.argsort(tie_break[ties], kind="stable")][:count - len(above)]
    return np.concatenate([above, ties])


def magnitude_mask(weights, sparsity, tie_break):
    """Binary mask keeping the largest-|w| entries at `sparsity`."""
    mask = np.zeros(weights.size, np.float32)
    mask[_top_indices(np.abs(weights), active_count(weights.size, sparsity), tie_break)] = 1.0
    return mask.reshape(weights.shape)


def prune(mask, scores, prune_to, tie_break):
    """Keeps the highest-scoring active entries so that the mask has sparsity `prune_to`.

    Only active entries compete; a mask already at or above `prune_to` is returned unchanged.
    """
    keep = active_count(mask.size, prune_to)
    active = np.flatnonzero(mask.ravel() > 0)
    if len(active) <= keep:
        return mask.copy()
    pruned = np.zeros(mask.size, np.float32)
    pruned[_top_indices(scores, keep, tie_break, candidates=active)] = 1.0
    return pruned.reshape(mask.shape)


def grow_count(mask, grow_to):
    """How many inactive entries growing to sparsity `grow_to` activates (0 if already there)."""
    return max(0, active_count(mask.size, grow_to) - int((mask > 0).sum()))


def grow_random(mask, grow_to, rng):
    """Activates uniformly random inactive entries until the mask has sparsity `grow_to`."""
    count = grow_count(mask, grow_to)
    grown = mask.ravel().copy()
    if count:
        inactive = np.flatnonzero(grown == 0)
        grown[rng.choice(inactive, size=count, replace=False)] = 1.0
    return grown.reshape(mask.shape)


def grow_by_score(mask, scores, grow_to, tie_break):
    """Activates the highest-scoring inactive entries (RigL: |dense gradient|) up to `grow_to`."""
    count = grow_count(mask, grow_to)
    grown = mask.ravel().copy()
    if count:
        grown[_top_indices(scores, count, tie_break, candidates=np.flatnonzero(grown == 0))] = 1.0
    return grown.reshape(mask.shape)


def sparsity(mask):
    return 1.0 - float(np.count_nonzero(mask)) / mask.size
