"""sparcl_tf.keras on a user's own model: exact masks in, kept through a plain fit, baked out."""

import re

import keras
import numpy as np
import pytest

from sparcl_tf import keras as sparcl_keras
from sparcl_tf.layers import MaskedConv2D, MaskedDense


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
    (lambda: keras.Sequential([keras.Input((8, 8, 3)), keras.layers.DepthwiseConv2D(
        3, name="dw")]), ["dw"], "'dw' (DepthwiseConv2D) cannot be sparsified"),
    (lambda: keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(
        4, 3, dilation_rate=2, name="dil")]), None, "dilated and grouped"),
    (lambda: keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, name="d")]), ["nope"],
     "no layer 'nope'"),
])
def test_layers_that_cannot_be_sparsified_are_one_clear_error(build, layers, message):
    with pytest.raises(ValueError, match=re.escape(message)) as error:
        sparcl_keras.sparsify(build(), weight_sparsity=0.5, layers=layers)
    if "cannot be sparsified" in message or "dilated" in message:
        assert "supported layers: Conv2D, Dense" in str(error.value)


def test_a_target_out_of_range_is_refused():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, name="d")])
    with pytest.raises(ValueError, match=r"weight_sparsity of 'd' must be in \[0, 1\)"):
        sparcl_keras.sparsify(model, weight_sparsity=1.0)
