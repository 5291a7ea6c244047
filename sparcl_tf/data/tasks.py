"""Turns a labelled data set into a sequence of continual-learning tasks.

Class-incremental (default): classes are put in an order (natural, or a seeded permutation), labels
are renamed to their position in that order, and task t holds the classes
[t * classes_per_task, (t + 1) * classes_per_task). Domain-incremental variants of MNIST-like data
keep all classes in every task and change the input: `permuted` applies a fixed seeded pixel
permutation per task (task 0 unpermuted), `rotated` rotates task t by t * rotation_step degrees.

Every training example carries a stable id: its index in the source's training array, plus
t * len(x_train) in the domain-incremental scenarios where tasks share source images.
"""

import dataclasses

import numpy as np

from sparcl_tf.errors import ConfigError, DataError
from sparcl_tf.session import random as session_random

SCENARIOS = ("class_il", "permuted", "rotated")


@dataclasses.dataclass(frozen=True)
class Task:
    index: int
    classes: np.ndarray      # label ids (after renaming) that belong to this task
    x_train: np.ndarray      # NHWC, uint8 or float32, not normalised
    y_train: np.ndarray
    ids_train: np.ndarray    # int64 stable example ids
    x_test: np.ndarray
    y_test: np.ndarray


@dataclasses.dataclass(frozen=True)
class TaskSequence:
    tasks: list
    num_classes: int
    image_shape: tuple
    class_order: list        # class_order[new_label] = label in the source
    mean: np.ndarray         # per-channel statistics of the training images, in [0, 1] units
    std: np.ndarray
    num_example_ids: int     # ids lie in [0, num_example_ids)

    def __len__(self):
        return len(self.tasks)


def _subset(rng, indices, limit):
    if limit and limit < len(indices):
        return np.sort(rng.choice(indices, size=limit, replace=False))
    return indices


def _class_order(num_classes, order, seed):
    if order == "natural":
        return np.arange(num_classes)
    if order == "shuffled":
        return session_random.data_rng(seed, session_random.CLASS_ORDER).permutation(num_classes)
    raise ConfigError(f"data.class_order={order!r} is unknown; choose 'natural' or 'shuffled'")


def _rotate(images, degrees):
    if degrees % 360 == 0:
        return images
    import tensorflow as tf
    angle = np.deg2rad(degrees)
    height, width = images.shape[1:3]
    cos, sin = np.cos(angle), np.sin(angle)
    center_y, center_x = (height - 1) / 2, (width - 1) / 2
    # Output pixel (x, y) samples the input at the inverse rotation about the image centre.
    transform = np.array([[cos, -sin, center_x - cos * center_x + sin * center_y,
                           sin, cos, center_y - sin * center_x - cos * center_y, 0, 0]],
                         np.float32)
    rotated = tf.raw_ops.ImageProjectiveTransformV3(
        images=tf.constant(images, tf.float32), transforms=transform,
        output_shape=[height, width], interpolation="BILINEAR", fill_mode="CONSTANT",
        fill_value=0.0).numpy()
    if images.dtype == np.uint8:
        return rotated.round().clip(0, 255).astype(np.uint8)
    return rotated


def _permute(images, permutation):
    flat = images.reshape(len(images), -1, images.shape[-1])
    return flat[:, permutation].reshape(images.shape)


def _channel_stats(images):
    scale = 255.0 if images.dtype == np.uint8 else 1.0
    pixels = images.reshape(-1, images.shape[-1])
    mean = np.zeros(pixels.shape[1], np.float64)
    sq = np.zeros(pixels.shape[1], np.float64)
    for start in range(0, len(pixels), 1 << 22):  # chunked: Tiny-ImageNet is 1.2 G pixels
        chunk = pixels[start:start + (1 << 22)].astype(np.float64) / scale
        mean += chunk.sum(0)
        sq += (chunk ** 2).sum(0)
    mean /= len(pixels)
    std = np.sqrt(np.maximum(sq / len(pixels) - mean ** 2, 1e-12))
    return mean.astype(np.float32), std.astype(np.float32)


