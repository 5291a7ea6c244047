"""Builtins-only gradients: equal to TF autodiff, and convertible to TFLite without Flex ops."""

import numpy as np
import pytest
import tensorflow as tf

from sparcl_tf import builtin_gradients as ops


def _gradients(function, *tensors):
    with tf.GradientTape() as tape:
        tape.watch(tensors)
        out = function(*tensors)
        loss = tf.reduce_sum(out * tf.cos(out))  # a non-trivial upstream gradient
    return out, tape.gradient(loss, tensors)


def test_relu_matches_autodiff():
    x = tf.constant(np.random.default_rng(0).normal(size=(4, 7)), tf.float32)
    y, (dx,) = _gradients(ops.relu, x)
    y_ref, (dx_ref,) = _gradients(tf.nn.relu, x)
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_allclose(dx, dx_ref, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("shape, kernel, strides, padding", [
    ((2, 9, 9, 3), (3, 3, 3, 4), (1, 1), "same"),
    ((2, 9, 9, 3), (3, 3, 3, 4), (2, 2), "same"),
    ((2, 10, 10, 3), (3, 3, 3, 4), (2, 2), "same"),
    ((2, 10, 10, 3), (3, 3, 3, 4), (2, 2), "valid"),   # the ResNet stride-2 convs after padding
    ((3, 8, 8, 4), (1, 1, 4, 6), (2, 2), "valid"),     # ResNet 1x1 shortcuts
    ((2, 7, 5, 2), (3, 2, 2, 3), (1, 2), "valid"),
])
def test_conv_gradients_match_autodiff(shape, kernel, strides, padding):
    rng = np.random.default_rng(1)
    x = tf.constant(rng.normal(size=shape), tf.float32)
    w = tf.constant(rng.normal(size=kernel), tf.float32)
    y, (dx, dw) = _gradients(lambda a, b: ops.conv2d(a, b, strides, padding), x, w)
    y_ref, (dx_ref, dw_ref) = _gradients(
        lambda a, b: tf.nn.conv2d(a, b, strides=strides, padding=padding.upper()), x, w)
    np.testing.assert_allclose(y, y_ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(dx, dx_ref, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(dw, dw_ref, rtol=1e-4, atol=1e-4)


def _convert_builtins_only(function, *specs):
    module = tf.Module()
    module.step = tf.function(function, input_signature=specs)
    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [module.step.get_concrete_function()], module)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    return converter.convert()


def _train_step(conv, relu):
    def step(x, w):
        with tf.GradientTape() as tape:
            tape.watch(w)
            loss = tf.reduce_sum(relu(conv(x, w, (2, 2), "same")))
        return tape.gradient(loss, w)
    return step


SPECS = (tf.TensorSpec((2, 8, 8, 3), tf.float32), tf.TensorSpec((3, 3, 3, 4), tf.float32))


def test_a_conv_relu_train_step_converts_to_builtins_only_and_runs_in_litert():
    from ai_edge_litert.interpreter import Interpreter
    model = _convert_builtins_only(_train_step(ops.conv2d, ops.relu), *SPECS)
    interpreter = Interpreter(model_content=model)
    interpreter.allocate_tensors()
    rng = np.random.default_rng(2)
    x, w = (rng.normal(size=s.shape).astype(np.float32) for s in SPECS)
    for detail in interpreter.get_input_details():  # inputs matched by shape: x and w differ
        interpreter.set_tensor(detail["index"], x if tuple(detail["shape"]) == x.shape else w)
    interpreter.invoke()
    result = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    expected = _train_step(lambda a, b, s, p: tf.nn.conv2d(a, b, s, p.upper()), tf.nn.relu)(
        tf.constant(x), tf.constant(w))
    np.testing.assert_allclose(result, expected, rtol=1e-4, atol=1e-4)


def test_stock_autodiff_needs_flex_ops_the_builtins_version_avoids():
    stock = _train_step(lambda a, b, s, p: tf.nn.conv2d(a, b, s, p.upper()), tf.nn.relu)
    with pytest.raises(Exception, match="ReluGrad|Conv2DBackpropFilter"):
        _convert_builtins_only(stock, *SPECS)


@pytest.mark.parametrize("name, shape, width", [("edge_cnn", (28, 28, 1), 0.25),
                                                ("resnet18", (16, 16, 3), 0.125),
                                                ("mlp", (28, 28, 1), 0.5)])
def test_whole_model_train_step_converts_to_builtins_only(name, shape, width):
    from sparcl_tf.layers import use_builtin_gradients
    from sparcl_tf.models import build_model
    network = build_model(name, shape, 10, width=width)
    use_builtin_gradients(network)
    variables = network.trainable_variables

    def step(images, labels):
        with tf.GradientTape() as tape:
            logits = network(images, training=True)  # BatchNorm in training mode
            loss = tf.reduce_mean(
                tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits))
        return [loss] + tape.gradient(loss, variables)

    module = tf.Module()
    module.variables_ = [v.value for v in network.variables]  # tracked, so they are converted
    module.step = tf.function(step, input_signature=[
        tf.TensorSpec((4,) + shape, tf.float32), tf.TensorSpec((4,), tf.int32)])
    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [module.step.get_concrete_function()], module)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    converter.experimental_enable_resource_variables = True
    assert len(converter.convert()) > 0  # raises on any op outside the builtins
