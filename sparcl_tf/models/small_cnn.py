"""The README's own-model example as a registry model: two stride-2 3x3 convs (32, 64, ReLU), a
128-unit hidden layer and a linear head, no BatchNorm, Keras' default initialisers; masked as
`ContinualLearner` masks a plain model (`default_sparsify`: the stem conv and the head stay
dense). It lets the binaries and the benchmark run the setting a library user starts from."""

import keras

from sparcl_tf.sparsify import default_sparsify


def small_cnn(input_shape, num_classes, width=1.0):
    if width <= 0:
        raise ValueError(f"model.width must be > 0, got {width}")

    def size(n):
        return max(1, round(n * width))

    inputs = keras.Input(shape=input_shape, name="image")
    x = keras.layers.Conv2D(size(32), 3, strides=2, padding="same", activation="relu",
                            name="conv1")(inputs)
    x = keras.layers.Conv2D(size(64), 3, strides=2, padding="same", activation="relu",
                            name="conv2")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(size(128), activation="relu", name="fc1")(x)
    outputs = keras.layers.Dense(num_classes, name="head")(x)
    return default_sparsify(keras.Model(inputs, outputs, name="small_cnn"))
