import numpy as np
import pytest

from sparcl_tf.data.augment import make_augment, random_crop
from sparcl_tf.data.pipeline import Normalizer, segment_batches
from sparcl_tf.data.sources import load_idx_folder
from sparcl_tf.data.tasks import build_tasks
from sparcl_tf.errors import ConfigError
from sparcl_tf.session.random import AUGMENT, Stream


@pytest.fixture
def data(idx_folder):
    return load_idx_folder(idx_folder, "fashion_mnist")


def test_class_incremental_tasks_hold_their_classes_only(data, make_config):
    tasks = build_tasks(data, make_config().data, seed=0)
    assert len(tasks) == 5
    for task in tasks.tasks:
        np.testing.assert_array_equal(task.classes, [2 * task.index, 2 * task.index + 1])
        assert set(np.unique(task.y_train)) == set(task.classes)
        assert set(np.unique(task.y_test)) <= set(task.classes)


def test_per_task_subsets_have_exactly_the_requested_size(data, make_config):
    config = make_config(data__train_per_task=50, data__test_per_task=10)
    for task in build_tasks(data, config.data, seed=0).tasks:
        assert len(task.x_train) == len(task.y_train) == len(task.ids_train) == 50
        assert len(task.x_test) == 10


def test_example_ids_are_stable_source_indices(data, make_config):
    tasks = build_tasks(data, make_config(data__train_per_task=0).data, seed=0)
    ids = np.concatenate([task.ids_train for task in tasks.tasks])
    assert len(np.unique(ids)) == len(ids) == len(data.x_train)
    for task in tasks.tasks:
        np.testing.assert_array_equal(data.x_train[task.ids_train], task.x_train)


def test_shuffled_class_order_is_seeded_and_relabels(data, make_config):
    config = make_config(data__class_order="shuffled", data__train_per_task=0)
    first, again = (build_tasks(data, config.data, seed=3) for _ in range(2))
    other = build_tasks(data, config.data, seed=4)
    assert first.class_order == again.class_order != other.class_order
    task = first.tasks[0]
    original = data.y_train[task.ids_train]
    np.testing.assert_array_equal(np.array(first.class_order)[task.y_train], original)


@pytest.mark.parametrize("per_task", [3, 0])
def test_classes_per_task_must_divide_the_classes(data, make_config, per_task):
    with pytest.raises(ConfigError, match="classes_per_task"):
        build_tasks(data, make_config(data__classes_per_task=per_task).data, seed=0)


def test_permuted_domain_tasks_share_labels_and_permute_pixels(data, make_config):
    config = make_config(data__scenario="permuted", data__num_tasks=3, data__train_per_task=0)
    tasks = build_tasks(data, config.data, seed=0)
    assert len(tasks) == 3 and tasks.num_example_ids == 3 * len(data.x_train)
    np.testing.assert_array_equal(tasks.tasks[0].x_train, data.x_train)
    permuted = tasks.tasks[1].x_train
    assert not np.array_equal(permuted, data.x_train)
    np.testing.assert_array_equal(np.sort(permuted.reshape(len(permuted), -1), axis=1),
                                  np.sort(data.x_train.reshape(len(permuted), -1), axis=1))
    ids = np.concatenate([task.ids_train for task in tasks.tasks])
    assert len(np.unique(ids)) == len(ids)


def test_rotated_domain_task_by_90_degrees_equals_rot90(data, make_config):
    config = make_config(data__scenario="rotated", data__num_tasks=2, data__rotation_step=90.0,
                         data__train_per_task=0)
    tasks = build_tasks(data, config.data, seed=0)
    expected = np.rot90(data.x_train, k=1, axes=(1, 2))  # counter-clockwise
    clockwise = np.rot90(data.x_train, k=-1, axes=(1, 2))
    rotated = tasks.tasks[1].x_train
    assert np.array_equal(rotated, expected) or np.array_equal(rotated, clockwise)


def test_a_segment_trains_full_batches_of_kept_examples_and_leaves_the_rest():
    order = np.arange(100)[::-1]
    rows, cursors = segment_batches(order, 5, 60, lambda r: r % 7 != 0, 10)
    kept = [r for r in order[5:60] if r % 7 != 0]
    assert rows.shape == (len(kept) // 10, 10)
    np.testing.assert_array_equal(rows.ravel(), kept[:rows.size])
    # the cursor stands after the last example used; the partial batch waits for the next segment
    assert cursors[-1] == 5 + 1 + list(order[5:60]).index(rows[-1, -1])


def test_normalizer_scales_uint8_per_channel():
    normalizer = Normalizer([0.5, 0.25], [0.5, 0.25])
    images = np.full((1, 1, 1, 2), 255, np.uint8)
    np.testing.assert_allclose(normalizer(images).ravel(), [1.0, 3.0])
    np.testing.assert_allclose(normalizer.zero_value, [-1.0, -1.0])


def test_crop_is_a_window_of_the_padded_image():
    images = np.arange(2 * 6 * 6 * 1, dtype=np.float32).reshape(2, 6, 6, 1)
    cropped = random_crop(images, 2, np.array([-5.0], np.float32), Stream(0, AUGMENT, 0, 0))
    padded = np.pad(images, ((0, 0), (2, 2), (2, 2), (0, 0)), constant_values=-5.0)
    for index in range(2):
        windows = [padded[index, r:r + 6, c:c + 6] for r in range(5) for c in range(5)]
        assert any(np.array_equal(cropped[index], w) for w in windows)


def test_augmentation_is_keyed_by_step_and_batch_and_flip_only_mirrors():
    images = np.random.default_rng(1).normal(size=(8, 5, 5, 1)).astype(np.float32)
    np.testing.assert_array_equal(make_augment("none", 4, [0.0], 0)(images, 0, 0), images)
    augment = make_augment("crop_flip", 0, [0.0], 1)
    flipped = augment(images, 3, 1)
    for original, result in zip(images, flipped):
        assert np.array_equal(result, original) or np.array_equal(result, original[:, ::-1])
    assert not np.array_equal(flipped, images)  # some of the 8 are mirrored
    np.testing.assert_array_equal(augment(images, 3, 1), flipped)  # the same draw, again
    crop = make_augment("crop", 2, [0.0], 1)
    assert not np.array_equal(crop(images, 3, 1), crop(images, 3, 2))


def test_unknown_augmentation_is_a_config_error():
    with pytest.raises(ConfigError, match="data.augment"):
        make_augment("mixup", 4, [0.0], 0)
