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


def _relative_error(value, reference):
    reference = np.asarray(reference)
    return float(np.abs(np.asarray(value) - reference).max() / np.abs(reference).max())


# Convs with C_in x C_out > 128 are exported as im2col + batch matmuls (the LiteRT-fast form).
MATMUL_CASES = [
    ((2, 9, 9, 8), (3, 3, 8, 17), 1, "same"),
    ((2, 9, 9, 8), (3, 3, 8, 17), 2, "same"),
    ((2, 10, 10, 8), (3, 3, 8, 17), 2, "same"),
    ((2, 11, 11, 8), (3, 3, 8, 17), 2, "valid"),
    ((2, 10, 10, 8), (3, 3, 8, 17), 1, "valid"),
    ((3, 8, 8, 8), (1, 1, 8, 20), 2, "valid"),
    ((3, 8, 8, 8), (1, 1, 8, 20), 1, "valid"),
    ((2, 9, 9, 16), (5, 5, 16, 9), 2, "same"),
]


@pytest.mark.parametrize("shape, kernel, stride, padding", MATMUL_CASES)
def test_matmul_form_conv_gradients_equal_autodiff(shape, kernel, stride, padding):
    rng = np.random.default_rng(3)
    x = tf.constant(rng.normal(size=shape), tf.float32)
    w = tf.constant(rng.normal(size=kernel), tf.float32)
    y, (dx, dw) = _gradients(lambda a, b: ops.conv2d(a, b, (stride, stride), padding), x, w)
    y_ref, (dx_ref, dw_ref) = _gradients(
        lambda a, b: tf.nn.conv2d(a, b, strides=stride, padding=padding.upper()), x, w)
    for value, reference in ((y, y_ref), (dx, dx_ref), (dw, dw_ref)):
        assert _relative_error(value, reference) <= 1e-5


def test_structured_kernel_gradient_covers_the_selected_filters_only():
    rng = np.random.default_rng(4)
    x = tf.constant(rng.normal(size=(2, 9, 9, 8)), tf.float32)
    w = tf.constant(rng.normal(size=(3, 3, 8, 6)), tf.float32)  # conv form (48 per offset)
    selection = tf.constant([4, 1], tf.int32)
    _, (_, dw_ref) = _gradients(lambda a, b: tf.nn.conv2d(a, b, 2, "SAME"), x, w)
    for full in (False, True):
        _, (_, dw) = _gradients(lambda a, b: ops.conv2d(a, b, (2, 2), "same", selection,
                                                        tf.constant(full)), x, w)
        _, (_, dw_matmuls) = _gradients(lambda a, b: ops._conv2d_as_matmuls(
            a, b, 2, "same", selection, tf.constant(full)), x, w)
        assert _relative_error(dw_matmuls, dw) <= 1e-5
        kept = [0, 1, 2, 3, 4, 5] if full else [1, 4]
        assert _relative_error(tf.gather(dw, kept, axis=3),
                               tf.gather(dw_ref, kept, axis=3)) <= 1e-5
        dropped = [c for c in range(6) if c not in kept]
        assert not np.any(dw.numpy()[..., dropped])
    # The dense layers' batch-matmul form, with and without a selection of units.
    a = tf.constant(rng.normal(size=(5, 7)), tf.float32)
    k = tf.constant(rng.normal(size=(7, 3)), tf.float32)
    y, (da, dk) = _gradients(ops.matmul, a, k)
    y_ref, (da_ref, dk_ref) = _gradients(tf.matmul, a, k)
    for value, reference in ((y, y_ref), (da, da_ref), (dk, dk_ref)):
        assert _relative_error(value, reference) <= 1e-5
    _, (_, dk) = _gradients(lambda p, q: ops.matmul(p, q, tf.constant([2]), tf.constant(False)),
                            a, k)
    assert _relative_error(dk[:, 2], dk_ref[:, 2]) <= 1e-5 and not np.any(dk[:, :2].numpy())


def test_matmul_form_train_step_uses_batch_matmuls_not_conv_kernels():
    """The point of the form: no CONV_2D / TRANSPOSE_CONV (slow in LiteRT with variable
    weights), and the same gradient in LiteRT as in TF."""
    from ai_edge_litert.interpreter import Interpreter
    specs = (tf.TensorSpec((2, 8, 8, 8), tf.float32), tf.TensorSpec((3, 3, 8, 20), tf.float32))
    module = tf.Module()
    module.step = tf.function(_train_step(ops.conv2d, ops.relu), input_signature=specs)
    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [module.step.get_concrete_function()], module)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    model = converter.convert()
    interpreter = Interpreter(model_content=model)
    interpreter.allocate_tensors()
    ops_used = {detail["op_name"] for detail in interpreter._get_ops_details()}
    assert "BATCH_MATMUL" in ops_used and not ops_used & {"CONV_2D", "TRANSPOSE_CONV"}, ops_used
    rng = np.random.default_rng(5)
    x, w = (rng.normal(size=s.shape).astype(np.float32) for s in specs)
    for detail in interpreter.get_input_details():
        interpreter.set_tensor(detail["index"], x if tuple(detail["shape"]) == x.shape else w)
    interpreter.invoke()
    result = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    expected = _train_step(lambda a, b, s, p: tf.nn.conv2d(a, b, s, p.upper()), tf.nn.relu)(
        tf.constant(x), tf.constant(w))
    assert _relative_error(result, expected) <= 1e-5


@pytest.mark.parametrize("shape, kernel, stride, padding", [
    ((2, 9, 9, 6), 3, 1, "same"), ((2, 9, 9, 6), 3, 2, "same"), ((2, 10, 10, 6), 3, 2, "valid"),
    ((2, 8, 8, 5), 5, 2, "same"), ((2, 7, 7, 4), 3, 1, "valid"),
])
def test_depthwise_conv_gradients_equal_autodiff(shape, kernel, stride, padding):
    rng = np.random.default_rng(6)
    x = tf.constant(rng.normal(size=shape), tf.float32)
    w = tf.constant(rng.normal(size=(kernel, kernel, shape[3], 1)), tf.float32)
    y, (dx, dw) = _gradients(lambda a, b: ops.depthwise_conv2d(a, b, stride, padding), x, w)
    y_ref, (dx_ref, dw_ref) = _gradients(lambda a, b: tf.nn.depthwise_conv2d(
        a, b, [1, stride, stride, 1], padding.upper()), x, w)
    for value, reference in ((y, y_ref), (dx, dx_ref), (dw, dw_ref)):
        assert _relative_error(value, reference) <= 1e-5


def test_relu6_and_hard_swish_match_autodiff():
    x = tf.constant(np.linspace(-8.0, 8.0, 161) + 0.013, tf.float32)  # no kinks on the grid
    for ours, reference in ((ops.relu6, tf.nn.relu6),
                            (ops.hard_swish, lambda t: t * tf.nn.relu6(t + 3.0) / 6.0)):
        y, (dx,) = _gradients(ours, x)
        y_ref, (dx_ref,) = _gradients(reference, x)
        np.testing.assert_allclose(y, y_ref, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(dx, dx_ref, rtol=1e-5, atol=1e-6)
