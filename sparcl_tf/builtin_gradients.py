"""Ops whose gradients are made of TFLite builtin ops only, for train steps exported to a .tflite.

Stock autodiff emits `ReluGrad` and `Conv2DBackpropFilter`, which exist only as Select-TF ("Flex")
ops: a model that uses them cannot train in the stock LiteRT interpreter. These replacements have
the same forward pass and mathematically the same gradients, written with ops the converter maps to
builtins. They are used when a model is built for export; Keras training keeps the stock kernels.

How they are written is chosen by what LiteRT's CPU kernels run fast (measured per layer shape
by `python -m tools.benchmark --ops_only`): CONV_2D, TRANSPOSE_CONV and FULLY_CONNECTED with a
weight tensor that is not a constant (every trained weight is a variable) take slow generic paths,
while a rank-3 BATCH_MATMUL is fast whatever its operands. So a conv is an im2col (slices of the
padded input, stride-s convs through SPACE_TO_DEPTH so every slice is contiguous) and three batch
matmuls (forward, input gradient, kernel gradient) with a col2im (PAD + ADD per offset,
DEPTH_TO_SPACE) for the input gradient, except a conv with few weights per kernel offset
(C_in x C_out <= 128, such as the narrow layers of a compacted structured model), where copying
the input into patches costs more than the slow kernels save: it stays a CONV_2D with
TRANSPOSE_CONV for the input gradient and the kernel gradient as a conv itself. Dense layers are
batch matmuls too.

Structured DGM: `selection` (int32 output-filter indices, a static count) and `full` (bool) make
the kernel gradient cover the selected filters only (the output gradient's selected columns
through the batch matmul, scattered back) unless `full`, as the Keras trainer's
`filter_gradients` does with TF's kernels; the input gradient stays exact.
"""

import tensorflow as tf

# Above this C_in x C_out a conv is exported as im2col + batch matmuls (see the docstring).
# Measured per fwd+bwd, batch 32, 2 threads (ms, conv form / matmul form): 14x14x4->7 1.19 / 2.01,
# 14x14x8->8 1.70 / 2.27, 28x28x32->4 s2 5.34 / 6.35; 28x28x32->8 s2 6.70 / 6.06,
# 14x14x16->16 4.49 / 3.05, 14x14x32->64 28.7 / 7.2.
MATMUL_MIN_WEIGHTS_PER_OFFSET = 129


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


def _batch_matmul(a, b, transpose_a=False):
    """a @ b (or a^T @ b) of two matrices as a rank-3 BATCH_MATMUL, the fast LiteRT kernel."""
    def rank3(t):  # a batch dimension not known while Keras builds the model stays -1
        return tf.reshape(t, [1] + [-1 if d is None else d for d in t.shape])

    product = tf.matmul(rank3(a), rank3(b), adjoint_a=transpose_a)
    return tf.reshape(product, [-1 if d is None else d for d in product.shape[1:]])


def _scatter_last_axis(values, index, shape):
    """A tensor of `shape`, zeros except `values` at positions `index` of its last axis."""
    rank = len(values.shape)
    to_front = [rank - 1] + list(range(rank - 1))
    scattered = tf.scatter_nd(index[:, None], tf.transpose(values, to_front),
                              tf.concat([shape[-1:], shape[:-1]], 0))
    return tf.transpose(scattered, list(range(1, rank)) + [0])


def _structured_inputs(selection, full):
    """Structured DGM's selection and flag as inputs of a custom gradient (a gradient function
    that captures variables fails inside the tf.cond of the replay terms)."""
    return () if selection is None else (tf.convert_to_tensor(selection),
                                         tf.convert_to_tensor(full))


def selected_kernel_gradient(kernel_gradient, dy, kernel_shape, selection, full):
    """Structured DGM's kernel gradient: `kernel_gradient(dy)` (output filters on dy's last
    axis) for the `selection` filters only, the others exactly zero, unless `full`; plain
    `kernel_gradient(dy)` without a selection. Shared by every form here and by the Keras
    trainer's `sparsity.filter_gradients`."""
    if selection is None:
        return kernel_gradient(dy)

    def selected_filters():
        subset = kernel_gradient(tf.gather(dy, selection, axis=len(dy.shape) - 1))
        return _scatter_last_axis(subset, selection, tf.constant(kernel_shape))

    return tf.cond(full, lambda: kernel_gradient(dy), selected_filters)


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


