"""Keras 3 layers whose kernel is multiplied by a binary mask in every forward pass.

A dense model is the all-ones mask, so every model in the library is built from these layers and
sparsity is a matter of writing the mask. The mask is a non-trainable weight: it is saved with the
model, travels into checkpoints and into a converted .tflite, and is never touched by the optimizer.
Whoever changes the mask (the TDM schedule) or applies gradients (the trainer) keeps the kernel's
masked entries at exactly zero; the layers only guarantee that masked entries never reach the
output.
The kernel gradient is the gradient of the effective kernel (dense, straight through the mask): the
trainer masks it before applying it, and sparse training reads it to decide where to grow.
"""

import contextlib

import keras
import tensorflow as tf
from keras import ops

from sparcl_tf import builtin_gradients
from sparcl_tf.sparsity import filter_gradients


# Keras activations with builtins-only gradients for export (the others export as TF has them).
_BUILTIN_ACTIVATIONS = {keras.activations.relu: builtin_gradients.relu,
                        keras.activations.relu6: builtin_gradients.relu6,
                        keras.activations.hard_swish: builtin_gradients.hard_swish}


@tf.custom_gradient
def _straight_through_mask(kernel, mask):
    """kernel * mask whose kernel gradient is the gradient of the effective (masked) kernel.

    The trainer multiplies that dense gradient by the mask before applying it, so masked weights
    still never move; keeping it dense gives prune-and-regrow (RigL-style growth) the gradient of
    inactive positions at no extra cost.
    """
    def gradient(upstream):
        return upstream, tf.zeros_like(mask)

    return kernel * mask, gradient


class _MaskedKernelMixin:
    """Shared mask bookkeeping for the masked layers."""

    def _build_masked_weights(self, kernel_shape, outputs):
        self.kernel = self.add_weight(
            name="kernel", shape=kernel_shape, initializer=self.kernel_initializer)
        self.mask = self.add_weight(
            name="mask", shape=kernel_shape, initializer="ones", trainable=False,
            dtype=self.mask_dtype or self.dtype)
        self.bias = self.add_weight(
            name="bias", shape=(outputs,), initializer="zeros") if self.use_bias else None

    def _add_bias(self, outputs):
        """Bias, then the layer's activation (ReLU with builtins-only gradients for export)."""
        outputs = outputs if self.bias is None else outputs + self.bias
        if self.activation is None:
            return outputs
        if self.builtin_gradients and self.activation in _BUILTIN_ACTIVATIONS:
            return _BUILTIN_ACTIVATIONS[self.activation](outputs)
        return self.activation(outputs)

    def _set_common(self, use_bias, kernel_initializer, sparsifiable, mask_dtype, activation):
        self.use_bias, self.sparsifiable, self.mask_dtype = use_bias, sparsifiable, mask_dtype
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        activation = keras.activations.get(activation)
        self.activation = None if activation is keras.activations.linear else activation

    def _set_window(self, kernel_size, strides, padding):
        """Kernel size, strides and padding of a conv, as pairs; padding 'same' or 'valid'."""
        self.kernel_size = (kernel_size, kernel_size) if isinstance(kernel_size, int) else tuple(
            kernel_size)
        self.strides = (strides, strides) if isinstance(strides, int) else tuple(strides)
        if padding not in ("same", "valid"):
            raise ValueError(f"padding must be 'same' or 'valid', got {padding!r}")
        self.padding = padding

    def _common_config(self):
        return dict(use_bias=self.use_bias,
                    kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
                    sparsifiable=self.sparsifiable, mask_dtype=self.mask_dtype,
                    activation=keras.activations.serialize(self.activation)
                    if self.activation else None)

    # False (`skip_masks`) where a run has no weight masks: the forward then skips the
    # (all-ones) mask entirely.
    mask_enabled = True
    # True (`use_builtin_gradients`) for graphs exported to TFLite: gradients without Flex ops,
    # written the way LiteRT runs fastest.
    builtin_gradients = False
    # Structured DGM, while a train step is traced (`selecting_filters`): kernel gradients only
    # for the output filters in `filter_selection` (int32) unless `full_kernel_gradient` (bool).
    filter_selection = None
    full_kernel_gradient = None

    @contextlib.contextmanager
    def selecting_filters(self, selection, full):
        """Within: the kernel gradient covers the output filters in `selection` (int32 tensor)
        only, the others exactly zero, unless `full` (bool tensor)."""
        self.filter_selection, self.full_kernel_gradient = selection, full
        try:
            yield
        finally:
            self.filter_selection = self.full_kernel_gradient = None

    def masked_kernel(self):
        if not (self.sparsifiable and self.mask_enabled):  # all-ones mask: skip the multiply
            return self.kernel
        return _straight_through_mask(self.kernel.value, ops.cast(self.mask, self.kernel.dtype))

    def _kernel_tensor(self):
        """The (masked) kernel as a tf value a custom gradient can take as input."""
        kernel = self.masked_kernel()
        return self.kernel.value if kernel is self.kernel else kernel

    def apply_mask_to_kernel(self):
        """Sets masked kernel entries to exactly zero."""
        self.kernel.assign(self.kernel * ops.cast(self.mask, self.kernel.dtype))


