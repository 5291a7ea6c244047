"""Rewriting a user's Keras model with masks and back: `sparsify` clones a functional or
Sequential model, replacing each chosen `Conv2D`, `DepthwiseConv2D` and `Dense` by its masked
layer with the same weights and a magnitude mask of exactly n - round(s n) active weights (the
project's counting rule, `sparsity.masks`), each `SeparableConv2D` NAME by the masked depthwise
and 1x1 layers it computes (NAME_depthwise, NAME_pointwise, each masked at NAME's target; a
Sequential model comes back functional), and each Keras `ReLU` (ReLU6 included) by the
library's, whose gradient exports without Flex ops, so the trainer, TDM, DGM and the TFLite export
handle it like the registry models. A layer that cannot be sparsified is one `ValueError` naming
it, why, and the supported layers. `strip` turns a sparsified model back into plain Keras;
`KeepMasksExact` keeps masked weights at zero under a plain `model.fit`. The user-facing names
are re-exported by `sparcl_tf.keras`."""

from __future__ import annotations

from typing import Dict, Optional, Sequence, Union

import keras
import numpy as np

from sparcl_tf.layers import (MASKED_LAYER_TYPES, MaskedConv2D, MaskedDense,
                              MaskedDepthwiseConv2D, ReLU, check_rewritable, masked_layers)
from sparcl_tf.sparsity.masks import magnitude_mask

SUPPORTED_LAYERS = ("Conv2D", "DepthwiseConv2D", "SeparableConv2D", "Dense")
"""The Keras layer types `sparsify` masks; any other layer stays as it is."""
_STOCK = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.SeparableConv2D,
          keras.layers.Dense)


def _unsupported(layer, why):
    return ValueError(f"layer {layer.name!r} ({type(layer).__name__}) cannot be sparsified: "
                      f"{why}; supported layers: {', '.join(SUPPORTED_LAYERS)}")


def _masked_config(layer):
    """The masked class and config for a stock Conv2D, DepthwiseConv2D or Dense, or a ValueError
    saying why not."""
    config = layer.get_config()
    common = dict(name=layer.name, use_bias=config["use_bias"],
                  kernel_initializer=config.get("kernel_initializer",
                                                config.get("depthwise_initializer")),
                  activation=config["activation"], dtype=config.get("dtype"))
    if any(config.get(f"{kind}_{what}") for kind in ("kernel", "depthwise", "pointwise")
           for what in ("regularizer", "constraint")):
        raise _unsupported(layer, "kernel regularizers and constraints are not carried over")
    if type(layer) is keras.layers.Dense:
        return MaskedDense, dict(common, units=config["units"])
    if config.get("depth_multiplier", 1) != 1:
        raise _unsupported(layer, "only depth_multiplier 1 is supported")
    if tuple(config["dilation_rate"]) != (1, 1) or config.get("groups", 1) != 1:
        raise _unsupported(layer, "dilated and grouped convolutions are not supported")
    if config["data_format"] != "channels_last":
        raise _unsupported(layer, "only channels_last convolutions are supported")
    if config["padding"] not in ("same", "valid"):
        raise _unsupported(layer, f"padding {config['padding']!r} is not supported")
    if type(layer) in (keras.layers.DepthwiseConv2D, keras.layers.SeparableConv2D):
        return MaskedDepthwiseConv2D, dict(common, kernel_size=config["kernel_size"],
                                           strides=config["strides"], padding=config["padding"])
    return MaskedConv2D, dict(common, filters=config["filters"],
                              kernel_size=config["kernel_size"], strides=config["strides"],
                              padding=config["padding"])


def _separable_pair(layer):
    """The masked depthwise and 1x1 layers a SeparableConv2D computes (bias and activation
    after the 1x1 one)."""
    masked_class, config = _masked_config(layer)
    layer_config = layer.get_config()
    depthwise = masked_class(**{k: v for k, v in dict(
        config, name=f"{layer.name}_depthwise", use_bias=False, activation=None,
        kernel_initializer=layer_config["depthwise_initializer"]).items() if v is not None})
    pointwise = MaskedConv2D(**{k: v for k, v in dict(
        config, name=f"{layer.name}_pointwise", filters=layer_config["filters"], kernel_size=1,
        strides=1, padding="valid", kernel_initializer=layer_config["pointwise_initializer"]
    ).items() if v is not None})
    return depthwise, pointwise