def build_tasks(data, data_config, seed):
    """Splits `data` (a `LabelledData`) into tasks as `data_config` says."""
    scenario = data_config.scenario
    if scenario not in SCENARIOS:
        raise ConfigError(f"data.scenario={scenario!r} is unknown; choose one of {list(SCENARIOS)}")
    for field in ("train_per_task", "test_per_task", "num_tasks"):
        if data_config[field] < 0:
            raise ConfigError(f"data.{field} must be >= 0 (0 = all), got {data_config[field]}")
    if scenario == "class_il":
        tasks, class_order = _class_incremental(data, data_config, seed)
        num_ids = len(data.x_train)
    else:
        tasks, class_order = _domain_incremental(data, data_config, seed)
        num_ids = len(data.x_train) * len(tasks)
    mean, std = _channel_stats(np.concatenate([task.x_train for task in tasks]))
    return TaskSequence(tasks, data.num_classes, data.image_shape,
                        [int(c) for c in class_order], mean, std, num_ids)


def _class_incremental(data, data_config, seed):
    per_task = data_config.classes_per_task
    if per_task <= 0 or data.num_classes % per_task:
        raise ConfigError(f"data.classes_per_task={per_task} must be a positive divisor of the "
                          f"{data.num_classes} classes of {data.name}")
    available = data.num_classes // per_task
    num_tasks = data_config.num_tasks or available
    if num_tasks > available:
        raise ConfigError(f"data.num_tasks={num_tasks} exceeds the {available} tasks of "
                          f"{per_task} classes that {data.name} has")
    class_order = _class_order(data.num_classes, data_config.class_order, seed)
    rename = np.empty(data.num_classes, np.int64)
    rename[class_order] = np.arange(data.num_classes)
    y_train, y_test = rename[data.y_train], rename[data.y_test]
    tasks = []
    for t in range(num_tasks):
        rng = session_random.data_rng(seed, session_random.CLASS_TASK_SUBSET, t)
        classes = np.arange(t * per_task, (t + 1) * per_task)
        for split, labels in (("training", y_train), ("test", y_test)):
            absent = [int(class_order[c]) for c in classes if not np.any(labels == c)]
            if absent:  # a task must see every one of its classes
                raise DataError(f"task {t} needs classes {class_order[classes].tolist()}, but "
                                f"{data.name} has no {split} examples of class {absent}")
        train = _subset(rng, np.flatnonzero(np.isin(y_train, classes)),
                        data_config.train_per_task)
        test = _subset(rng, np.flatnonzero(np.isin(y_test, classes)), data_config.test_per_task)
        tasks.append(Task(t, classes, data.x_train[train], y_train[train], train.astype(np.int64),
                          data.x_test[test], y_test[test]))
    return tasks, class_order


def _domain_incremental(data, data_config, seed):
    num_tasks = data_config.num_tasks or 5
    classes = np.arange(data.num_classes)
    tasks = []
    for t in range(num_tasks):
        rng = session_random.data_rng(seed, session_random.DOMAIN_TASK_SUBSET, t)
        train = _subset(rng, np.arange(len(data.x_train)), data_config.train_per_task)
        test = _subset(rng, np.arange(len(data.x_test)), data_config.test_per_task)
        x_train, x_test = data.x_train[train], data.x_test[test]
        if data_config.scenario == "permuted" and t > 0:
            permutation = session_random.data_rng(
                seed, session_random.PIXEL_PERMUTATION, t).permutation(
                x_train.shape[1] * x_train.shape[2])
            x_train, x_test = _permute(x_train, permutation), _permute(x_test, permutation)
        elif data_config.scenario == "rotated":
            degrees = t * data_config.rotation_step
            x_train, x_test = _rotate(x_train, degrees), _rotate(x_test, degrees)
        ids = train.astype(np.int64) + t * len(data.x_train)
        tasks.append(Task(t, classes, x_train, data.y_train[train], ids, x_test, data.y_test[test]))
    return tasks, classes
