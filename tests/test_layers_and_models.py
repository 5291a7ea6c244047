import keras
import numpy as np
import pytest

from sparcl_tf.errors import ConfigError
from sparcl_tf.layers import MaskedConv2D, MaskedDense, masked_layers, sparsifiable_layers
from sparcl_tf.models import build_model


def _random_mask(shape, seed):
    return (np.random.default_rng(seed).random(shape) > 0.6).astype(np.float32)


@pytest.mark.parametrize("strides, padding", [(1, "same"), (2, "valid"), (2, "same")])
def test_masked_conv_equals_conv_with_masked_kernel(strides, padding):
    x = np.random.default_rng(0).normal(size=(2, 9, 9, 3)).astype(np.float32)
    layer = MaskedConv2D(4, 3, strides=strides, padding=padding)
    layer.build(x.shape)
    mask = _random_mask(layer.kernel.shape, 1)
    layer.mask.assign(mask)
    reference = keras.layers.Conv2D(4, 3, strides=strides, padding=padding)
    reference.build(x.shape)
    reference.set_weights([layer.kernel.numpy() * mask, layer.bias.numpy()])
    np.testing.assert_allclose(layer(x), reference(x), rtol=1e-5, atol=1e-5)


def test_masked_dense_equals_dense_with_masked_kernel():
    x = np.random.default_rng(0).normal(size=(3, 7)).astype(np.float32)
    layer = MaskedDense(5)
    layer.build(x.shape)
    mask = _random_mask((7, 5), 2)
    layer.mask.assign(mask)
    expected = x @ (layer.kernel.numpy() * mask) + layer.bias.numpy()
    np.testing.assert_allclose(layer(x), expected, rtol=1e-5, atol=1e-5)


def test_mask_is_a_non_trainable_all_ones_weight_by_default():
    layer = MaskedDense(3)
    layer.build((None, 4))
    assert [w.path for w in layer.non_trainable_weights] == [layer.mask.path]
    assert layer.mask.path not in [w.path for w in layer.trainable_weights]
    np.testing.assert_array_equal(layer.mask.numpy(), np.ones((4, 3)))


def test_apply_mask_to_kernel_zeroes_exactly_the_masked_entries():
    layer = MaskedConv2D(2, 3)
    layer.build((None, 5, 5, 2))
    mask = _random_mask(layer.kernel.shape, 3)
    layer.mask.assign(mask)
    before = layer.kernel.numpy()
    layer.apply_mask_to_kernel()
    after = layer.kernel.numpy()
    assert np.all(after[mask == 0] == 0)
    np.testing.assert_array_equal(after[mask == 1], before[mask == 1])


def test_masked_layers_survive_keras_serialization():
    model = build_model("edge_cnn", (28, 28, 1), 10, width=0.25)
    clone = keras.Model.from_config(model.get_config())
    assert [type(layer).__name__ for layer in masked_layers(clone)] == [
        type(layer).__name__ for layer in masked_layers(model)]
    assert [layer.sparsifiable for layer in masked_layers(clone)] == [
        layer.sparsifiable for layer in masked_layers(model)]


def test_resnet18_matches_the_cifar_architecture():
    model = build_model("resnet18", (32, 32, 3), 10)
    trainable = sum(int(np.prod(v.shape)) for v in model.trainable_variables)
    assert trainable == 11_173_962  # torchvision-style CIFAR ResNet-18 with a 10-way head
    sparse = sparsifiable_layers(model)
    assert len(sparse) == 16 and all(layer.kernel_size == (3, 3) for layer in sparse)
    dense = [layer.name for layer in masked_layers(model) if not layer.sparsifiable]
    assert dense == ["stem_conv", "stage2_block1_shortcut", "stage3_block1_shortcut",
                     "stage4_block1_shortcut", "head"]
    assert all(not layer.use_bias for layer in masked_layers(model)
               if isinstance(layer, MaskedConv2D))
    assert model.get_layer("stage1_block1_bn1").momentum == 0.9
    assert model.get_layer("stage1_block1_bn1").epsilon == 1e-5
    assert model.get_layer("stage2_block1_conv1").padding == "valid"  # explicit symmetric pad
    assert model.output_shape == (None, 10)


@pytest.mark.parametrize("shape", [(28, 28, 1), (64, 64, 3)])
def test_resnet18_takes_any_input_size_and_width(shape):
    model = build_model("resnet18", shape, 7, width=0.125)
    out = model(np.zeros((2,) + shape, np.float32))
    assert out.shape == (2, 7)
    assert model.get_layer("stage4_block2_conv2").filters == 64


@pytest.mark.parametrize("shape, width", [((96, 96, 3), 0.5), ((28, 28, 1), 0.35)])
def test_mobilenet_v2_matches_keras_applications_and_takes_small_inputs(shape, width):
    model = build_model("mobilenet_v2", shape, 10, width=width)

    def trainable(network):
        return sum(int(np.prod(v.shape)) for v in network.trainable_variables)

    if shape[0] >= 64:  # the reference architecture: the same trainable parameters
        reference = keras.applications.MobileNetV2(input_shape=shape, alpha=width,
                                                   weights=None, classes=10)
        assert trainable(model) == trainable(reference)
    else:  # small inputs keep stride 1 twice: 28 -> 4x4 before pooling instead of 1x1
        assert tuple(model.get_layer("last_conv").output.shape[1:3]) == (4, 4)
    sparse = [layer.name for layer in sparsifiable_layers(model)]
    assert len(sparse) == 34 and all(
        name.endswith(("_expand", "_project")) or name == "last_conv" for name in sparse)
    assert model(np.zeros((2,) + shape, np.float32)).shape == (2, 10)


def test_edge_cnn_and_mlp_declare_their_sparse_layers():
    cnn = build_model("edge_cnn", (28, 28, 1), 10)
    assert [layer.name for layer in sparsifiable_layers(cnn)] == ["conv2", "conv3", "conv4", "fc1"]
    assert cnn(np.zeros((1, 28, 28, 1), np.float32)).shape == (1, 10)
    mlp = build_model("mlp", (28, 28, 1), 10)
    assert [layer.units for layer in masked_layers(mlp)] == [100, 100, 10]
    assert [layer.name for layer in sparsifiable_layers(mlp)] == ["fc1", "fc2"]
    assert sum(int(np.prod(v.shape)) for v in mlp.trainable_variables) == 89_610


def test_unknown_model_name_is_a_config_error():
    with pytest.raises(ConfigError, match="model.name"):
        build_model("vgg", (28, 28, 1), 10)


def test_small_cnn_is_the_readme_model_as_the_learner_masks_it():
    from sparcl_tf.sparsify import default_sparsify
    inputs = keras.Input((28, 28, 1))
    x = keras.layers.Conv2D(32, 3, strides=2, padding="same", activation="relu")(inputs)
    x = keras.layers.Conv2D(64, 3, strides=2, padding="same", activation="relu")(x)
    x = keras.layers.Dense(128, activation="relu")(keras.layers.Flatten()(x))
    readme = default_sparsify(keras.Model(inputs, keras.layers.Dense(10)(x)))
    registry = build_model("small_cnn", (28, 28, 1), 10)

    def outline(model):
        return [(type(layer).__name__, tuple(layer.kernel.shape), layer.sparsifiable,
                 layer.get_config().get("activation")) for layer in masked_layers(model)]

    assert outline(registry) == outline(readme)
    assert [layer.name for layer in sparsifiable_layers(registry)] == ["conv2", "fc1"]
