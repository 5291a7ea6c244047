"""sparcl_tf.keras on a user's own model: exact masks in, kept through a plain fit, baked out."""

import re

import keras
import numpy as np
import pytest

from conftest import assert_litert_step_equals_keras
from sparcl_tf import keras as sparcl_keras
from sparcl_tf.layers import MaskedConv2D, MaskedDense, masked_layers
from sparcl_tf.sparsity.masks import active_count


def _functional():
    inputs = keras.Input((12, 12, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="c1")(inputs)
    x = keras.layers.Conv2D(16, 3, strides=2, padding="valid", name="c2")(x)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(20, activation="relu", name="d1")(x)
    return keras.Model(inputs, keras.layers.Dense(4, name="head")(x))


def _active(layer):
    return int(np.count_nonzero(layer.mask.numpy())), int(np.count_nonzero(layer.kernel.numpy()))


def test_sparsify_converts_every_layer_with_exact_counts_and_the_same_function():
    keras.utils.set_random_seed(0)
    model = _functional()
    sparse = sparcl_keras.sparsify(model, weight_sparsity=0.9)
    x = np.random.default_rng(0).normal(size=(5, 12, 12, 3)).astype(np.float32)
    for name in ("c1", "c2", "d1", "head"):
        layer = sparse.get_layer(name)
        assert isinstance(layer, (MaskedConv2D, MaskedDense))
        n = int(np.prod(layer.kernel.shape))
        assert _active(layer) == (n - round(0.9 * n),) * 2, name
        kept = layer.mask.numpy() > 0  # the largest |w| of the original kernel
        original = np.abs(model.get_layer(name).kernel.numpy())
        assert original[kept].min() >= original[~kept].max()
    plain = sparcl_keras.strip(sparse)
    assert not any(isinstance(layer, (MaskedConv2D, MaskedDense)) for layer in plain.layers)
    assert plain.get_layer("c1").get_config()["activation"] == "relu"
    np.testing.assert_allclose(plain(x), sparse(x), rtol=1e-5, atol=1e-6)
    dense = sparcl_keras.sparsify(model, weight_sparsity=0.0)  # same weights: same function
    np.testing.assert_allclose(dense(x), model(x), rtol=1e-5, atol=1e-6)


def test_per_layer_targets_and_a_subset_on_a_sequential_model():
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(10, name="a"),
                              keras.layers.Dense(10, name="b"), keras.layers.Dense(3, name="c")])
    sparse = sparcl_keras.sparsify(model, weight_sparsity={"a": 0.5, "b": 0.8}, layers=["a", "b"])
    assert _active(sparse.get_layer("a")) == (30, 30) and _active(sparse.get_layer("b")) == (20,
                                                                                           20)
    assert type(sparse.get_layer("c")) is keras.layers.Dense
    np.testing.assert_array_equal(sparse.get_layer("c").kernel.numpy(),
                                  model.get_layer("c").kernel.numpy())


def test_masked_weights_stay_exactly_zero_through_a_plain_fit_only_with_the_callback():
    keras.utils.set_random_seed(1)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(64, 12, 12, 3)).astype(np.float32)
    y = rng.integers(0, 4, 64)
    counts = {}
    for callbacks in ([sparcl_keras.KeepMasksExact()], []):
        sparse = sparcl_keras.sparsify(_functional(), weight_sparsity=0.8)
        before = {n: _active(sparse.get_layer(n)) for n in ("c1", "c2", "d1", "head")}
        sparse.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9),
                       loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        sparse.fit(x, y, batch_size=16, epochs=2, verbose=0, callbacks=callbacks)
        counts[bool(callbacks)] = {n: _active(sparse.get_layer(n)) == before[n]
                                   for n in before}
    assert all(counts[True].values())
    assert not any(counts[False].values())  # without it the optimizer fills the zeros in


@pytest.mark.parametrize("build, layers, message", [
    (lambda: keras.Sequential([keras.Input((8, 3)), keras.layers.Conv1D(4, 3, name="c1d")]),
     ["c1d"], "'c1d' (Conv1D) cannot be sparsified"),
    (lambda: keras.Sequential([keras.Input((8, 8, 3)), keras.layers.SeparableConv2D(
        4, 3, depth_multiplier=2, name="sep")]), None, "only depth_multiplier 1"),
    (lambda: keras.Sequential([keras.Input((8, 8, 3)), keras.layers.DepthwiseConv2D(
        3, depth_multiplier=2, name="dw")]), None, "only depth_multiplier 1"),
    (lambda: keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(
        4, 3, dilation_rate=2, name="dil")]), None, "dilated and grouped"),
    (lambda: keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, name="d")]), ["nope"],
     "no layer 'nope'"),
])
def test_layers_that_cannot_be_sparsified_are_one_clear_error(build, layers, message):
    with pytest.raises(ValueError, match=re.escape(message)) as error:
        sparcl_keras.sparsify(build(), weight_sparsity=0.5, layers=layers)
    if "no layer" not in message:
        assert "supported layers: Conv2D, DepthwiseConv2D, SeparableConv2D, Dense" in str(
            error.value)


