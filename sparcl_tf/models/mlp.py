"""The two-hidden-layer MLP (100 units each) of the standard Split-MNIST CL benchmarks."""

import keras

from sparcl_tf.layers import MaskedDense, ReLU


def mlp(input_shape, num_classes, width=1.0, hidden_units=100):
    if width <= 0:
        raise ValueError(f"model.width must be > 0, got {width}")
    units = max(1, round(hidden_units * width))
    inputs = keras.Input(shape=input_shape, name="image")
    x = keras.layers.Flatten(name="flatten")(inputs)
    for index in range(2):
        x = MaskedDense(units, name=f"fc{index + 1}")(x)
        x = ReLU(name=f"fc{index + 1}_relu")(x)
    outputs = MaskedDense(num_classes, sparsifiable=False, kernel_initializer="glorot_uniform",
                          name="head")(x)
    return keras.Model(inputs, outputs, name="mlp")
