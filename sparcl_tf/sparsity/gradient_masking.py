"""The graph side of a run's sparsity: what one train step does to the sparse layers' kernel
gradients, written once for the Keras step and the exported `train` signature.

A masking object owns the step's sparsity state (variables per sparse layer, by group) and
  selecting(refresh)    a context around the step's forward and gradients (structured DGM: the
                        layers compute kernel gradients of the selected filters only);
  multipliers(gradients, refresh)   per sparse layer, what its kernel gradient is multiplied by,
                        recomputing DGM masks or the filter selection first when `refresh`;
  track(gradients, multipliers, refresh)   keeps the kernel gradients the next mask update reads;
  after_apply()         re-masks the kernels (weight masks: masked entries stay exactly zero);
  density(multipliers, refresh)   per sparse layer, the fraction of kernel entries updated.
`refresh` is a bool tensor, or a Python bool while a distributed step is traced (`branch`).
The kinds that make these objects are in `sparsity.kind`.
"""

import contextlib

import numpy as np
import tensorflow as tf

from sparcl_tf.distribute import branch
from sparcl_tf.sparsity import dgm
from sparcl_tf.sparsity.masks import active_count


def _state_variable(value, name):
    return tf.Variable(value, trainable=False, name=name)


class GradientMasking:
    """A dense run's step: gradients as they are. `track`: keep the kernel gradients for mask
    updates (the `last_gradient` group)."""

    def __init__(self, layers, track=False):
        self.layers = list(layers)
        self.groups = {}
        if track:
            self._add_group("last_gradient", [tf.zeros(layer.kernel.shape)
                                              for layer in self.layers])

    def _add_group(self, group, initial_values):
        """A state variable per sparse layer, named `group__layer`."""
        self.groups[group] = [_state_variable(value, f"{group}__{layer.name}")
                              for layer, value in zip(self.layers, initial_values)]

    @property
    def refreshes(self):
        """Whether steps take a `refresh` (gradient masks or filter selections to recompute)."""
        return "gradient_mask" in self.groups or "filter_selection" in self.groups

    @property
    def last_gradients(self):
        return self.groups.get("last_gradient", [])

    def state(self):
        """Device-state name (`group__layer`) -> variable, for every group."""
        return {f"{group}__{layer.name}": variable for group, variables in self.groups.items()
                for layer, variable in zip(self.layers, variables)}

    def selecting(self, refresh):
        del refresh
        return contextlib.nullcontext()

    def scaled(self, gradients):
        """The sparse kernels' gradients with their learning-rate factors (none here)."""
        return gradients

    def multipliers(self, gradients, refresh):
        del gradients, refresh
        return []

    def track(self, gradients, multipliers, refresh):
        del multipliers, refresh
        for stored, gradient in zip(self.last_gradients, gradients):
            stored.assign(gradient)

    def after_apply(self):
        pass

    def density(self, multipliers, refresh):
        del multipliers, refresh
        return tf.ones((len(self.layers),))


