"""The frozen feature extractor of the microcontroller path: trained on the host, int8 in TFLM.

The backbone is the edge CNN's conv stack followed by global average pooling (64 x width int8
features: a replay buffer of features costs F + 1 + 4 C bytes per example instead of an image).
It is trained on the host on the first `micro.pretrain_tasks` tasks (with a temporary linear
classifier, plain SGD), then frozen and converted to a full-integer int8 model (int8 input and
output, a representative set of the pre-training images). Later tasks never change it: that is
the price of fitting in a microcontroller, and why the head alone learns them.
"""

import keras
import numpy as np
import tensorflow as tf

from sparcl_tf.errors import ConfigError, import_extra
from sparcl_tf.layers import skip_masks
from sparcl_tf.models import build_model

FEATURE_LAYER = {"edge_cnn": "conv4_relu"}


def build_backbone(config, image_shape, num_classes):
    if config.model.name not in FEATURE_LAYER:
        raise ConfigError(f"the micro path supports model.name in {sorted(FEATURE_LAYER)}, got "
                          f"{config.model.name!r}")
    keras.utils.set_random_seed(config.seed)
    network = build_model(config.model.name, image_shape, num_classes, width=config.model.width)
    skip_masks(network)  # a dense, frozen extractor
    pooled = keras.layers.GlobalAveragePooling2D(name="features")(
        network.get_layer(FEATURE_LAYER[config.model.name]).output)
    return keras.Model(network.input, pooled, name="backbone")


def pretrain(backbone, x, y, num_classes, config):
    """Trains `backbone` (+ a discarded linear classifier) on normalised images `x`."""
    logits = keras.layers.Dense(num_classes, name="pretrain_classifier")(backbone.output)
    classifier = keras.Model(backbone.input, logits)
    classifier.compile(optimizer=keras.optimizers.SGD(config.optimizer.learning_rate,
                                                      momentum=0.9),
                       loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                       metrics=["accuracy"])
    history = classifier.fit(x, y, batch_size=config.batch_size,
                             epochs=config.micro.pretrain_epochs, shuffle=True, verbose=0)
    return float(history.history["accuracy"][-1])


def convert_int8(backbone, representative, batch_size=1):
    """Full-integer int8 .tflite (int8 input and output) of `backbone` for one image a call."""
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2)
    shape = (batch_size,) + tuple(backbone.input_shape[1:])
    function = tf.function(lambda images: backbone(images, training=False),
                           input_signature=[tf.TensorSpec(shape, tf.float32, name="images")])
    # Frozen: weights become constants the quantiser can see (Keras 3 variables would not be).
    frozen = convert_variables_to_constants_v2(function.get_concrete_function())
    converter = tf.lite.TFLiteConverter.from_concrete_functions([frozen], tf.Module())
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8

    def samples():
        for image in representative:
            yield [np.asarray(image, np.float32)[None]]

    converter.representative_dataset = samples
    return converter.convert()


def quantization(model_bytes, side):
    """(scale, zero point) of the model's single input or output ('input' / 'output')."""
    Interpreter = import_extra("ai_edge_litert.interpreter", "micro").Interpreter
    interpreter = Interpreter(model_content=model_bytes)
    details = (interpreter.get_input_details() if side == "input"
               else interpreter.get_output_details())[0]
    scale, zero_point = details["quantization"]
    return float(scale), int(zero_point)


def quantize(x, scale, zero_point):
    return np.clip(np.round(x / scale) + zero_point, -128, 127).astype(np.int8)
