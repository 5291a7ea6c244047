"""Structured DGM's kernel-gradient ops: a conv or matmul whose kernel gradient is computed for
selected output filters (units) only, by slicing the output gradient before the stock gradient
kernels (`Conv2DBackpropFilter`, `MatMul`); the input gradient stays exact. They run where TF's
kernels do (the Keras trainer), so a structured-DGM step really computes less.
"""

import tensorflow as tf

from sparcl_tf.builtin_gradients import selected_kernel_gradient


def conv2d_filter_subset(x, kernel, strides, padding, selection, full):
    """conv2d whose kernel gradient is computed for the output filters in `selection` (int32)
    only, by slicing the output gradient, unless `full` (bool): structured DGM. The other
    filters' gradients are zero; the input gradient is exact."""
    tf_strides, tf_padding = [1, *strides, 1], padding.upper()
    kernel_shape = tuple(int(n) for n in kernel.shape)

    # selection and full go in as inputs: a gradient function that captures variables fails
    # inside the tf.cond of the replay terms.
    @tf.custom_gradient
    def forward(x, kernel, selection, full):
        def gradient(dy):
            dx = tf.raw_ops.Conv2DBackpropInput(input_sizes=tf.shape(x), filter=kernel,
                                                out_backprop=dy, strides=tf_strides,
                                                padding=tf_padding)

            def kernel_gradient(d):  # TF's own kernel, for the filters on d's last axis
                sizes = tf.concat([tf.shape(kernel)[:3], tf.shape(d)[-1:]], 0)
                return tf.raw_ops.Conv2DBackpropFilter(input=x, filter_sizes=sizes,
                                                       out_backprop=d, strides=tf_strides,
                                                       padding=tf_padding)

            return dx, selected_kernel_gradient(kernel_gradient, dy, kernel_shape, selection,
                                                full), None, None

        return tf.nn.conv2d(x, kernel, tf_strides, tf_padding), gradient

    return forward(x, kernel, tf.convert_to_tensor(selection), tf.convert_to_tensor(full))


def matmul_unit_subset(x, kernel, selection, full):
    """x @ kernel whose kernel gradient covers the output units in `selection` only (unless
    `full`): structured DGM for dense layers."""
    kernel_shape = tuple(int(n) for n in kernel.shape)

    @tf.custom_gradient
    def forward(x, kernel, selection, full):
        def gradient(dy):
            return (tf.matmul(dy, kernel, transpose_b=True),
                    selected_kernel_gradient(lambda d: tf.matmul(x, d, transpose_a=True), dy,
                                             kernel_shape, selection, full), None, None)

        return tf.matmul(x, kernel), gradient

    return forward(x, kernel, tf.convert_to_tensor(selection), tf.convert_to_tensor(full))
