"""Ops whose gradients are made of TFLite builtin ops only, for train steps exported to a .tflite.

Stock autodiff emits `ReluGrad` and `Conv2DBackpropFilter`, which exist only as Select-TF ("Flex")
ops: a model that uses them cannot train in the stock LiteRT interpreter. These replacements have
the same forward pass and mathematically the same gradients, written with ops the converter maps to
builtins (MUL, GREATER, CAST, CONV_2D with dilation, TRANSPOSE, PAD, TRANSPOSE_CONV, SLICE).
They are used when a model is built for export; Keras training keeps the stock kernels.
"""

import tensorflow as tf


@tf.custom_gradient
def relu(x):
    """max(x, 0) whose gradient is dy * (y > 0) instead of the Flex `ReluGrad`."""
    y = tf.maximum(x, 0.0)

    def gradient(dy):
        return dy * tf.cast(y > 0.0, dy.dtype)

    return y, gradient


def _same_padding(size, kernel, stride):
    """TensorFlow's 'SAME' padding (before, after) along one axis."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def conv2d_kernel_gradient(x, dy, kernel_shape, strides, padding):
    """d loss / d kernel of an NHWC conv, as a conv itself (no `Conv2DBackpropFilter`).

    dW[i, j, c, o] = sum over b, p, q of x_pad[b, p * s + i, q * s + j, c] * dy[b, p, q, o]: with
    the input's channels as the batch and its batch as the channels, that is a stride-1 conv of
    x_pad with dy as the filter, dilated by the stride.
    """
    kernel_h, kernel_w = kernel_shape[0], kernel_shape[1]
    stride_h, stride_w = strides
    if padding == "same":
        (top, bottom) = _same_padding(int(x.shape[1]), kernel_h, stride_h)
        (left, right) = _same_padding(int(x.shape[2]), kernel_w, stride_w)
        x = tf.pad(x, [[0, 0], [top, bottom], [left, right], [0, 0]])
    inputs = tf.transpose(x, [3, 1, 2, 0])      # (C_in, H, W, B)
    filters = tf.transpose(dy, [1, 2, 0, 3])     # (H_out, W_out, B, C_out)
    grad = tf.nn.conv2d(inputs, filters, strides=1, padding="VALID",
                        dilations=[stride_h, stride_w])  # (C_in, >= k_h, >= k_w, C_out)
    grad = grad[:, :kernel_h, :kernel_w, :]  # strided convs that skip the last rows/cols
    return tf.transpose(grad, [1, 2, 0, 3])     # (k_h, k_w, C_in, C_out)


def conv2d(x, kernel, strides=(1, 1), padding="same"):
    """NHWC conv (no bias) whose kernel gradient is `conv2d_kernel_gradient`."""
    strides = tuple(strides)
    tf_padding = padding.upper()

    @tf.custom_gradient
    def forward(x, kernel):
        y = tf.nn.conv2d(x, kernel, strides=strides, padding=tf_padding)

        def gradient(dy):
            dx = tf.nn.conv2d_transpose(dy, kernel, tf.shape(x), strides=strides,
                                        padding=tf_padding)
            return dx, conv2d_kernel_gradient(x, dy, kernel.shape, strides, padding)

        return y, gradient

    return forward(x, kernel)
