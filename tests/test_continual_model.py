"""The Keras train step on host-made inputs: exact zeros, replay terms, outputs."""

import keras
import ml_collections
import numpy as np
import pytest

from sparcl_tf.sparsity.gradient_masking import WeightMasking
from sparcl_tf.sparsity.kind import WeightMasks
from sparcl_tf.training.continual_model import ContinualModel
from sparcl_tf.layers import sparsifiable_layers
from sparcl_tf.methods import build_method
from sparcl_tf.models import build_model

NUM_CLASSES, SHAPE, BATCH = 4, (12, 12, 1), 8
CLASS_MASK = np.array([1, 1, 0, 0], np.float32)


def _model(method="derpp", momentum=0.0, kind=None):
    keras.utils.set_random_seed(0)
    network = build_model("edge_cnn", SHAPE, NUM_CLASSES, width=0.25)
    method = build_method(ml_collections.ConfigDict(
        dict(name=method, alpha=0.1, beta=0.5, cl_mask=True, shared_draw=False,
             masked_logits="excluded")))
    model = ContinualModel(network, method, kind)
    model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=momentum))
    model.optimizer.build(network.trainable_variables)
    return model


def _batch(seed=0, draws=2):
    rng = np.random.default_rng(seed)
    images = rng.normal(size=(BATCH,) + SHAPE).astype(np.float32)
    labels = rng.integers(0, 2, BATCH).astype(np.int32)
    replay = (rng.normal(size=(draws, BATCH) + SHAPE).astype(np.float32),
              rng.integers(0, 4, (draws, BATCH)).astype(np.int32),
              rng.normal(size=(draws, BATCH, NUM_CLASSES)).astype(np.float32))
    return images, labels, CLASS_MASK, *replay


def _prune_half(model):
    masks = {}
    for index, layer in enumerate(sparsifiable_layers(model.network)):
        mask = (np.random.default_rng(index).random(layer.kernel.shape) > 0.5).astype(np.float32)
        layer.mask.assign(mask)
        layer.apply_mask_to_kernel()
        masks[layer.name] = mask
    return masks


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_pruned_weights_stay_exactly_zero_after_steps(momentum):
    model = _model(momentum=momentum)
    masks = _prune_half(model)
    for step in range(6):
        model.step(*_batch(step), replay_weight=1.0, refresh=False)
    for layer in sparsifiable_layers(model.network):
        kernel = layer.kernel.numpy()
        assert np.all(kernel[masks[layer.name] == 0] == 0.0)
        assert np.count_nonzero(kernel[masks[layer.name] == 1]) == masks[layer.name].sum()
    for variable in model.optimizer.variables:  # momentum slots never accumulate masked entries
        for layer in sparsifiable_layers(model.network):
            if variable.path.endswith(f"{layer.name}_kernel_momentum"):
                assert np.all(variable.numpy()[masks[layer.name] == 0] == 0.0)


def _empty_draws():
    return (np.zeros((0, BATCH) + SHAPE, np.float32), np.zeros((0, BATCH), np.int32),
            np.zeros((0, BATCH, NUM_CLASSES), np.float32))


def _moving_statistics(model):
    return [v.numpy() for v in model.network.non_trainable_variables if "moving" in v.path]


def test_replay_terms_count_only_with_replay_weight_and_leave_batchnorm_alone_without():
    batch = _batch()
    off, on, alone = _model(), _model(), _model(method="finetune")
    loss_off = float(off.step(*batch, replay_weight=0.0, refresh=False)["loss"])
    loss_on = float(on.step(*batch, replay_weight=1.0, refresh=False)["loss"])
    alone.step(*batch[:3], *_empty_draws(), replay_weight=0.0, refresh=False)
    assert loss_on > loss_off  # DER++'s two terms are added
    # without replay only the current batch moves BatchNorm's statistics
    for with_off, current_only in zip(_moving_statistics(off), _moving_statistics(alone)):
        np.testing.assert_array_equal(with_off, current_only)
    assert not all(np.array_equal(a, b) for a, b in zip(_moving_statistics(off),
                                                        _moving_statistics(on)))


def test_a_step_returns_logits_correctness_and_the_updated_fraction():
    model = _model()
    masks = _prune_half(model)
    out = model.step(*_batch(), replay_weight=0.0, refresh=False)
    logits = out["logits"].numpy()
    assert logits.shape == (BATCH, NUM_CLASSES)
    np.testing.assert_array_equal(out["correct"].numpy(),
                                  (logits.argmax(1) == _batch()[1]).astype(np.float32))
    expected = [masks[layer.name].mean() for layer in model.sparse]
    np.testing.assert_allclose(out["gradient_density"].numpy(), expected, rtol=1e-6)


def test_finetune_ignores_replay_inputs():
    model = _model(method="finetune")
    images, labels, mask, *_ = _batch(draws=0)
    first = float(model.step(images, labels, mask, *_empty_draws(), 1.0, False)["loss"])
    assert np.isfinite(first) and first > 0


def test_reset_optimizer_zeroes_momentum_and_keeps_the_learning_rate():
    model = _model(momentum=0.9)
    model.step(*_batch(), replay_weight=1.0, refresh=False)
    model.reset_optimizer()
    for variable in model.optimizer.variables:
        if "momentum" in variable.path:
            assert not np.any(variable.numpy())
    assert float(model.optimizer.learning_rate) == pytest.approx(0.1)


class _Scaled(WeightMasks):
    """Weight masks whose sparse layers learn at the given rate factors."""

    def __init__(self, scales):
        super().__init__()
        self.scales = scales

    def gradient_masking(self, network, mask_dtype="float32"):
        return WeightMasking(sparsifiable_layers(network), rate_scales=self.scales)


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_rate_scales_multiply_each_sparse_kernels_update_and_nothing_else(momentum):
    scales = [10.0, 3.0, 2.0, 5.0]
    updates, densities = [], []
    for kind in (None, _Scaled(scales)):
        model = _model(momentum=momentum, kind=kind)
        masks = _prune_half(model)
        before = [v.numpy() for v in model.network.trainable_variables]
        out = model.step(*_batch(), replay_weight=1.0, refresh=False)
        updates.append([v.numpy() - b for v, b in zip(model.network.trainable_variables, before)])
        densities.append(out["gradient_density"].numpy())
    np.testing.assert_array_equal(densities[0], densities[1])
    factor = {id(layer.kernel): scale for layer, scale in zip(
        sparsifiable_layers(model.network), scales)}
    for variable, plain, scaled in zip(model.network.trainable_variables, *updates):
        np.testing.assert_allclose(scaled, factor.get(id(variable), 1.0) * plain, rtol=1e-5,
                                   atol=1e-7, err_msg=variable.path)
    assert len(factor) == 4 and not any(np.any(u[m == 0]) for u, m in zip(
        [updates[1][i] for i, v in enumerate(model.network.trainable_variables)
         if id(v) in factor], masks.values()))
