"""Training FLOPs, counted the way RigL (Evci et al. 2020) and the SparCL paper count them.

Per example, a layer with forward cost f costs f for the forward pass, f for the activation
gradients and f for the weight gradients. With weight density d_w (1 - sparsity) and weight-gradient
density d_g: f * d_w + f * d_w + f * d_g. Summed over the masked (conv and dense) layers and over
every example that goes forward and backward in a step (the current batch and each replay draw).
One FLOP here is one multiply-accumulate, as in the paper's 555.4 M for the CIFAR ResNet-18
forward; BatchNorm, activations, pooling, additions and the optimizer update are not counted.
"""

import numpy as np
import tensorflow as tf

from sparcl_tf.layers import MaskedConv2D, MaskedDense, MaskedDepthwiseConv2D, masked_layers


def layer_forward_flops(network):
    """Masked layer name -> multiply-accumulates per example in the forward pass."""
    flops = {}
    for layer in masked_layers(network):
        kernel = int(np.prod(layer.kernel.shape))
        if isinstance(layer, (MaskedConv2D, MaskedDepthwiseConv2D)):
            height, width = layer.output.shape[1:3]
            flops[layer.name] = int(height) * int(width) * kernel
        elif isinstance(layer, MaskedDense):
            positions = int(np.prod(layer.output.shape[1:-1])) if len(layer.output.shape) > 2 else 1
            flops[layer.name] = positions * kernel
    return flops


def flops_table(network, reference=None):
    """What a ledger counts with, as data (signatures.json's `flops`): `layers`, masked layer
    name -> forward multiply-accumulates per example; `dense_forward`, the forward cost the dense
    reference counts (of `reference` when given: the full model of a compacted one)."""
    layers = layer_forward_flops(network)
    dense = layer_forward_flops(reference) if reference is not None else layers
    return {"layers": layers, "dense_forward": int(sum(dense.values()))}


class FlopsLedger:
    """Accumulates training FLOPs as charged by the train step, and the same steps counted dense,
    from a `flops_table`."""

    def __init__(self, table):
        self.layer_flops = {name: int(value) for name, value in table["layers"].items()}
        self.names = list(self.layer_flops)
        self._flops = tf.constant([self.layer_flops[n] for n in self.names], tf.float64)
        self._dense_per_example = 3.0 * float(table["dense_forward"])
        self.training_flops = tf.Variable(tf.zeros([], tf.float64), trainable=False,
                                          name="flops_training")
        self.dense_flops = tf.Variable(tf.zeros([], tf.float64), trainable=False,
                                       name="flops_dense")

    def state(self):
        return {"flops_training": self.training_flops, "flops_dense": self.dense_flops}

    def step_cost(self, examples, weight_density, gradient_density):
        """FLOPs of `examples` going forward and backward at the given per-layer densities.

        Densities are vectors over `self.names` (1.0 for dense layers).
        """
        examples = tf.cast(examples, tf.float64)
        per_example = tf.reduce_sum(self._flops * (
            2.0 * tf.cast(weight_density, tf.float64) + tf.cast(gradient_density, tf.float64)))
        return examples * per_example

    def charge(self, examples, weight_density, gradient_density):
        self.training_flops.assign_add(
            self.step_cost(examples, weight_density, gradient_density))
        self.dense_flops.assign_add(tf.cast(examples, tf.float64) * self._dense_per_example)

    def forward_flops(self):
        return int(sum(self.layer_flops.values()))
