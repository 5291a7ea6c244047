"""The task stream as one .npz, or as a folder of image files: tasks a model has never seen, for
any host (the LiteRT session's `--data`, the Kotlin session on a JVM, the app examples).

Per task t = 0, 1, ...: train_images_<t> (stored pixels, as the data set has them: uint8 or [0, 1]
floats, the model's image shape), train_labels_<t> (integers), and optionally train_ids_<t>
(distinct non-negative stable example ids; default: numbered on from the largest id before),
classes_<t> (the task's classes; default: those among its training labels), test_images_<t> and
test_labels_<t> (default: the task is not evaluated, its accuracy is null). Normalisation comes
from the session plan. `write_task_data` writes a run's stream atomically; `read_task_data`
checks a file against a plan and says what is wrong in one line.

A folder of images (how an app's photos arrive) holds the same: task_<t + 1>/train/<class>/*.png
and optionally task_<t + 1>/test/<class>/*.png, PNGs of the model's image shape (grey or RGB as
its channels), class folders named by the class index; a task's classes are its train/ class
folders (an empty one counts), its examples come in the order of their file names (then class),
and the learner numbers them. `write_task_images` turns a task-data file into such a folder.
"""

import os
import shutil

import numpy as np
import tensorflow as tf

from sparcl_tf.data.tasks import Task, TaskSequence
from sparcl_tf.errors import DataError


# Example ids index the per-example statistics tables (20 bytes an id, up to 320 MB here):
# every host refuses ids from 2^24 on rather than allocate for a sparse id near 2^31.
MAX_EXAMPLE_IDS = 1 << 24


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


def _npz_arrays(path):
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {name: archive[name] for name in archive.files}
    except (OSError, ValueError, EOFError) as error:
        why = "not an .npz file" if "pickle" in str(error) else error
        raise DataError(f"cannot read task data {path}: {why}") from None


def _task_folder(folder):
    """task_<t + 1> folders of `folder`, in task order; DataError when there are none or gaps."""
    names = {name for name in os.listdir(folder) if os.path.isdir(os.path.join(folder, name))}
    count = 0
    while f"task_{count + 1}" in names:
        count += 1
    if not count:
        raise DataError(f"{folder} holds no task_1 folder: not a task-image folder")
    extra = sorted(name for name in names if name.startswith("task_")
                   and name not in {f"task_{t + 1}" for t in range(count)})
    if extra:
        raise DataError(f"{folder}: {extra[0]} does not follow task_1 .. task_{count} without "
                        f"a gap")
    return [os.path.join(folder, f"task_{t + 1}") for t in range(count)]


def _read_png(path, shape):
    """The uint8 pixels of an 8-bit PNG of `shape` (grey or RGB as its channels, as stored)."""
    try:
        with open(path, "rb") as handle:
            data = handle.read()
        image = tf.io.decode_png(data, channels=0).numpy()
    except (OSError, tf.errors.OpError) as error:
        raise DataError(f"{path} is not a readable PNG: {getattr(error, 'message', error)}") \
            from None
    if data[24:25] != b"\x08":  # the IHDR's bit depth
        raise DataError(f"{path} is not an 8-bit PNG")
    if image.shape != shape:
        raise DataError(f"{path} is {image.shape[1]}x{image.shape[0]} pixels with "
                        f"{image.shape[2]} channels; the model takes {shape[1]}x{shape[0]} with "
                        f"{shape[2]}")
    return image


def _split_images(directory, shape, num_classes, where):
    """(images, labels, classes) of a train/ or test/ folder: class folders of PNGs of `shape`."""
    classes, files = [], []
    for name in sorted(os.listdir(directory)):
        if not os.path.isdir(os.path.join(directory, name)):
            continue
        if not name.isdigit() or int(name) >= num_classes:
            raise DataError(f"{where}: class folder {name!r} is not a class index 0.."
                            f"{num_classes - 1}")
        classes.append(int(name))
        files += [(file, int(name)) for file in os.listdir(os.path.join(directory, name))
                  if file.lower().endswith(".png")]
    files.sort()
    images = [_read_png(os.path.join(directory, str(label), file), shape)
              for file, label in files]
    return (np.stack(images) if images else np.zeros((0,), np.uint8),
            np.array([label for _, label in files], np.int32), np.array(sorted(classes), np.int32))


