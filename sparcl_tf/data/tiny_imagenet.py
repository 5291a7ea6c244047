"""Reader for the `tiny-imagenet-200` folder (64x64 RGB JPEGs, 200 classes)."""

import os

import numpy as np

from sparcl_tf.errors import DataError

IMAGE_SIZE = 64


def _decode(path):
    import tensorflow as tf
    try:
        image = tf.io.decode_jpeg(tf.io.read_file(path), channels=3)
    except (tf.errors.InvalidArgumentError, tf.errors.NotFoundError) as error:
        raise DataError(f"{path} is not a readable JPEG: {error.message.splitlines()[0]}") from None
    if tuple(image.shape) != (IMAGE_SIZE, IMAGE_SIZE, 3):
        raise DataError(f"{path} is {tuple(image.shape)}, Tiny-ImageNet images are "
                        f"{IMAGE_SIZE}x{IMAGE_SIZE}x3")
    return image.numpy()


def _stack(paths, labels):
    images = np.empty((len(paths), IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8)
    for index, path in enumerate(paths):
        images[index] = _decode(path)
    return images, np.asarray(labels, np.int64)


def read_tiny_imagenet(folder):
    """Returns x_train, y_train, x_val, y_val, num_classes from a tiny-imagenet-200 folder."""
    wnids_path = os.path.join(folder, "wnids.txt")
    if not os.path.isfile(wnids_path):
        raise DataError(f"{folder} is not a tiny-imagenet-200 folder (no wnids.txt)")
    with open(wnids_path) as handle:
        wnids = [line.strip() for line in handle if line.strip()]
    if len(set(wnids)) != len(wnids) or not wnids:
        raise DataError(f"{wnids_path} must list distinct class ids, one per line")
    label_of = {wnid: label for label, wnid in enumerate(wnids)}

    train_paths, train_labels = [], []
    for wnid in wnids:
        image_dir = os.path.join(folder, "train", wnid, "images")
        if not os.path.isdir(image_dir):
            raise DataError(f"{image_dir} is missing (class {wnid} listed in wnids.txt)")
        names = sorted(n for n in os.listdir(image_dir) if n.lower().endswith((".jpeg", ".jpg")))
        if not names:
            raise DataError(f"{image_dir} holds no JPEG images")
        train_paths += [os.path.join(image_dir, n) for n in names]
        train_labels += [label_of[wnid]] * len(names)

    annotations = os.path.join(folder, "val", "val_annotations.txt")
    if not os.path.isfile(annotations):
        raise DataError(f"{annotations} is missing")
    val_paths, val_labels = [], []
    with open(annotations) as handle:
        for line_number, line in enumerate(handle, 1):
            fields = line.split("\t")
            if len(fields) < 2 or fields[1].strip() not in label_of:
                raise DataError(f"{annotations}:{line_number} does not name a file and a class "
                                f"from wnids.txt")
            val_paths.append(os.path.join(folder, "val", "images", fields[0].strip()))
            val_labels.append(label_of[fields[1].strip()])
    x_train, y_train = _stack(train_paths, train_labels)
    x_val, y_val = _stack(val_paths, val_labels)
    return x_train, y_train, x_val, y_val, len(wnids)