@pytest.mark.parametrize("sequential", [False, True])
def test_a_separable_conv_becomes_its_masked_depthwise_and_pointwise_halves(sequential):
    keras.utils.set_random_seed(3)
    layers = [keras.layers.SeparableConv2D(6, 3, strides=2, padding="same", activation="relu",
                                           name="sep"),
              keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(4, name="head")]
    if sequential:
        model = keras.Sequential([keras.Input((10, 10, 3)), *layers])
    else:
        inputs = keras.Input((10, 10, 3))
        x = inputs
        for layer in layers:
            x = layer(x)
        model = keras.Model(inputs, x)
    x = np.random.default_rng(3).normal(size=(4, 10, 10, 3)).astype(np.float32)
    same = sparcl_keras.sparsify(model, weight_sparsity=0.0)
    np.testing.assert_allclose(same(x), model(x), atol=1e-5)
    sparse = sparcl_keras.sparsify(model, weight_sparsity=0.5)
    names = [layer.name for layer in masked_layers(sparse)]
    assert names == ["sep_depthwise", "sep_pointwise", "head"]
    for name in names:
        layer = sparse.get_layer(name)
        count = active_count(int(np.prod(layer.kernel.shape)), 0.5)
        assert _active(layer) == (count, count)
    np.testing.assert_allclose(sparcl_keras.strip(sparse)(x), sparse(x), atol=1e-5)


def test_a_target_out_of_range_is_refused():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, name="d")])
    with pytest.raises(ValueError, match=r"weight_sparsity of 'd' must be in \[0, 1\)"):
        sparcl_keras.sparsify(model, weight_sparsity=1.0)


def _inverted_residual_model():
    """MobileNet-class pieces: strided stem, 1x1 expand, ReLU6, padded depthwise, linear
    projection with a residual add, strided depthwise with hard-swish, global pooling."""
    inputs = keras.Input((16, 16, 1))
    x = keras.layers.Conv2D(16, 3, strides=2, padding="same", use_bias=False)(inputs)
    x = keras.layers.ReLU(6.0)(keras.layers.BatchNormalization()(x))
    y = keras.layers.Conv2D(48, 1, use_bias=False)(x)
    y = keras.layers.ReLU(6.0)(keras.layers.BatchNormalization()(y))
    y = keras.layers.DepthwiseConv2D(3, use_bias=False)(keras.layers.ZeroPadding2D(1)(y))
    y = keras.layers.ReLU(6.0)(keras.layers.BatchNormalization()(y))
    y = keras.layers.BatchNormalization()(keras.layers.Conv2D(16, 1, use_bias=False)(y))
    x = keras.layers.Add()([x, y])
    x = keras.layers.DepthwiseConv2D(3, strides=2, padding="same", activation="hard_swish")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(10)(x))


def test_a_sparsified_mobilenet_block_trains_in_litert_like_keras(tmp_path):
    from sparcl_tf.export import convert
    from sparcl_tf.export.audit import op_audit
    from sparcl_tf.export.module import TrainingModule, export_network
    from sparcl_tf.methods.derpp import DERPP
    from sparcl_tf.sparsity.kind import WeightMasks
    keras.utils.set_random_seed(0)
    sparse = sparcl_keras.sparsify(_inverted_residual_model(), weight_sparsity=0.9)
    method, batch = DERPP(cl_mask=True, alpha=0.1, beta=0.5), 8
    model = convert(TrainingModule(export_network(sparse), method, batch, batch,
                                   WeightMasks(mask_rule="tdm")), str(tmp_path))
    assert all(not entry["flex_ops"] for entry in op_audit(model).values())
    assert_litert_step_equals_keras(model, sparse, method, batch, 0.05)


def test_keras_applications_mobilenet_v2_sparsifies_with_exact_counts():
    from sparcl_tf.layers import masked_layers
    model = keras.applications.MobileNetV2(weights=None, alpha=0.35, input_shape=(32, 32, 1),
                                           classes=10, classifier_activation=None)
    sparse = sparcl_keras.sparsify(model, weight_sparsity=0.9)
    converted = masked_layers(sparse)
    assert len(converted) == sum(type(layer) in (keras.layers.Conv2D, keras.layers.Dense,
                                                 keras.layers.DepthwiseConv2D)
                                 for layer in model.layers) == 53
    for layer in converted:
        n = int(np.prod(layer.kernel.shape))
        assert _active(layer) == (n - round(0.9 * n),) * 2, layer.name
    x = np.random.default_rng(2).normal(size=(2, 32, 32, 1)).astype(np.float32)
    np.testing.assert_allclose(sparcl_keras.strip(sparse)(x), sparse(x), rtol=1e-5, atol=1e-30)
