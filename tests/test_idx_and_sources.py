import gzip
import os

import numpy as np
import pytest

from conftest import make_idx_folder, write_idx
from sparcl_tf.data.idx import read_idx
from sparcl_tf.data.sources import load_idx_folder, load_npz, load_source
from sparcl_tf.errors import ConfigError, DataError


@pytest.mark.parametrize("name", ["images-idx3-ubyte", "images-idx3-ubyte.gz"])
def test_idx_round_trip_plain_and_gzip(tmp_path, name):
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / name, array)
    np.testing.assert_array_equal(read_idx(str(tmp_path / name)), array)


def test_truncated_idx_names_the_file_and_the_byte_counts(tmp_path):
    path = tmp_path / "x-idx3-ubyte"
    write_idx(path, np.zeros((4, 5, 5), np.uint8))
    path.write_bytes(path.read_bytes()[:-7])
    with pytest.raises(DataError, match="truncated or corrupt"):
        read_idx(str(path))


def test_corrupt_gzip_and_bad_magic_are_data_errors(tmp_path):
    bad_gzip = tmp_path / "a.gz"
    bad_gzip.write_bytes(gzip.compress(b"\x00\x00\x08\x01" + b"\x00" * 12)[:-9])
    with pytest.raises(DataError):
        read_idx(str(bad_gzip))
    bad_magic = tmp_path / "b"
    bad_magic.write_bytes(b"\x01\x02\x03\x04" + b"\x00" * 8)
    with pytest.raises(DataError, match="magic"):
        read_idx(str(bad_magic))


def test_idx_folder_loads_labelled_arrays(idx_folder):
    data = load_idx_folder(idx_folder, "fashion_mnist")
    assert data.x_train.shape == (400, 28, 28, 1) and data.x_train.dtype == np.uint8
    assert data.x_test.shape == (120, 28, 28, 1)
    assert data.num_classes == 10 and sorted(np.unique(data.y_train)) == list(range(10))


def test_missing_data_folder_is_one_clear_error(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_idx_folder(str(tmp_path / "nowhere"), "fashion_mnist")


def test_folder_with_missing_file_names_it(tmp_path):
    folder = make_idx_folder(tmp_path)
    os.remove(os.path.join(folder, "t10k-labels-idx1-ubyte.gz"))
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte"):
        load_idx_folder(folder, "fashion_mnist")


def test_labels_and_images_that_disagree_in_count_are_rejected(tmp_path):
    folder = make_idx_folder(tmp_path)
    write_idx(os.path.join(folder, "train-labels-idx1-ubyte.gz"), np.zeros(7, np.uint8))
    with pytest.raises(DataError, match="400 train images but 7 train labels"):
        load_idx_folder(folder, "fashion_mnist")


def test_labels_out_of_range_are_rejected(tmp_path):
    folder = make_idx_folder(tmp_path)
    write_idx(os.path.join(folder, "t10k-labels-idx1-ubyte.gz"), np.full(120, 12, np.uint8))
    with pytest.raises(DataError, match="outside"):
        load_idx_folder(folder, "fashion_mnist")


def _save_npz(path, **arrays):
    np.savez(path, **arrays)
    return str(path)


def test_npz_accepts_hw_and_hwc_images(tmp_path):
    rng = np.random.default_rng(0)
    path = _save_npz(tmp_path / "d.npz", x_train=rng.random((20, 8, 8)).astype(np.float32),
                     y_train=np.arange(20) % 4, x_test=rng.random((6, 8, 8)).astype(np.float32),
                     y_test=np.arange(6) % 4)
    data = load_npz(path)
    assert data.x_train.shape == (20, 8, 8, 1) and data.num_classes == 4
    path = _save_npz(tmp_path / "rgb.npz", x_train=np.zeros((4, 5, 5, 3), np.uint8),
                     y_train=np.arange(4), x_test=np.zeros((2, 5, 5, 3), np.uint8),
                     y_test=np.arange(2))
    assert load_npz(path, num_classes=6).num_classes == 6


@pytest.mark.parametrize("arrays, message", [
    (dict(x_train=np.zeros((4, 5, 5)), y_train=np.arange(4)), "lacks arrays"),
    (dict(x_train=np.zeros((4, 5, 5)), y_train=np.arange(3), x_test=np.zeros((2, 5, 5)),
          y_test=np.arange(2)), "4 train images but 3"),
    (dict(x_train=np.zeros((4, 5, 5)), y_train=np.arange(4), x_test=np.zeros((2, 6, 6)),
          y_test=np.arange(2)), "train images are"),
    (dict(x_train=np.zeros((4, 5, 5)), y_train=np.arange(4) * 0.5, x_test=np.zeros((2, 5, 5)),
          y_test=np.arange(2)), "integer array"),
    (dict(x_train=np.zeros((4, 5, 5)), y_train=np.arange(4) - 1, x_test=np.zeros((2, 5, 5)),
          y_test=np.arange(2)), "outside"),
])
def test_npz_inconsistencies_are_data_errors(tmp_path, arrays, message):
    with pytest.raises(DataError, match=message):
        load_npz(_save_npz(tmp_path / "bad.npz", **arrays))


def test_npz_with_pickled_objects_is_refused(tmp_path):
    path = tmp_path / "pickled.npz"
    np.savez(path, x_train=np.array([{"a": 1}], dtype=object), y_train=np.arange(1),
             x_test=np.zeros((1, 2, 2)), y_test=np.arange(1))
    with pytest.raises(DataError, match="pickles"):
        load_npz(str(path))


def test_npz_source_needs_a_path(make_config):
    config = make_config()
    config.data.source = "npz"
    with pytest.raises(ConfigError, match="data.path"):
        load_source(config.data)


def test_pad_to_centres_the_images_on_black(idx_folder):
    import ml_collections
    data = ml_collections.ConfigDict({"source": "fashion_mnist", "dir": idx_folder, "pad_to": 32})
    plain = load_source(ml_collections.ConfigDict(dict(data, pad_to=0)))
    padded = load_source(data)
    assert padded.image_shape == (32, 32, 1) and padded.x_train.dtype == np.uint8
    np.testing.assert_array_equal(padded.x_train[:, 2:30, 2:30], plain.x_train)
    np.testing.assert_array_equal(padded.x_test[:, 2:30, 2:30], plain.x_test)
    border = padded.x_train.copy()
    border[:, 2:30, 2:30] = 0
    assert not border.any()
    with pytest.raises(DataError, match="data.pad_to=20 is smaller than the 28x28 images"):
        load_source(ml_collections.ConfigDict(dict(data, pad_to=20)))
