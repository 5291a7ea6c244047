"""A small CNN for 28x28 inputs that trains in seconds per task on two CPU cores.

Four 3x3 conv + BN + ReLU layers (32, 32 stride 2, 64, 64 stride 2), a 128-unit hidden layer and a
linear head: about 0.46 M parameters for 28x28x1 inputs. Downsampling uses strided convs, not
max-pooling, so the train step needs no MaxPoolGrad when it is exported for on-device training.
Sparsifiable: the three inner convs and the hidden layer (the stem and the head stay dense, as in
the paper's ResNet setting, because they are small and most sensitive).
"""

import keras

from sparcl_tf.layers import ChannelMask, MaskedConv2D, MaskedDense, ReLU

_CONVS = ((32, 1), (32, 2), (64, 1), (64, 2))
_CONSUMER = {"conv2": "conv3", "conv3": "conv4", "conv4": "fc1", "fc1": "head"}


def edge_cnn(input_shape, num_classes, width=1.0, hidden_units=128, capacities=None):
    """`capacities`: None (the model as designed) or sparsifiable layer name -> filter slots, the
    compacted model of channel-structured SparCL (each followed by a ChannelMask)."""
    if width <= 0:
        raise ValueError(f"model.width must be > 0, got {width}")
    capacities = capacities or {}

    def slots(name, x):
        if name not in capacities:
            return x
        return ChannelMask(producer=name, norm=f"{name}_bn" if name != "fc1" else None,
                           consumers=[_CONSUMER[name]], name=f"{name}_slots")(x)

    inputs = keras.Input(shape=input_shape, name="image")
    x = inputs
    for index, (filters, stride) in enumerate(_CONVS):
        name = f"conv{index + 1}"
        x = MaskedConv2D(capacities.get(name, max(1, round(filters * width))), 3, strides=stride,
                         padding="same", use_bias=False, sparsifiable=index > 0, name=name)(x)
        x = keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5, name=f"{name}_bn")(x)
        x = slots(name, ReLU(name=f"{name}_relu")(x))
    x = keras.layers.Flatten(name="flatten")(x)
    x = MaskedDense(capacities.get("fc1", max(1, round(hidden_units * width))), name="fc1")(x)
    x = slots("fc1", ReLU(name="fc1_relu")(x))
    outputs = MaskedDense(num_classes, sparsifiable=False, kernel_initializer="glorot_uniform",
                          name="head")(x)
    return keras.Model(inputs, outputs, name="edge_cnn")
