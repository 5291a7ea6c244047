"""MobileNetV2 (Sandler et al. 2018) built from masked layers, for any input size.

Inverted residual blocks as `keras.applications.MobileNetV2`: a 1x1 expansion (t x channels,
BatchNorm, ReLU6), a 3x3 depthwise conv (BatchNorm, ReLU6), a linear 1x1 projection (BatchNorm)
and a residual add where the shape allows; widths times the multiplier rounded to multiples of 8;
a final 1x1 conv to 1280 channels, global average pooling and one linear head. Inputs smaller
than 64 pixels (Fashion-MNIST, CIFAR) keep the resolution longer, as the usual CIFAR variant
does: stride 1 in the stem and in the first 24-channel block instead of 2 (an 8x overall
reduction instead of 32x, which would leave a 28x28 image at 1x1 by the third stage).
BatchNorm uses momentum 0.9 / eps 1e-5 like the other registry models. The 1x1 convs are
sparsifiable; the stem, the depthwise convs (nine weights a channel, which unstructured
sparsity would empty) and the head stay dense. Channel-structured SparCL prunes the expansion
channels: each block's expand conv is built with `capacities` filter slots, and a ChannelMask
after the depthwise conv (whose channels they are) switches them; the projection loses the
matching input channels, and the depthwise conv and the whole block shrink with them.
"""

import keras

from sparcl_tf.layers import ChannelMask, MaskedConv2D, MaskedDense, MaskedDepthwiseConv2D, ReLU

# (expansion t, output channels c, repeats n, first stride s) per stage, as in the paper.
STAGES = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
          (6, 160, 3, 2), (6, 320, 1, 1))
SMALL_INPUT = 64  # pixels: below this the stem and the first 24-channel block keep stride 1


def divisible(value, divisor=8):
    """The channel rounding of the reference implementation: a multiple of `divisor`, never
    more than 10 % below `value`."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


def _bn(name):
    return keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5, name=name)


def _conv_bn(x, filters, kernel, stride, name, relu6=True, sparsifiable=True):
    x = MaskedConv2D(filters, kernel, strides=stride, padding="same", use_bias=False,
                     sparsifiable=sparsifiable, name=name)(x)
    x = _bn(f"{name}_bn")(x)
    return ReLU(max_value=6.0, name=f"{name}_relu6")(x) if relu6 else x


def _inverted_residual(x, expansion, filters, stride, name, capacities):
    channels = int(x.shape[-1])
    expand = f"{name}_expand"
    structured = expand in capacities
    y = x
    if expansion != 1:
        y = _conv_bn(y, capacities.get(expand, channels * expansion), 1, 1, expand)
    y = MaskedDepthwiseConv2D(3, strides=stride, padding="same", use_bias=False,
                              sparsifiable=False, name=f"{name}_depthwise")(y)
    y = ReLU(max_value=6.0, name=f"{name}_depthwise_relu6")(_bn(f"{name}_depthwise_bn")(y))
    if structured:
        y = ChannelMask(producer=expand, norm=f"{expand}_bn", consumers=[f"{name}_project"],
                        followers=[f"{name}_depthwise", f"{name}_depthwise_bn"],
                        name=f"{name}_slots")(y)
    y = _conv_bn(y, filters, 1, 1, f"{name}_project", relu6=False,
                 sparsifiable=not capacities)  # structured: only the expand convs are sparse
    if stride == 1 and channels == filters:
        y = keras.layers.Add(name=f"{name}_add")([x, y])
    return y


def mobilenet_v2(input_shape, num_classes, width=1.0, capacities=None):
    """Returns MobileNetV2 at width multiplier `width` as a functional `keras.Model` giving
    logits for `input_shape` (H, W, C) images; `capacities` (expand conv name -> filter slots)
    builds the compacted model of channel-structured SparCL, where only the expand convs are
    sparse."""
    capacities = capacities or {}
    if width <= 0:
        raise ValueError(f"model.width must be > 0, got {width}")
    small = min(input_shape[:2]) < SMALL_INPUT
    inputs = keras.Input(shape=input_shape, name="image")
    x = _conv_bn(inputs, divisible(32 * width), 3, 1 if small else 2, "stem",
                 sparsifiable=False)
    block = 0
    for stage, (expansion, channels, repeats, stride) in enumerate(STAGES):
        for repeat in range(repeats):
            first_stride = 1 if small and stage == 1 else stride
            x = _inverted_residual(x, expansion, divisible(channels * width),
                                   first_stride if repeat == 0 else 1, f"block{block}",
                                   capacities)
            block += 1
    x = _conv_bn(x, divisible(1280 * max(1.0, width)), 1, 1, "last_conv",
                 sparsifiable=not capacities)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = MaskedDense(num_classes, sparsifiable=False, kernel_initializer="glorot_uniform",
                          name="head")(x)
    return keras.Model(inputs, outputs, name="mobilenet_v2")
