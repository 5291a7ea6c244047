"""Data sources: each returns the whole labelled train and test set as in-memory arrays.

Images come back NHWC (uint8, or float32 from a user .npz), labels int64 in [0, num_classes).
Everything read from disk is checked for presence, size and consistency before use, and untrusted
files never execute code (`allow_pickle=False`).
"""

import dataclasses
import os
import zipfile
import zlib

import numpy as np

from sparcl_tf.data.idx import find_idx_file, read_idx
from sparcl_tf.errors import ConfigError, DataError, import_extra

DEBIAN_FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
TFDS_NAMES = {"cifar10": ("cifar10", 10), "cifar100": ("cifar100", 100)}


@dataclasses.dataclass(frozen=True)
class LabelledData:
    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int

    @property
    def image_shape(self):
        return tuple(self.x_train.shape[1:])


def _as_nhwc(images, what):
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4 or images.shape[-1] not in (1, 3) or min(images.shape[1:3]) < 1:
        raise DataError(f"{what} must be N x H x W or N x H x W x C with C in (1, 3), "
                        f"got shape {images.shape}")
    return images


def _checked(name, x_train, y_train, x_test, y_test, num_classes=None):
    x_train, x_test = _as_nhwc(x_train, f"{name} x_train"), _as_nhwc(x_test, f"{name} x_test")
    for split, x, y in (("train", x_train, y_train), ("test", x_test, y_test)):
        if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
            raise DataError(f"{name} y_{split} must be a 1-D integer array, got {y.dtype} "
                            f"shape {y.shape}")
        if len(x) != len(y):
            raise DataError(f"{name} has {len(x)} {split} images but {len(y)} {split} labels")
        if len(y) == 0:
            raise DataError(f"{name} has no {split} examples")
    if x_train.shape[1:] != x_test.shape[1:]:
        raise DataError(f"{name} train images are {x_train.shape[1:]} but test images are "
                        f"{x_test.shape[1:]}")
    if x_train.dtype != np.uint8 and not np.issubdtype(x_train.dtype, np.floating):
        raise DataError(f"{name} images must be uint8 or float, got {x_train.dtype}")
    for split, x in (("train", x_train), ("test", x_test)):
        if np.issubdtype(x.dtype, np.floating) and not np.isfinite(x).all():
            raise DataError(f"{name} x_{split} has {int(np.size(x) - np.isfinite(x).sum())} NaN "
                            f"or infinite pixels")
    if num_classes is None:
        num_classes = int(max(y_train.max(), y_test.max())) + 1
    for split, y in (("train", y_train), ("test", y_test)):
        if y.min() < 0 or y.max() >= num_classes:
            raise DataError(f"{name} y_{split} has labels in [{y.min()}, {y.max()}], outside "
                            f"[0, {num_classes - 1}]")
    cast = (lambda x: x) if x_train.dtype == np.uint8 else (lambda x: x.astype(np.float32))
    return LabelledData(name, cast(x_train), y_train.astype(np.int64), cast(x_test),
                        y_test.astype(np.int64), int(num_classes))


def load_idx_folder(folder, name):
    """MNIST-like IDX folder: train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz], t10k-*."""
    if not os.path.isdir(folder):
        raise DataError(f"data folder {folder} does not exist (for Fashion-MNIST: apt-get install "
                        f"dataset-fashion-mnist, or set --config.data.dir)")
    arrays = [read_idx(find_idx_file(folder, stem)) for stem in (
        "train-images-idx3-ubyte", "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")]
    return _checked(name, *arrays, num_classes=10)


def load_npz(path, num_classes=0):
    """A user .npz with arrays x_train, y_train, x_test, y_test (images HxW or HxWxC)."""
    if not path:
        raise ConfigError("data.source='npz' needs data.path=FILE.npz")
    try:
        with np.load(path, allow_pickle=False) as archive:
            missing = {"x_train", "y_train", "x_test", "y_test"} - set(archive.files)
            if missing:
                raise DataError(f"{path} lacks arrays {sorted(missing)} (needs x_train, y_train, "
                                f"x_test, y_test)")
            arrays = [archive[key] for key in ("x_train", "y_train", "x_test", "y_test")]
    except FileNotFoundError:
        raise DataError(f"npz file {path} does not exist") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as error:
        if isinstance(error, DataError):
            raise
        raise DataError(
            f"npz file {path} is not a readable .npz without pickles: {error}") from None
    return _checked(os.path.basename(path), *arrays, num_classes=num_classes or None)


