"""Dynamic gradient masks: update only the largest-magnitude kernel gradients of sparse layers.

A refresh keeps, per layer, the `keep` entries of largest |weight-masked gradient| (the layer's
total gradient sparsity: 0.80 at weight sparsity 0.75 keeps 20 % of all entries) and stores the
surviving pattern; the steps in between multiply gradients by the stored pattern. The official
code refreshes every 30 iterations and at each epoch's first batch; a refresh also follows every
mask update. Selection is an exact top-k (`topk`) or a 16-step threshold bisection (`bisection`,
builtin ops only: what an exported .tflite or a microcontroller can run); refreshing rarely is
what makes either cheap (an exact top-k every step triples the step time).
"""

import tensorflow as tf

from sparcl_tf.errors import ConfigError
from sparcl_tf.sparsity import schedule

BISECTION_STEPS = 16


def threshold_bisection(magnitudes, keep, steps=BISECTION_STEPS):
    """A threshold t with count(|g| >= t) <= keep, within max|g| / 2**steps of the exact one."""
    flat = tf.reshape(magnitudes, [-1])
    low, high = tf.zeros([], flat.dtype), tf.reduce_max(flat) * (1 + 1e-6)
    # Counted in float (exact below 2**24 entries): TFLite Micro's SUM has no int32 kernel.
    keep = tf.cast(keep, flat.dtype)
    for _ in range(steps):  # unrolled: no while loop in the exported graph
        middle = (low + high) / 2
        too_many = tf.cast(tf.reduce_sum(tf.cast(flat >= middle, flat.dtype)) > keep, flat.dtype)
        # A 0/1 blend instead of tf.where: TFLite Micro has no SELECT (v1) kernel.
        low = too_many * middle + (1 - too_many) * low
        high = too_many * high + (1 - too_many) * middle
    return high


def gradient_mask(masked_gradient, keep, method="topk", active=None):
    """1.0 at the `keep` entries of largest |masked_gradient|, else 0.0.

    `topk` keeps exactly `keep` entries, all among `active` (the weight mask) when given: where
    fewer gradients than `keep` are non-zero at the refresh, active zero-gradient entries fill the
    rest, since the cached mask serves the following steps, whose gradients differ. `bisection`
    keeps at most `keep`, and only non-zero gradients.
    """
    magnitudes = tf.abs(masked_gradient)
    if method == "bisection":
        threshold = threshold_bisection(magnitudes, keep)
        return tf.cast((magnitudes >= threshold) & (magnitudes > 0), masked_gradient.dtype)
    flat = tf.reshape(magnitudes, [-1])
    if active is not None:  # inactive entries rank below every active one, zeros included
        flat = tf.where(tf.reshape(active, [-1]) > 0, flat, -1.0)
    keep = tf.clip_by_value(keep, 1, tf.size(flat))
    _, index = tf.math.top_k(flat, k=keep, sorted=False)
    kept = tf.scatter_nd(index[:, None], tf.ones_like(index, masked_gradient.dtype),
                         tf.shape(flat))
    return tf.reshape(kept, tf.shape(masked_gradient))


def active(config):
    """Whether a run of `config` masks gradients: DGM enabled and at least `dgm.min_epochs` epochs
    a task (its saving is small, and on a short task its masks cost the steps that matter)."""
    return bool(config.dgm.enabled) and config.epochs_per_task >= config.dgm.min_epochs


def validate(dgm_config, sparsity_config):
    """ConfigError for the first `dgm` field a run cannot use (its sparsity is the update's
    total, so it must exceed the weight sparsity)."""
    s = sparsity_config
    schedule.validate_minimum(dgm_config.min_epochs, "dgm.min_epochs")
    if dgm_config.enabled:
        if s.schedule == "none":
            raise ConfigError("dgm.enabled needs a sparsity.schedule other than 'none'")
        if not 0.0 < dgm_config.gradient_sparsity < 1.0:
            raise ConfigError(f"dgm.gradient_sparsity={dgm_config.gradient_sparsity} must be in "
                              f"(0, 1)")
        if dgm_config.gradient_sparsity <= s.weight_sparsity:
            raise ConfigError(f"dgm.gradient_sparsity={dgm_config.gradient_sparsity} must exceed "
                              f"sparsity.weight_sparsity={s.weight_sparsity} (it is the total "
                              f"sparsity of the update; at or below the weight sparsity it masks "
                              f"nothing)")
        if dgm_config.refresh_every < 1:
            raise ConfigError(f"dgm.refresh_every={dgm_config.refresh_every} must be >= 1")
        if dgm_config.threshold not in ("topk", "bisection"):
            raise ConfigError(f"dgm.threshold={dgm_config.threshold!r} must be 'topk' or "
                              f"'bisection'")