def _set_masked(layer, kernel, sparsity, bias=()):
    mask = magnitude_mask(kernel, float(sparsity))
    layer.kernel.assign(kernel * mask)
    layer.mask.assign(mask.astype(layer.mask.dtype))
    if layer.bias is not None:
        layer.bias.assign(bias[0])


def _plain_relu(layer):
    return (float(layer.negative_slope) == 0.0 and float(layer.threshold) == 0.0
            and layer.max_value in (None, 6, 6.0))


def _targets(model, weight_sparsity, layers):
    """Layer name -> target sparsity for the layers `sparsify` converts."""
    candidates = [layer for layer in model._flatten_layers(include_self=False, recursive=True)
                  if type(layer) in _STOCK]
    names = {layer.name for layer in model._flatten_layers(include_self=False, recursive=True)}
    wanted = [layer.name for layer in candidates] if layers is None else list(layers)
    for name in wanted:
        if name not in names:
            raise ValueError(f"sparsify: the model has no layer {name!r}")
        layer = model.get_layer(name)
        if type(layer) not in _STOCK:
            raise _unsupported(layer, "no masked version of this layer type exists yet")
    if isinstance(weight_sparsity, dict):
        unknown = sorted(set(weight_sparsity) - set(wanted))
        if unknown:
            raise ValueError(f"sparsify: weight_sparsity names layers that are not sparsified: "
                             f"{unknown}")
        targets = {name: weight_sparsity.get(name, 0.0) for name in wanted}
    else:
        targets = {name: weight_sparsity for name in wanted}
    for name, value in targets.items():
        if not isinstance(value, (int, float)) or not 0.0 <= float(value) < 1.0:
            raise ValueError(f"sparsify: weight_sparsity of {name!r} must be in [0, 1), got "
                             f"{value!r}")
    return targets


def sparsify(model: keras.Model, weight_sparsity: Union[float, Dict[str, float]] = 0.9,
             layers: Optional[Sequence[str]] = None,
             keep_dense: Sequence[str] = ()) -> keras.Model:
    """A copy of `model` whose chosen Conv2D, DepthwiseConv2D, SeparableConv2D and Dense layers
    carry exact magnitude masks.

    Args:
      model: a built functional or Sequential Keras 3 model (nested models are cloned inside).
      weight_sparsity: one fraction of zeros for every converted layer, or layer name ->
        fraction (layers left out of the dict stay dense but masked, so a schedule may prune them).
      layers: names of the layers to convert; None converts every supported layer.
      keep_dense: names of converted layers no sparsity schedule may prune (`sparsifiable`
        False, an all-ones mask: stems and heads, as SparCL keeps them); their target is 0.
    Returns a new model with the original's weights; masked entries are exactly zero.
    """
    check_rewritable(model, "sparsify")
    targets = _targets(model, weight_sparsity, layers)
    unknown = sorted(set(keep_dense) - set(targets))
    if unknown:
        raise ValueError(f"sparsify: keep_dense names layers that are not converted: {unknown}")
    targets.update({name: 0.0 for name in keep_dense})
    pointwise = {}  # id(depthwise half of a SeparableConv2D) -> its 1x1 half

    def clone(layer):
        if type(layer) is keras.layers.ReLU and _plain_relu(layer):
            return ReLU(max_value=layer.max_value, name=layer.name)  # exports without Flex
        if layer.name not in targets:
            return layer.__class__.from_config(layer.get_config())
        if type(layer) is keras.layers.SeparableConv2D:
            depthwise, pointwise[id(depthwise)] = _separable_pair(layer)
            depthwise.sparsifiable = pointwise[id(depthwise)].sparsifiable = (
                layer.name not in keep_dense)
            return depthwise
        masked_class, config = _masked_config(layer)
        return masked_class(sparsifiable=layer.name not in keep_dense,
                            **{k: v for k, v in config.items() if v is not None})

    def call(layer, *args, **kwargs):
        outputs = layer(*args, **kwargs)
        return pointwise[id(layer)](outputs) if id(layer) in pointwise else outputs

    by_name = {layer.name: layer for layer in _layers(model)}
    separable = any(type(by_name[name]) is keras.layers.SeparableConv2D for name in targets)
    if separable and isinstance(model, keras.Sequential):  # only a graph can split a layer
        model = keras.Model(model.inputs[0], model.outputs[0], name=model.name)
    copy = keras.models.clone_model(model, clone_function=clone, recursive=True,
                                    **({"call_function": call} if separable else {}))
    copied = {layer.name: layer for layer in _layers(copy)}
    for source in _layers(model):
        weights = source.get_weights()
        if type(source) is keras.layers.SeparableConv2D and source.name in targets:
            _set_masked(copied[f"{source.name}_depthwise"], weights[0], targets[source.name])
            _set_masked(copied[f"{source.name}_pointwise"], weights[1], targets[source.name],
                        weights[2:])
        elif source.name in targets:
            _set_masked(copied[source.name], weights[0], targets[source.name], weights[1:])
        elif weights and source.name in copied:
            copied[source.name].set_weights(weights)
    return copy


