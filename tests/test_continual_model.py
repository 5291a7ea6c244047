import keras
import ml_collections
import numpy as np
import pytest
import tensorflow as tf

from sparcl_tf.continual_model import ContinualModel
from sparcl_tf.data.augment import make_augment
from sparcl_tf.example_stats import ExampleStats
from sparcl_tf.layers import sparsifiable_layers
from sparcl_tf.methods import build_method
from sparcl_tf.models import build_model
from sparcl_tf.replay import ReservoirBuffer

NUM_CLASSES, SHAPE = 4, (12, 12, 1)


def _model(method="derpp", momentum=0.0, augment="none", buffer_size=64):
    keras.utils.set_random_seed(0)
    network = build_model("edge_cnn", SHAPE, NUM_CLASSES, width=0.25)
    generator = tf.random.Generator.from_seed(0)
    method = build_method(ml_collections.ConfigDict(
        dict(name=method, alpha=0.1, beta=0.5, cl_mask=True)))
    buffer = ReservoirBuffer(buffer_size, SHAPE, NUM_CLASSES, generator)
    model = ContinualModel(network, method, NUM_CLASSES, make_augment(augment, 2, [0.0], generator),
                           generator, buffer=buffer, stats=ExampleStats(256), replay_batch_size=8)
    model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=momentum))
    return model


def _batches(count, batch=8, seed=0, start_id=0):
    rng = np.random.default_rng(seed)
    images = rng.normal(size=(count * batch,) + SHAPE).astype(np.float32)
    labels = rng.integers(0, 2, count * batch)
    ids = np.arange(start_id, start_id + count * batch)
    return tf.data.Dataset.from_tensor_slices((images, labels, ids)).batch(batch)


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
    model.begin_task(0, [0, 1], replay_enabled=True)
    model.fit(_batches(6), epochs=2, verbose=0)
    for layer in sparsifiable_layers(model.network):
        kernel = layer.kernel.numpy()
        assert np.all(kernel[masks[layer.name] == 0] == 0.0)
        assert np.count_nonzero(kernel[masks[layer.name] == 1]) == masks[layer.name].sum()
    for variable in model.optimizer.variables:  # momentum slots never accumulate masked entries
        for layer in sparsifiable_layers(model.network):
            if variable.path.endswith(f"{layer.name}_kernel_momentum"):
                assert np.all(variable.numpy()[masks[layer.name] == 0] == 0.0)


def test_train_step_offers_unaugmented_inputs_and_training_logits_to_the_buffer():
    model = _model(augment="crop_flip", buffer_size=64)
    model.begin_task(0, [0, 1], replay_enabled=False)
    data = _batches(3)
    model.fit(data, epochs=1, verbose=0)
    stored_ids = model.buffer.example_ids.numpy()[:24]
    np.testing.assert_array_equal(stored_ids, np.arange(24))
    images = np.concatenate([b[0].numpy() for b in data])
    np.testing.assert_array_equal(model.buffer.images.numpy()[:24], images)
    assert int(model.buffer.num_seen) == 24 and np.all(model.buffer.task_ids.numpy()[:24] == 0)
    assert np.any(model.buffer.logits.numpy()[:24] != 0)


def test_replay_terms_only_when_enabled_and_buffer_has_data():
    model = _model()
    model.begin_task(1, [2, 3], replay_enabled=True)
    assert [float(v) for v in model._replay_loss()] == [0.0, 0.0]  # empty buffer
    model.begin_task(0, [0, 1], replay_enabled=False)
    model.fit(_batches(2), epochs=1, verbose=0)
    assert [float(v) for v in model._replay_loss()] == [0.0, 0.0]  # first task: replay off
    model.begin_task(1, [2, 3], replay_enabled=True)
    loss, examples = model._replay_loss()
    assert float(loss) > 0.0 and int(examples) == 2 * 8  # DER++: two draws of 8


def test_finetune_never_touches_a_buffer():
    model = _model(method="finetune")
    model.begin_task(0, [0, 1], replay_enabled=True)
    model.fit(_batches(2), epochs=1, verbose=0)
    assert int(model.buffer.num_seen) == 0


def test_every_example_is_recorded_once_per_presentation():
    model = _model()
    model.begin_task(0, [0, 1], replay_enabled=False)
    model.fit(_batches(4), epochs=3, verbose=0)
    snapshot = model.stats.snapshot(np.arange(40))
    np.testing.assert_array_equal(snapshot["presentations"], [3] * 32 + [0] * 8)
    assert np.all(snapshot["correct"] <= snapshot["presentations"])


def test_class_mask_marks_the_current_task_classes():
    model = _model()
    model.begin_task(1, np.array([2, 3]), replay_enabled=True)
    np.testing.assert_array_equal(model.class_mask.numpy(), [False, False, True, True])
    assert int(model.task_index) == 1 and bool(model.replay_enabled)


def test_gradient_density_of_a_dense_model_is_one_and_of_a_masked_model_its_density():
    model = _model()
    masks = _prune_half(model)
    model.begin_task(0, [0, 1], replay_enabled=False)
    model.fit(_batches(2), epochs=1, verbose=0)
    density = model.gradient_density_sum.numpy() / model.gradient_density_steps.numpy()
    expected = [masks[layer.name].mean() for layer in model.sparse]
    np.testing.assert_allclose(density, expected, rtol=1e-6)