@keras.saving.register_keras_serializable(package="sparcl_tf")
class MaskedConv2D(_MaskedKernelMixin, keras.layers.Layer):
    """2-D convolution with a masked kernel (`keras.layers.Conv2D` semantics, channels last).

    Args:
      filters: as in `keras.layers.Conv2D`.
      kernel_size: as in `keras.layers.Conv2D`.
      strides: as in `keras.layers.Conv2D`.
      padding: "same" or "valid" (use an explicit `ZeroPadding2D` for PyTorch-style stride-2
        padding).
      use_bias: as in `keras.layers.Conv2D`.
      kernel_initializer: as in `keras.layers.Conv2D`.
      sparsifiable: whether the sparsity schedule may prune this layer. Dense-only layers (stems,
        shortcuts, heads in the paper's setting) carry an all-ones mask that their forward skips.
      mask_dtype: dtype of the stored mask; None = the layer's dtype. Exported models use "bool"
        (a quarter of the bytes of a float32 mask in the .tflite).
      activation: as in Keras (None: linear); relu, relu6 and hard_swish export with
        builtins-only gradients.
    """

    def __init__(self, filters, kernel_size, strides=1, padding="same", use_bias=True,
                 kernel_initializer="he_uniform", sparsifiable=True, mask_dtype=None,
                 activation=None, **kwargs):
        super().__init__(**kwargs)
        self._set_common(use_bias, kernel_initializer, sparsifiable, mask_dtype, activation)
        self._set_window(kernel_size, strides, padding)
        self.filters = int(filters)

    def build(self, input_shape):
        self._build_masked_weights(
            self.kernel_size + (int(input_shape[-1]), self.filters), self.filters)

    def call(self, inputs):
        if self.builtin_gradients:
            outputs = builtin_gradients.conv2d(inputs, self._kernel_tensor(), self.strides,
                                               self.padding, self.filter_selection,
                                               self.full_kernel_gradient)
        elif self.filter_selection is not None:
            outputs = filter_gradients.conv2d_filter_subset(
                inputs, self._kernel_tensor(), self.strides, self.padding, self.filter_selection,
                self.full_kernel_gradient)
        else:
            outputs = ops.conv(inputs, self.masked_kernel(), strides=self.strides,
                               padding=self.padding)
        return self._add_bias(outputs)

    def compute_output_shape(self, input_shape):
        return keras.layers.Conv2D(
            self.filters, self.kernel_size, strides=self.strides,
            padding=self.padding).compute_output_shape(input_shape)

    def get_config(self):
        return dict(super().get_config(), **self._common_config(), filters=self.filters,
                    kernel_size=self.kernel_size, strides=self.strides, padding=self.padding)