def _folder_arrays(folder, plan):
    """The arrays of a task-data file, read from a task-image folder."""
    arrays, shape = {}, tuple(int(d) for d in plan.image_shape)
    for t, task in enumerate(_task_folder(folder)):
        for split in ("train", "test"):
            directory = os.path.join(task, split)
            if split == "test" and not os.path.isdir(directory):
                continue
            if not os.path.isdir(directory):
                raise DataError(f"{task} has no train folder")
            x, y, classes = _split_images(directory, shape, plan.num_classes, directory)
            if not len(y) and split == "train":
                raise DataError(f"{directory} holds no PNG images")
            arrays.update({f"{split}_images_{t}": x, f"{split}_labels_{t}": y})
            if split == "train":
                arrays[f"classes_{t}"] = classes
    return arrays


def write_task_images(data_path, folder):
    """The tasks of the task-data file at `data_path` as a task-image folder (uint8 pixels;
    files named by example position, so the folder keeps the file's order). `folder` must not
    exist or be empty; it appears whole or not at all."""
    arrays = _npz_arrays(data_path)
    if os.path.isfile(folder):
        raise DataError(f"{folder} cannot be used: it is a file, not a folder")
    if os.path.isdir(folder) and os.listdir(folder):
        raise DataError(f"{folder} exists and is not an empty folder")
    spoiled = sorted(name for name in arrays if name.startswith(("train_images_", "test_images_"))
                     and arrays[name].dtype != np.uint8)
    if spoiled:  # PNG holds 8-bit pixels only
        raise DataError(f"{data_path}: {spoiled[0]} are {arrays[spoiled[0]].dtype} pixels, not "
                        f"uint8; only uint8 images can be written as PNG files")
    partial = os.path.normpath(folder) + ".partial"
    try:
        shutil.rmtree(partial, ignore_errors=True)
        t = 0
        while f"train_images_{t}" in arrays:
            for split in ("train", "test"):
                if f"{split}_images_{t}" in arrays:
                    _write_split(arrays, t, split, os.path.join(partial, f"task_{t + 1}", split))
            t += 1
        if os.path.isdir(folder):
            os.rmdir(folder)
        os.replace(partial, folder)
    except OSError as error:
        shutil.rmtree(partial, ignore_errors=True)
        raise DataError(f"cannot write {folder}: {error.strerror or error}") from None
    return folder


def _write_split(arrays, t, split, directory):
    images, labels = arrays[f"{split}_images_{t}"], arrays[f"{split}_labels_{t}"]
    classes = arrays.get(f"classes_{t}", labels) if split == "train" else labels
    for label in np.unique(classes):
        os.makedirs(os.path.join(directory, str(label)), exist_ok=True)
    for index, (image, label) in enumerate(zip(images, labels)):
        pixels = image if image.ndim == 3 else image[..., None]
        with open(os.path.join(directory, str(label), f"{index:06d}.png"), "wb") as handle:
            handle.write(tf.io.encode_png(pixels).numpy())


def read_task_data(path, plan):
    """The tasks of the task-data file or task-image folder at `path` for a model following
    `plan` (a `SessionPlan`), as a `TaskSequence`; DataError naming what is wrong."""
    arrays = _folder_arrays(path, plan) if os.path.isdir(path) else _npz_arrays(path)
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
            if given.shape != (len(x),) or not np.issubdtype(given.dtype, np.integer):
                raise DataError(f"{where}: train_ids_{t} must be {len(x)} integer ids")
            ids = given.astype(np.int64)
        if len(ids) and (ids.min() < 0 or ids.max() >= MAX_EXAMPLE_IDS):
            raise DataError(f"{where}: example ids must lie in [0, 2^24): the per-example "
                            f"statistics are a table indexed by id")
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
