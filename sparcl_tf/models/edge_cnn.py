"""A small CNN for 28x28 inputs that trains in seconds per task on two CPU cores.

Four 3x3 conv + BN + ReLU layers (32, 32 stride 2, 64, 64 stride 2), a 128-unit hidden layer and a
linear head: about 0.46 M parameters for 28x28x1 inputs. Downsampling uses strided convs, not
max-pooling, so the train step needs no MaxPoolGrad when it is exported for on-device training.
Sparsifiable: the three inner convs and the hidden layer (the stem and the head stay dense, as in
the paper's ResNet setting, because they are small and most sensitive).
"""

import keras

from sparcl_tf.layers import MaskedConv2D, MaskedDense, ReLU

_CONVS = ((32, 1), (32, 2), (64, 1), (64, 2))


def edge_cnn(input_shape, num_classes, width=1.0, hidden_units=128):
    if width <= 0:
        raise ValueError(f"model.width must be > 0, got {width}")
    inputs = keras.Input(shape=input_shape, name="image")
    x = inputs
    for index, (filters, stride) in enumerate(_CONVS):
        name = f"conv{index + 1}"
        x = MaskedConv2D(max(1, round(filters * width)), 3, strides=stride, padding="same",
                         use_bias=False, sparsifiable=index > 0, name=name)(x)
        x = keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5, name=f"{name}_bn")(x)
        x = ReLU(name=f"{name}_relu")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = MaskedDense(max(1, round(hidden_units * width)), name="fc1")(x)
    x = ReLU(name="fc1_relu")(x)
    outputs = MaskedDense(num_classes, sparsifiable=False, kernel_initializer="glorot_uniform",
                          name="head")(x)
    return keras.Model(inputs, outputs, name="edge_cnn")
