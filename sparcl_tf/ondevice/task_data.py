"""The task stream as one .npz: tasks a model has never seen, for any host (the LiteRT session's
`--data`, the Kotlin session on a JVM).

Per task t = 0, 1, ...: train_images_<t> (stored pixels, as the data set has them: uint8 or [0, 1]
floats, the model's image shape), train_labels_<t> (integers), and optionally train_ids_<t>
(distinct non-negative stable example ids; default: numbered on from the largest id before),
classes_<t> (the task's classes; default: those among its training labels), test_images_<t> and
test_labels_<t> (default: the task is not evaluated, its accuracy is null). Normalisation comes
from the session plan. `write_task_data` writes a run's stream atomically; `read_task_data`
checks a file against a plan and says what is wrong in one line.
"""

import os

import numpy as np

from sparcl_tf.data.tasks import Task, TaskSequence
from sparcl_tf.errors import DataError


def write_task_data(path, tasks, method):
    arrays = {}
    for index, task in enumerate(tasks.tasks):
        x, y, ids = method.task_training_data(tasks, index)
        arrays.update({f"train_images_{index}": x, f"train_labels_{index}": y.astype(np.int32),
                       f"train_ids_{index}": ids.astype(np.int64),
                       f"classes_{index}": np.asarray(task.classes, np.int32),
                       f"test_images_{index}": task.x_test,
                       f"test_labels_{index}": task.y_test.astype(np.int32)})
    temporary = path + ".tmp.npz"
    np.savez(temporary, **arrays)
    os.replace(temporary, path)
    return path


def _images(archive, name, image_shape, where):
    images = archive[name]
    if images.ndim != len(image_shape) + 1 or tuple(images.shape[1:]) != tuple(image_shape):
        raise DataError(f"{where}: {name} has shape {list(images.shape)}; the model takes "
                        f"[N, {', '.join(str(d) for d in image_shape)}]")
    if images.dtype == np.uint8:
        return images
    if not np.issubdtype(images.dtype, np.floating):
        raise DataError(f"{where}: {name} must be uint8 or float pixels, got {images.dtype}")
    if not np.isfinite(images).all():
        raise DataError(f"{where}: {name} holds NaN or Inf")
    return images.astype(np.float32)


def _labels(archive, name, count, num_classes, where):
    labels = archive[name]
    if labels.ndim != 1 or len(labels) != count or not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"{where}: {name} must be {count} integer labels, got {labels.dtype}"
                        f"{list(labels.shape)}")
    if count and (labels.min() < 0 or labels.max() >= num_classes):
        raise DataError(f"{where}: {name} lie in [{labels.min()}, {labels.max()}]; the model has "
                        f"classes 0..{num_classes - 1}")
    return labels.astype(np.int64)


def read_task_data(path, plan):
    """The tasks of the file at `path` for a model following `plan` (a `SessionPlan`), as a
    `TaskSequence`; DataError naming the array and what is wrong."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except (OSError, ValueError, EOFError) as error:
        raise DataError(f"cannot read task data {path}: {error}") from None
    count = 0
    while f"train_images_{count}" in arrays:
        count += 1
    if not count:
        raise DataError(f"{path} holds no train_images_0: not a task-data file")
    known = {f"{kind}_{t}" for t in range(count) for kind in (
        "train_images", "train_labels", "train_ids", "classes", "test_images", "test_labels")}
    unknown = sorted(set(arrays) - known)
    if unknown:
        raise DataError(f"{path} has arrays {unknown[:4]} that are no task's (tasks 0..{count - 1}"
                        f" need train_images_<t>, train_labels_<t>)")
    shape, num_classes = tuple(plan.image_shape), plan.num_classes
    tasks, next_id, seen_ids = [], 0, set()
    for t in range(count):
        where = f"{path} task {t}"
        if f"train_labels_{t}" not in arrays:
            raise DataError(f"{where}: train_labels_{t} is missing")
        x = _images(arrays, f"train_images_{t}", shape, where)
        y = _labels(arrays, f"train_labels_{t}", len(x), num_classes, where)
        if len(x) < plan.batch_size:
            raise DataError(f"{where}: {len(x)} training examples are fewer than one batch "
                            f"({plan.batch_size})")
        ids = np.arange(next_id, next_id + len(x), dtype=np.int64)
        if f"train_ids_{t}" in arrays:
            given = arrays[f"train_ids_{t}"]
            if given.shape != (len(x),) or not np.issubdtype(given.dtype, np.integer) or (
                    len(given) and (given.min() < 0 or given.max() >= 2 ** 31 - 1)):
                raise DataError(f"{where}: train_ids_{t} must be {len(x)} integer ids in "
                                f"[0, 2^31 - 1)")
            ids = given.astype(np.int64)
        if len(np.unique(ids)) != len(ids) or seen_ids.intersection(ids.tolist()):
            raise DataError(f"{where}: example ids repeat (within the task or from an earlier "
                            f"one)")
        seen_ids.update(ids.tolist())
        next_id = int(ids.max()) + 1 if len(ids) else next_id
        classes = np.unique(y)
        if f"classes_{t}" in arrays:
            classes = np.unique(_labels(arrays, f"classes_{t}", arrays[f"classes_{t}"].size,
                                        num_classes, where))
            if not np.isin(y, classes).all():
                raise DataError(f"{where}: training labels outside classes_{t}")
        if (f"test_images_{t}" in arrays) != (f"test_labels_{t}" in arrays):
            raise DataError(f"{where}: test_images_{t} and test_labels_{t} come together")
        x_test, y_test = x[:0], y[:0]
        if f"test_images_{t}" in arrays:
            x_test = _images(arrays, f"test_images_{t}", shape, where)
            y_test = _labels(arrays, f"test_labels_{t}", len(x_test), num_classes, where)
        tasks.append(Task(t, classes, x, y, ids, x_test, y_test))
    normalization = plan.normalization
    return TaskSequence(tasks, num_classes, shape, list(range(num_classes)),
                        np.asarray(normalization["mean"], np.float32),
                        np.asarray(normalization["std"], np.float32),
                        max(seen_ids) + 1)