@keras.saving.register_keras_serializable(package="sparcl_tf")
class MaskedDepthwiseConv2D(_MaskedKernelMixin, keras.layers.Layer):
    """Depthwise 2-D convolution (channel multiplier 1) with a masked (k_h, k_w, C, 1) kernel,
    `keras.layers.DepthwiseConv2D` semantics, channels last; arguments as `MaskedConv2D`'s."""

    def __init__(self, kernel_size, strides=1, padding="same", use_bias=True,
                 kernel_initializer="he_uniform", sparsifiable=True, mask_dtype=None,
                 activation=None, **kwargs):
        super().__init__(**kwargs)
        self._set_common(use_bias, kernel_initializer, sparsifiable, mask_dtype, activation)
        self._set_window(kernel_size, strides, padding)
        if self.strides[0] != self.strides[1]:
            raise ValueError(f"depthwise strides must be equal, got {self.strides}")

    def build(self, input_shape):
        channels = int(input_shape[-1])
        self._build_masked_weights(self.kernel_size + (channels, 1), channels)

    def call(self, inputs):
        if self.builtin_gradients:
            outputs = builtin_gradients.depthwise_conv2d(inputs, self._kernel_tensor(),
                                                         self.strides[0], self.padding)
        else:
            outputs = ops.depthwise_conv(inputs, self.masked_kernel(), strides=self.strides,
                                         padding=self.padding)
        return self._add_bias(outputs)

    def compute_output_shape(self, input_shape):
        return keras.layers.DepthwiseConv2D(
            self.kernel_size, strides=self.strides,
            padding=self.padding).compute_output_shape(input_shape)

    def get_config(self):
        return dict(super().get_config(), **self._common_config(), kernel_size=self.kernel_size,
                    strides=self.strides, padding=self.padding)


@keras.saving.register_keras_serializable(package="sparcl_tf")
class MaskedDense(_MaskedKernelMixin, keras.layers.Layer):
    """Fully connected layer with a masked kernel (`keras.layers.Dense` semantics)."""

    def __init__(self, units, use_bias=True, kernel_initializer="he_uniform", sparsifiable=True,
                 mask_dtype=None, activation=None, **kwargs):
        super().__init__(**kwargs)
        self._set_common(use_bias, kernel_initializer, sparsifiable, mask_dtype, activation)
        self.units = int(units)

    def build(self, input_shape):
        self._build_masked_weights((int(input_shape[-1]), self.units), self.units)

    def call(self, inputs):
        if self.builtin_gradients:
            return self._add_bias(builtin_gradients.matmul(
                inputs, self._kernel_tensor(), self.filter_selection, self.full_kernel_gradient))
        if self.filter_selection is not None:
            return self._add_bias(filter_gradients.matmul_unit_subset(
                inputs, self._kernel_tensor(), self.filter_selection, self.full_kernel_gradient))
        return self._add_bias(ops.matmul(inputs, self.masked_kernel()))

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.units,)

    def get_config(self):
        return dict(super().get_config(), **self._common_config(), units=self.units)


@keras.saving.register_keras_serializable(package="sparcl_tf")
class ReLU(keras.layers.Layer):
    """ReLU (or ReLU6 with `max_value=6`) whose gradient avoids the Flex `ReluGrad` /
    `Relu6Grad` when `builtin_gradients` is set."""

    builtin_gradients = False

    def __init__(self, max_value=None, **kwargs):
        super().__init__(**kwargs)
        if max_value not in (None, 6, 6.0):
            raise ValueError(f"ReLU max_value must be None or 6, got {max_value!r}")
        self.max_value = None if max_value is None else 6.0

    def call(self, inputs):
        if self.max_value is not None:
            return builtin_gradients.relu6(inputs) if self.builtin_gradients else tf.nn.relu6(
                inputs)
        return builtin_gradients.relu(inputs) if self.builtin_gradients else tf.nn.relu(inputs)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return dict(super().get_config(), max_value=self.max_value)