def load_tfds(name, data_dir=None, download=False):
    """CIFAR-10 / CIFAR-100 through TensorFlow Datasets, prepared in `data_dir` (or downloaded).

    `download` defaults to False: without network TFDS retries for minutes before failing.
    """
    tfds_name, num_classes = TFDS_NAMES[name]
    tfds = import_extra("tensorflow_datasets", "tfds")  # here: it is slow, only these need it
    try:
        splits = tfds.load(tfds_name, split=["train", "test"], data_dir=data_dir or None,
                           as_supervised=True, download=download)
    except Exception as error:  # TFDS raises many types for a missing or unprepared dataset.
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise DataError(f"TFDS could not load {tfds_name!r} from data_dir={data_dir!r} (prepare "
                        f"it where there is network: tfds build {tfds_name} --data_dir=DIR): "
                        f"{message}") from None
    # Batched iteration, not batch_size=-1: the whole-split tensor path aborts the process in
    # TF 2.21 for generator-backed datasets (what tfds.testing.mock_data serves).
    (x_train, y_train), (x_test, y_test) = [
        tuple(np.concatenate(parts) for parts in zip(*tfds.as_numpy(split.batch(4096))))
        for split in splits]
    return _checked(name, x_train, y_train, x_test, y_test, num_classes=num_classes)


def load_tiny_imagenet(folder):
    """The standard `tiny-imagenet-200` layout; its labelled val split serves as the test set.

    wnids.txt lists the 200 classes (label = line index); train/<wnid>/images/*.JPEG;
    val/images/*.JPEG with val/val_annotations.txt mapping file name -> wnid.
    """
    from sparcl_tf.data.tiny_imagenet import read_tiny_imagenet
    x_train, y_train, x_test, y_test, num_classes = read_tiny_imagenet(folder)
    return _checked("tiny_imagenet", x_train, y_train, x_test, y_test, num_classes=num_classes)


SOURCES = ("fashion_mnist", "mnist", "cifar10", "cifar100", "tiny_imagenet", "npz")


def pad_images(data, size):
    """`data` with its images zero-padded (black) to `size` x `size`, centred (the extra row or
    column of an odd margin at the bottom and right); `size` 0 keeps them as they are."""
    height, width = data.image_shape[:2]
    if not size or (height, width) == (size, size):
        return data
    if size < max(height, width):
        raise DataError(f"data.pad_to={size} is smaller than the {height}x{width} images")
    top, left = (size - height) // 2, (size - width) // 2
    margins = [(0, 0), (top, size - height - top), (left, size - width - left), (0, 0)]
    return dataclasses.replace(data, x_train=np.pad(data.x_train, margins),
                               x_test=np.pad(data.x_test, margins))


def load_source(data_config):
    """Loads `data_config.source` as described by the `data` block of a config, padded to
    `data_config.pad_to`."""
    return pad_images(_load(data_config), data_config.pad_to)


def _load(data_config):
    source = data_config.source
    if source == "fashion_mnist":
        return load_idx_folder(data_config.dir or DEBIAN_FASHION_MNIST_DIR, source)
    if source == "mnist":
        if not data_config.dir:  # Debian packages no MNIST: the user brings the IDX files
            raise ConfigError("data.source='mnist' needs data.dir=<folder with the MNIST IDX "
                              "files>")
        return load_idx_folder(data_config.dir, source)
    if source in TFDS_NAMES:
        return load_tfds(source, data_config.dir, data_config.tfds_download)
    if source == "tiny_imagenet":
        if not data_config.dir:
            raise ConfigError("data.source='tiny_imagenet' needs data.dir=<path to "
                              "tiny-imagenet-200>")
        return load_tiny_imagenet(data_config.dir)
    if source == "npz":
        return load_npz(data_config.path, data_config.num_classes)
    raise ConfigError(f"data.source={source!r} is unknown; choose one of {list(SOURCES)}")
