"""CIFAR ResNet-18 (the SparCL / mammoth backbone) built from masked layers.

3x3 stride-1 stem without max-pool, BasicBlocks [2, 2, 2, 2] at widths 64/128/256/512 times a width
multiplier, stride 2 at the first block of stages 2-4, a 1x1 conv + BN shortcut when the shape
changes, global average pooling and one linear head. Convs have no bias. BatchNorm uses PyTorch's
momentum 0.1 / eps 1e-5 (Keras momentum 0.9). Stride-2 3x3 convs pad symmetrically like PyTorch
(explicit zero padding + 'valid'), which Keras 'same' does not. Only the 16 3x3 convs inside the
residual blocks are sparsifiable, as in the official SparCL code.
"""

import keras

from sparcl_tf.layers import ChannelMask, MaskedConv2D, MaskedDense, ReLU

STAGE_WIDTHS = (64, 128, 256, 512)
BLOCKS_PER_STAGE = (2, 2, 2, 2)


def _bn(name):
    return keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5, name=name)


def _conv3x3(x, filters, stride, name, sparsifiable=True):
    if stride == 1:
        return MaskedConv2D(filters, 3, padding="same", use_bias=False, sparsifiable=sparsifiable,
                            name=name)(x)
    x = keras.layers.ZeroPadding2D(1, name=f"{name}_pad")(x)
    return MaskedConv2D(filters, 3, strides=stride, padding="valid", use_bias=False,
                        sparsifiable=sparsifiable, name=name)(x)


def _basic_block(x, filters, stride, name, capacities):
    shortcut = x
    inner = f"{name}_conv1"
    y = _conv3x3(x, capacities.get(inner, filters), stride, inner)
    y = ReLU(name=f"{name}_relu1")(_bn(f"{name}_bn1")(y))
    if inner in capacities:  # structured: only the inner conv's filters are slots
        y = ChannelMask(producer=inner, norm=f"{name}_bn1", consumers=[f"{name}_conv2"],
                        name=f"{name}_slots")(y)
    y = _conv3x3(y, filters, 1, f"{name}_conv2", sparsifiable=inner not in capacities)
    y = _bn(f"{name}_bn2")(y)
    if stride != 1 or int(x.shape[-1]) != filters:
        shortcut = MaskedConv2D(filters, 1, strides=stride, padding="valid", use_bias=False,
                                sparsifiable=False, name=f"{name}_shortcut")(x)
        shortcut = _bn(f"{name}_shortcut_bn")(shortcut)
    y = keras.layers.Add(name=f"{name}_add")([y, shortcut])
    return ReLU(name=f"{name}_out")(y)


def resnet18(input_shape, num_classes, width=1.0, capacities=None):
    """Returns the CIFAR ResNet-18 as a functional `keras.Model` producing logits.

    `capacities`: None, or block conv1 name -> filter slots: the compacted model of
    channel-structured SparCL. Only the inner conv of each block is pruned by filters (its
    output feeds the block's conv2 alone); conv2, whose output joins the residual sum, keeps
    its filters and loses the matching input channels.
    """
    capacities = capacities or {}
    if width <= 0:
        raise ValueError(f"model.width must be > 0, got {width}")
    inputs = keras.Input(shape=input_shape, name="image")
    stem_width = max(1, round(STAGE_WIDTHS[0] * width))
    x = MaskedConv2D(stem_width, 3, padding="same", use_bias=False, sparsifiable=False,
                     name="stem_conv")(inputs)
    x = ReLU(name="stem_relu")(_bn("stem_bn")(x))
    for stage, (base, blocks) in enumerate(zip(STAGE_WIDTHS, BLOCKS_PER_STAGE)):
        filters = max(1, round(base * width))
        for block in range(blocks):
            stride = 2 if stage > 0 and block == 0 else 1
            x = _basic_block(x, filters, stride, f"stage{stage + 1}_block{block + 1}",
                             capacities)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = MaskedDense(num_classes, sparsifiable=False, kernel_initializer="glorot_uniform",
                          name="head")(x)
    return keras.Model(inputs, outputs, name="resnet18")
