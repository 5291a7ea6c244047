"""Mask math on numpy arrays: exact-count pruning and growing, nothing about layers or schedules.

Counts are exact: a layer of n weights at sparsity s keeps n - round(s * n) entries. Among equal
scores the lower flat index wins, the rule the exported `update_masks` (TOPK_V2) and the board's C
code follow too, so every engine picks the same entries from the same scores.
"""

import numpy as np


def active_count(size, sparsity):
    """Entries a layer of `size` weights keeps at `sparsity`."""
    return size - int(round(float(sparsity) * size))


def top_indices(scores, count, candidates=None):
    """Flat indices of the `count` largest scores among `candidates` (default: all entries),
    ties to the lower index."""
    candidates = np.arange(scores.size) if candidates is None else np.asarray(candidates)
    if count <= 0:
        return np.empty(0, np.int64)
    if count >= len(candidates):
        return candidates
    values = scores.ravel()[candidates]
    order = np.argsort(-values.astype(np.float64), kind="stable")  # candidates are ascending
    return candidates[order[:count]]


def magnitude_mask(weights, sparsity):
    """Binary mask keeping the largest-|w| entries at `sparsity`."""
    mask = np.zeros(weights.size, np.float32)
    mask[top_indices(np.abs(weights), active_count(weights.size, sparsity))] = 1.0
    return mask.reshape(weights.shape)


def prune(mask, scores, keep):
    """Keeps the `keep` highest-scoring active entries (all of them if fewer are active)."""
    active = np.flatnonzero(mask.ravel() > 0)
    if len(active) <= keep:
        return mask.copy()
    pruned = np.zeros(mask.size, np.float32)
    pruned[top_indices(scores, keep, candidates=active)] = 1.0
    return pruned.reshape(mask.shape)


def grow(mask, scores, active_after):
    """Activates the highest-scoring inactive entries until `active_after` are active."""
    grown = mask.ravel().copy()
    count = active_after - int((grown > 0).sum())
    if count > 0:
        grown[top_indices(scores, count, candidates=np.flatnonzero(grown == 0))] = 1.0
    return grown.reshape(mask.shape)


def sparsity(mask):
    return 1.0 - float(np.count_nonzero(mask)) / mask.size