class _Im2col:
    """The geometry of a square-stride conv as im2col on the stride's phase grid.

    The input is padded (and cropped of rows no output reads) to a multiple of the stride and
    folded by SPACE_TO_DEPTH, so kernel offset (i, j) reads the contiguous window at
    (i // s, j // s) of phase (i % s, j % s): no strided slices, which LiteRT runs slowly.
    """

    def __init__(self, input_shape, kernel_shape, stride, padding):
        self.height, self.width, self.channels = (int(d) for d in input_shape[1:])
        kernel_h, kernel_w = kernel_shape[0], kernel_shape[1]
        self.stride = stride
        if padding == "same":
            self.out_h, self.out_w = -(-self.height // stride), -(-self.width // stride)
            self.top = _same_padding(self.height, kernel_h, stride)[0]
            self.left = _same_padding(self.width, kernel_w, stride)[0]
        else:
            self.out_h = (self.height - kernel_h) // stride + 1
            self.out_w = (self.width - kernel_w) // stride + 1
            self.top = self.left = 0
        self.grid_h = self.out_h + (kernel_h - 1) // stride
        self.grid_w = self.out_w + (kernel_w - 1) // stride
        self.offsets = [(i // stride, j // stride, (i % stride) * stride + j % stride)
                        for i in range(kernel_h) for j in range(kernel_w)]

    def windows(self, x):
        """Per kernel offset (i, j), in the kernel's order: the (B, H_out, W_out, C_in) inputs
        that offset multiplies."""
        s, rows, cols = self.stride, self.grid_h * self.stride, self.grid_w * self.stride
        x = tf.pad(x, [[0, 0], [self.top, max(rows - self.height - self.top, 0)],
                       [self.left, max(cols - self.width - self.left, 0)], [0, 0]])
        x = x[:, :rows, :cols, :]
        grid = tf.nn.space_to_depth(x, s) if s > 1 else x
        c = self.channels
        return [grid[:, di:di + self.out_h, dj:dj + self.out_w, phase * c:(phase + 1) * c]
                for di, dj, phase in self.offsets]

    def patches(self, x):
        """(B * H_out * W_out, k_h * k_w * C_in), columns in the kernel's (i, j, c) order."""
        windows = self.windows(x)
        stacked = tf.concat(windows, axis=3) if len(windows) > 1 else windows[0]
        return tf.reshape(stacked, [-1, len(windows) * self.channels])

    def input_gradient(self, patch_gradient):
        """col2im: the input's gradient from the gradient of `patches`."""
        c = self.channels
        patch_gradient = tf.reshape(patch_gradient,
                                    [-1, self.out_h, self.out_w, len(self.offsets) * c])
        return self.input_gradient_of_windows(
            [patch_gradient[..., n * c:(n + 1) * c] for n in range(len(self.offsets))])

    def input_gradient_of_windows(self, window_gradients):
        """col2im: the input's gradient from the gradient of each of `windows`."""
        s = self.stride
        phases = [None] * (s * s)
        for gradient, (di, dj, phase) in zip(window_gradients, self.offsets):
            part = tf.pad(gradient, [[0, 0], [di, self.grid_h - self.out_h - di],
                                     [dj, self.grid_w - self.out_w - dj], [0, 0]])
            phases[phase] = part if phases[phase] is None else phases[phase] + part
        phases = [tf.zeros_like(phases[0]) if p is None else p for p in phases]  # (0, 0) is set
        grid = tf.nn.depth_to_space(tf.concat(phases, axis=3), s) if s > 1 else phases[0]
        missing_h = max(self.height + self.top - self.grid_h * s, 0)
        missing_w = max(self.width + self.left - self.grid_w * s, 0)
        if missing_h or missing_w:  # input rows/cols no output reads get zero gradient
            grid = tf.pad(grid, [[0, 0], [0, missing_h], [0, missing_w], [0, 0]])
        return grid[:, self.top:self.top + self.height, self.left:self.left + self.width, :]


def _conv2d_as_matmuls(x, kernel, stride, padding, selection, full):
    geometry = _Im2col(x.shape, kernel.shape, stride, padding)
    kernel_shape = tuple(int(d) for d in kernel.shape)
    outputs = kernel_shape[-1]

    @tf.custom_gradient
    def forward(x, kernel, *structured):
        patches = geometry.patches(x)
        flat_kernel = tf.reshape(kernel, [-1, outputs])
        y = tf.reshape(_batch_matmul(patches, flat_kernel),
                       [-1, geometry.out_h, geometry.out_w, outputs])

        def gradient(dy):
            dy = tf.reshape(dy, [-1, outputs])
            dx = geometry.input_gradient(_batch_matmul(dy, tf.transpose(flat_kernel)))
            dw = selected_kernel_gradient(
                lambda d: _batch_matmul(patches, d, transpose_a=True), dy,
                (flat_kernel.shape[0], outputs), *(structured or (None, None)))
            return (dx, tf.reshape(dw, kernel_shape)) + (None,) * len(structured)

        return y, gradient

    return forward(x, kernel, *_structured_inputs(selection, full))


def _conv2d_as_conv(x, kernel, strides, padding, selection, full):
    tf_padding = padding.upper()

    @tf.custom_gradient
    def forward(x, kernel, *structured):
        y = tf.nn.conv2d(x, kernel, strides=strides, padding=tf_padding)

        def gradient(dy):
            dx = tf.nn.conv2d_transpose(dy, kernel, tf.shape(x), strides=strides,
                                        padding=tf_padding)
            dw = selected_kernel_gradient(
                lambda d: conv2d_kernel_gradient(x, d, kernel.shape, strides, padding), dy,
                tuple(int(n) for n in kernel.shape), *(structured or (None, None)))
            return (dx, dw) + (None,) * len(structured)

        return y, gradient

    return forward(x, kernel, *_structured_inputs(selection, full))


def conv2d(x, kernel, strides=(1, 1), padding="same", selection=None, full=None):
    """NHWC conv (no bias) with builtins-only gradients, written the way LiteRT runs fastest
    for its shape (module docstring); `selection` / `full`: structured DGM."""
    strides = tuple(strides)
    per_offset = int(kernel.shape[2]) * int(kernel.shape[3])
    if strides[0] == strides[1] and per_offset >= MATMUL_MIN_WEIGHTS_PER_OFFSET:
        return _conv2d_as_matmuls(x, kernel, strides[0], padding, selection, full)
    return _conv2d_as_conv(x, kernel, strides, padding, selection, full)


def matmul(x, kernel, selection=None, full=None):
    """x @ kernel as batch matmuls (forward and both gradients); `selection` / `full`:
    structured DGM over output units."""
    @tf.custom_gradient
    def forward(x, kernel, *structured):
        def gradient(dy):
            dx = _batch_matmul(dy, tf.transpose(kernel))
            dw = selected_kernel_gradient(lambda d: _batch_matmul(x, d, transpose_a=True), dy,
                                          tuple(int(n) for n in kernel.shape),
                                          *(structured or (None, None)))
            return (dx, dw) + (None,) * len(structured)

        return _batch_matmul(x, kernel), gradient

    return forward(x, kernel, *_structured_inputs(selection, full))


def depthwise_conv2d(x, kernel, stride, padding):
    """NHWC depthwise conv (channel multiplier 1, kernel (k_h, k_w, C, 1)) with builtins-only
    gradients: per kernel offset, the input window times that offset's per-channel weights
    (MUL + ADD; LiteRT's DEPTHWISE_CONV_2D takes a slow path with variable weights too)."""
    geometry = _Im2col(x.shape, kernel.shape, stride, padding)
    kernel_h, kernel_w = int(kernel.shape[0]), int(kernel.shape[1])

    @tf.custom_gradient
    def forward(x, kernel):
        windows = geometry.windows(x)
        weights = tf.reshape(kernel, [kernel_h * kernel_w, -1])  # (offsets, C)
        y = tf.add_n([window * weights[n] for n, window in enumerate(windows)])

        def gradient(dy):
            dw = tf.stack([tf.reduce_sum(window * dy, axis=[0, 1, 2]) for window in windows])
            dx = geometry.input_gradient_of_windows([dy * weights[n]
                                                     for n in range(len(windows))])
            return dx, tf.reshape(dw, kernel.shape)

        return y, gradient

    return forward(x, kernel)


@tf.custom_gradient
def relu6(x):
    """min(max(x, 0), 6) whose gradient is dy * (0 < x < 6) instead of the Flex `Relu6Grad`."""
    y = tf.minimum(tf.maximum(x, 0.0), 6.0)

    def gradient(dy):
        return dy * tf.cast(tf.logical_and(x > 0.0, x < 6.0), dy.dtype)

    return y, gradient


def hard_swish(x):
    """x * relu6(x + 3) / 6 (Keras' hard_swish), its gradient built from `relu6`'s."""
    return x * relu6(x + 3.0) * (1.0 / 6.0)