class WeightMasking(GradientMasking):
    """Weight masks (TDM): kernel gradients times the mask, kernels re-masked after the update;
    with `gradient_masks` (DGM settings: `gradient_sparsity`, `threshold`) also times a gradient
    mask recomputed from the step's masked gradients at a refresh, stored as `mask_dtype`;
    `rate_scales`: per layer, a factor on its kernel gradient (for SGD, on its learning rate)."""

    def __init__(self, layers, track=False, gradient_masks=None, mask_dtype="float32",
                 rate_scales=None):
        super().__init__(layers, track)
        self.settings = gradient_masks
        self.rate_scales = None if rate_scales is None else [float(s) for s in rate_scales]
        if gradient_masks is not None:
            self._add_group("gradient_mask", [tf.ones(layer.kernel.shape, mask_dtype)
                                              for layer in self.layers])
            self.keep = [active_count(int(np.prod(layer.kernel.shape)),
                                      gradient_masks.gradient_sparsity) for layer in self.layers]

    def scaled(self, gradients):
        """Applied to each replica's gradients before they are averaged, so every replica
        receives the same bits from the all-reduce (applied after it, on the mask, the mirrored
        replicas' kernels parted by a rounding within a task: tests/test_distribute.py)."""
        if self.rate_scales is None:
            return gradients
        return [gradient * scale for gradient, scale in zip(gradients, self.rate_scales)]

    def multipliers(self, gradients, refresh):
        """Per layer, 1 where its kernel entry is updated this step, else 0."""
        weight_masks = [tf.cast(layer.mask, tf.float32) for layer in self.layers]
        if self.settings is None:
            return weight_masks
        stored = self.groups["gradient_mask"]

        def recompute():
            for variable, gradient, keep, active in zip(stored, gradients, self.keep,
                                                        weight_masks):
                mask = dgm.gradient_mask(gradient * active, keep, self.settings.threshold, active)
                variable.assign(tf.cast(mask, variable.dtype))
            return tf.constant(True)

        with tf.control_dependencies([branch(refresh, recompute, lambda: tf.constant(False))]):
            return [w * tf.cast(g, tf.float32) for w, g in zip(weight_masks, stored)]

    def after_apply(self):
        for layer in self.layers:
            layer.apply_mask_to_kernel()

    def density(self, multipliers, refresh):
        del refresh
        return tf.stack([tf.reduce_mean(m) for m in multipliers]) if multipliers \
            else tf.zeros((0,))


class FilterSelection(GradientMasking):
    """Structured DGM on a compacted model: at a refresh each layer selects the `keep` active
    filters of largest summed |gradient| (inactive slots, per `slot_masks`, rank last; ties to
    the lower slot) and every step computes and applies the selected filters' kernel gradients
    only (a refresh step all of them, from which it selects)."""

    def __init__(self, layers, keep, slot_masks, track=False):
        super().__init__(layers, track)
        self.keep, self.slot_masks = list(keep), list(slot_masks)
        self._add_group("filter_selection", [
            tf.cast(tf.range(layer.kernel.shape[-1]) < keep, tf.float32)
            for layer, keep in zip(self.layers, self.keep)])

    @contextlib.contextmanager
    def selecting(self, refresh):
        selections = self.groups["filter_selection"]
        with contextlib.ExitStack() as stack:
            for layer, selection, keep in zip(self.layers, selections, self.keep):
                stack.enter_context(layer.selecting_filters(
                    tf.math.top_k(selection, k=keep).indices, tf.convert_to_tensor(refresh)))
            yield

    def multipliers(self, gradients, refresh):
        selections = self.groups["filter_selection"]

        def select():
            for selection, gradient, keep, slots in zip(selections, gradients, self.keep,
                                                        self.slot_masks):
                norms = tf.reduce_sum(tf.abs(tf.reshape(gradient, [-1, gradient.shape[-1]])), 0)
                norms = tf.where(slots > 0, norms, -1.0)
                chosen = tf.math.top_k(norms, k=keep).indices
                selection.assign(tf.scatter_nd(chosen[:, None], tf.ones([keep]),
                                               [gradient.shape[-1]]))
            return tf.constant(True)

        with tf.control_dependencies([branch(refresh, select, lambda: tf.constant(False))]):
            return [tf.identity(selection) for selection in selections]

    def track(self, gradients, multipliers, refresh):
        # The next slot update's importance sees the gradients the step computed: every filter's
        # on a refresh step, the selected filters' on the others.
        computed = tf.cast(refresh, tf.float32)
        super().track([g * tf.maximum(m, computed) for g, m in zip(gradients, multipliers)],
                      multipliers, refresh)

    def density(self, multipliers, refresh):
        del multipliers
        return tf.stack([tf.where(refresh, 1.0, keep / layer.kernel.shape[-1])
                         for keep, layer in zip(self.keep, self.layers)])
