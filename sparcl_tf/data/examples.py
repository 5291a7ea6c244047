"""What a learner is handed, checked at the boundary: images and labels of one task or test set,
and a task's classes. One ValueError naming the argument and what is wrong; nothing is changed."""

import numpy as np


def checked_examples(data, labels, what, image_shape, num_classes):
    """(images, labels) numpy from arrays or a tf.data.Dataset of (image, label) elements or
    batches; ValueError naming `what` for bad shapes, dtypes, values. Images come back uint8 or
    float32, labels int64."""
    if labels is None:
        if not hasattr(data, "as_numpy_iterator"):
            raise ValueError(f"{what}: give images and labels, or a tf.data.Dataset of "
                             f"(image, label)")
        pairs = list(data.as_numpy_iterator())
        if not pairs:
            raise ValueError(f"{what}: the dataset is empty")
        batched = np.ndim(pairs[0][0]) == len(image_shape) + 1
        stack = np.concatenate if batched else np.stack
        data, labels = stack([p[0] for p in pairs]), stack([p[1] for p in pairs])
    images, labels = np.asarray(data), np.asarray(labels)
    if images.shape[1:] != tuple(image_shape) or len(images) != len(labels) or labels.ndim != 1:
        raise ValueError(f"{what}: images {images.shape} and labels {labels.shape} do not fit "
                         f"the model's input {tuple(image_shape)} (one label per image)")
    if images.dtype != np.uint8 and not np.issubdtype(images.dtype, np.floating):
        raise ValueError(f"{what}: images must be uint8 or float, got {images.dtype}")
    if images.dtype != np.uint8 and not np.isfinite(images).all():
        raise ValueError(f"{what}: images hold NaN or Inf")
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{what}: labels must be integers, got {labels.dtype}")
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"{what}: labels must lie in [0, {num_classes}), got "
                         f"[{labels.min()}, {labels.max()}]")
    return images if images.dtype == np.uint8 else images.astype(np.float32), labels.astype(
        np.int64)


def checked_classes(classes, labels, what, num_classes, test_labels=None):
    """The task's classes, ascending (default: those in `labels`); ValueError when a class lies
    outside the model's or a label (training or test) outside the classes."""
    if classes is None:
        return np.unique(labels)
    try:
        classes = np.unique(np.asarray(classes, np.int64))
    except (TypeError, ValueError):
        raise ValueError(f"{what}: classes must be integers, got {classes!r:.60}") from None
    if not len(classes) or classes.min() < 0 or classes.max() >= num_classes:
        raise ValueError(f"{what}: classes {classes.tolist()} must be non-empty and lie in "
                         f"[0, {num_classes})")
    for given in (labels, test_labels if test_labels is not None else labels):
        if not np.isin(given, classes).all():
            raise ValueError(f"{what}: labels outside classes {classes.tolist()}")
    return classes
