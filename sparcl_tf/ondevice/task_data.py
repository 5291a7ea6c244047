"""The task stream as one .npz, for a host without the data set (the Kotlin session on a JVM).

Per task t: train_images_<t> (stored pixels, as the data set has them: uint8 or [0, 1] floats),
train_labels_<t> (int32), train_ids_<t> (int64 stable example ids), test_images_<t>,
test_labels_<t>: exactly what the session loop trains and evaluates on, before normalisation
(the session plan carries it). Written atomically.
"""

import os

import numpy as np


def write_task_data(path, tasks, method):
    arrays = {}
    for index, task in enumerate(tasks.tasks):
        x, y, ids = method.task_training_data(tasks, index)
        arrays.update({f"train_images_{index}": x, f"train_labels_{index}": y.astype(np.int32),
                       f"train_ids_{index}": ids.astype(np.int64),
                       f"test_images_{index}": task.x_test,
                       f"test_labels_{index}": task.y_test.astype(np.int32)})
    temporary = path + ".tmp.npz"
    np.savez(temporary, **arrays)
    os.replace(temporary, path)
    return path