def strip(model: keras.Model) -> keras.Model:
    """A plain Keras copy of a sparsified model: masked layers back to Conv2D, DepthwiseConv2D
    or Dense with the masked kernel (exact zeros) as their weights, ReLUs back to Keras';
    nothing of this library left in it."""
    check_rewritable(model, "strip")

    def clone(layer):
        if isinstance(layer, ReLU):
            return keras.layers.ReLU(max_value=layer.max_value, name=layer.name)
        if not isinstance(layer, MASKED_LAYER_TYPES):
            return layer.__class__.from_config(layer.get_config())
        common = dict(name=layer.name, use_bias=layer.use_bias,
                      activation=keras.activations.serialize(layer.activation)
                      if layer.activation else None)
        if isinstance(layer, MaskedDense):
            return keras.layers.Dense(layer.units, **common)
        if isinstance(layer, MaskedDepthwiseConv2D):
            return keras.layers.DepthwiseConv2D(layer.kernel_size, strides=layer.strides,
                                                padding=layer.padding, **common)
        return keras.layers.Conv2D(layer.filters, layer.kernel_size, strides=layer.strides,
                                   padding=layer.padding, **common)

    copy = keras.models.clone_model(model, clone_function=clone, recursive=True)
    for source, target in zip(_layers(model), _layers(copy)):
        if isinstance(source, MASKED_LAYER_TYPES):
            kernel = source.kernel.numpy() * source.mask.numpy().astype(np.float32)
            target.set_weights([kernel] + ([source.bias.numpy()] if source.bias is not None
                                           else []))
        elif source.get_weights():
            target.set_weights(source.get_weights())
    return copy


def default_sparsify(model):
    """`sparsify` as the learner does it for a plain model: every supported layer masked, and a
    conv stem, the layer giving the logits and depthwise convs kept dense, as in the SparCL code
    and the registry models: at 0.90 a 1-channel 3x3 stem keeps one weight a filter (a run
    measured here learned nothing), and a depthwise conv has nine weights a channel and a few %
    of the FLOPs."""
    supported = [layer for layer in model._flatten_layers(include_self=False)
                 if type(layer).__name__ in SUPPORTED_LAYERS]
    stem = [layer for layer in supported[:1] if type(layer) is keras.layers.Conv2D]
    keep = {layer.name for layer in stem + supported[-1:]} | {
        layer.name for layer in supported if type(layer) is keras.layers.DepthwiseConv2D}
    return sparsify(model, weight_sparsity=0.0, keep_dense=sorted(keep))


def _layers(model):
    return list(model._flatten_layers(include_self=False, recursive=True))


class KeepMasksExact(keras.callbacks.Callback):
    """For a plain `model.fit` on a sparsified model: after every batch the masked kernel
    entries are set back to exactly zero (the optimizer moved them; the forward pass never
    saw them), so the trained model has the sparsity it was given."""

    def on_train_batch_end(self, batch, logs=None):
        for layer in masked_layers(self.model):
            layer.apply_mask_to_kernel()