@keras.saving.register_keras_serializable(package="sparcl_tf")
class ChannelMask(keras.layers.Layer):
    """Multiplies the last axis by a 0/1 vector: which slots of a compacted layer are active.

    Channel-structured SparCL builds each pruned layer with a fixed number of filter slots (its
    capacity) and switches whole slots on and off here, after the activation, so an inactive
    slot passes exact zeros downstream and its parameters get exact-zero gradients.
    `producer` / `norm` name the layer whose output filters are the slots and its BatchNorm;
    `consumers` the layers reading them (as input channels, or flattened positions x channels);
    `followers` per-channel layers between producer and mask (a MobileNet block's depthwise conv
    and its BatchNorm), whose channels are the slots too: the mask after them gives an inactive
    slot exact zeros downstream and zero gradients upstream, so mask updates leave them alone.
    """

    def __init__(self, producer, norm=None, consumers=(), followers=(), **kwargs):
        super().__init__(**kwargs)
        self.producer, self.norm, self.consumers = producer, norm, tuple(consumers)
        self.followers = tuple(followers)

    def build(self, input_shape):
        slots = int(input_shape[-1])
        self.mask = self.add_weight(name="mask", shape=(slots,), initializer="ones",
                                    trainable=False)
        # Which filter of the full layer each slot holds (bookkeeping for the full view).
        self.logical = self.add_weight(name="logical", shape=(slots,), initializer="zeros",
                                       trainable=False, dtype="int32")

    def call(self, inputs):
        return inputs * ops.cast(self.mask, inputs.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(producer=self.producer, norm=self.norm, consumers=list(self.consumers),
                      followers=list(self.followers))
        return config


def channel_masks(model):
    """Every ChannelMask of `model`, in construction order."""
    return [layer for layer in model._flatten_layers(include_self=False, recursive=True)
            if isinstance(layer, ChannelMask)]


MASKED_LAYER_TYPES = (MaskedConv2D, MaskedDepthwiseConv2D, MaskedDense)


def skip_masks(model):
    """The sparsifiable layers of `model` skip their (all-ones) masks in the forward: a run
    without weight masks."""
    for layer in sparsifiable_layers(model):
        layer.mask_enabled = False


def use_builtin_gradients(model, enabled=True):
    """Switches every masked layer and ReLU of `model` to gradients made of TFLite builtin
    ops."""
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, MASKED_LAYER_TYPES + (ReLU,)):
            layer.builtin_gradients = enabled


def check_rewritable(model, who):
    """ValueError from `who` unless `model` is a built functional or Sequential Keras model:
    what the library can clone with masks and read inputs and outputs from (a subclassed model's
    call is code it cannot see into)."""
    from keras.src.models.functional import Functional  # Keras 3 has no public name for it
    if not isinstance(model, keras.Model):
        raise ValueError(f"{who} needs a Keras model, got {type(model).__name__}")
    if not isinstance(model, (Functional, keras.Sequential)):
        raise ValueError(f"{who} needs a functional or Sequential Keras model; {model.name!r} is "
                         f"a subclassed {type(model).__name__}, whose layers cannot be rewritten "
                         f"with masks: build it with keras.Input(...) and layer calls")
    if not model.built:
        raise ValueError(f"{who}: build the model first (call it on data or give an Input)")


def masked_layers(model):
    """Every masked layer of `model`, in a stable (construction) order."""
    return [layer for layer in model._flatten_layers(include_self=False, recursive=True)
            if isinstance(layer, MASKED_LAYER_TYPES)]


def sparsifiable_layers(model):
    """The masked layers a sparsity schedule may prune."""
    return [layer for layer in masked_layers(model) if layer.sparsifiable]
