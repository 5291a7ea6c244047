"""CIFAR through TFDS (mocked: never a download) and the tiny-imagenet-200 folder layout."""

import os

import numpy as np
import pytest
import tensorflow as tf

from sparcl_tf.data.sources import load_tfds, load_tiny_imagenet
from sparcl_tf.errors import DataError


@pytest.mark.parametrize("name, classes", [("cifar10", 10), ("cifar100", 100)])
def test_cifar_through_tfds_mock_data(name, classes):
    import tensorflow_datasets as tfds
    with tfds.testing.mock_data(num_examples=24):
        data = load_tfds(name)
    assert data.x_train.shape == (24, 32, 32, 3) and data.x_train.dtype == np.uint8
    assert data.x_test.shape == (24, 32, 32, 3)
    assert data.num_classes == classes and data.y_train.max() < classes


def make_tiny_imagenet(root, wnids=("n01443537", "n01629819", "n01641577"), per_class=3,
                       val_per_class=2):
    root = os.path.join(root, "tiny-imagenet-200")
    rng = np.random.default_rng(0)

    def write_jpeg(path, channels=3):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        pixels = rng.integers(0, 255, (64, 64, channels), dtype=np.uint8)
        tf.io.write_file(path, tf.io.encode_jpeg(pixels))

    with open(os.path.join(_mkdir(root), "wnids.txt"), "w") as handle:
        handle.write("\n".join(wnids) + "\n")
    for wnid in wnids:
        for index in range(per_class):
            # Tiny-ImageNet has some grayscale JPEGs: the reader must expand them to RGB.
            write_jpeg(os.path.join(root, "train", wnid, "images", f"{wnid}_{index}.JPEG"),
                       channels=1 if index == 0 else 3)
    lines = []
    for index in range(val_per_class * len(wnids)):
        name = f"val_{index}.JPEG"
        write_jpeg(os.path.join(root, "val", "images", name))
        lines.append(f"{name}\t{wnids[index % len(wnids)]}\t0\t0\t63\t63")
    with open(os.path.join(root, "val", "val_annotations.txt"), "w") as handle:
        handle.write("\n".join(lines) + "\n")
    return root


def _mkdir(path):
    os.makedirs(path, exist_ok=True)
    return path


def test_tiny_imagenet_folder_layout_is_read(tmp_path):
    root = make_tiny_imagenet(str(tmp_path))
    data = load_tiny_imagenet(root)
    assert data.x_train.shape == (9, 64, 64, 3) and data.x_test.shape == (6, 64, 64, 3)
    assert data.num_classes == 3
    np.testing.assert_array_equal(data.y_train, np.repeat(np.arange(3), 3))
    np.testing.assert_array_equal(data.y_test, np.arange(6) % 3)


def test_tiny_imagenet_unknown_class_in_annotations_is_named(tmp_path):
    root = make_tiny_imagenet(str(tmp_path))
    with open(os.path.join(root, "val", "val_annotations.txt"), "a") as handle:
        handle.write("val_0.JPEG\tn99999999\t0\t0\t1\t1\n")
    with pytest.raises(DataError, match="val_annotations.txt:7"):
        load_tiny_imagenet(root)


def test_tiny_imagenet_corrupt_jpeg_is_named(tmp_path):
    root = make_tiny_imagenet(str(tmp_path))
    broken = os.path.join(root, "train", "n01629819", "images", "n01629819_1.JPEG")
    with open(broken, "wb") as handle:
        handle.write(b"not a jpeg")
    with pytest.raises(DataError, match="n01629819_1.JPEG"):
        load_tiny_imagenet(root)


def test_tiny_imagenet_missing_folder_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="wnids.txt"):
        load_tiny_imagenet(str(tmp_path))
