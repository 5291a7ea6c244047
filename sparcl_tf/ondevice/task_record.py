"""What a device learner's state folder holds beside the session's checkpoints: the plan it was
learned under (plan.json) and the tasks it has seen:
tasks.json (per task: classes, size, first example id, a digest of its data, whether it has a test
set; written atomically, after the test set) and test_<t>.npz. The learner numbers a task's
examples on from one past the largest id before (a host run handed over keeps its own ids)."""

import hashlib
import json
import os

import numpy as np

from sparcl_tf.data.tasks import Task
from sparcl_tf.errors import DataError
from sparcl_tf.session.plan import SessionPlan

TASKS_FILE = "tasks.json"


def digest(x, y):
    return hashlib.sha256(np.ascontiguousarray(x).tobytes() + np.ascontiguousarray(
        y).tobytes()).hexdigest()


class TaskRecord:
    """The tasks a device learner has seen, in `state_dir`: tasks.json (written atomically, after
    the task's test set) and test_<t>.npz (a Kotlin learner's: test_<t>.bin)."""

    def __init__(self, state_dir):
        self.state_dir = state_dir
        self.path = os.path.join(state_dir, TASKS_FILE)
        self.entries = []
        if os.path.exists(self.path):
            try:
                with open(self.path) as handle:
                    self.entries = json.load(handle)["tasks"]
                assert isinstance(self.entries, list)
            except (OSError, ValueError, KeyError, TypeError, AssertionError) as error:
                raise DataError(f"{self.path} is not a task record ({error}); restore it or use "
                                f"a new state folder") from None

    @property
    def next_id(self):
        """The first id of the next task: one past every id so far."""
        return max((entry["end_id"] for entry in self.entries), default=0)

    def _test_path(self, index):
        return os.path.join(self.state_dir, f"test_{index}.npz")

    def add(self, classes, x, y, test, ids=None):
        """Records a new task (its test set `test` = (x, y) or None; `ids`: the example ids a
        host gave it, default the next ones in order) and returns its entry."""
        index = len(self.entries)
        os.makedirs(self.state_dir, exist_ok=True)
        if test is not None:
            temporary = self._test_path(index) + ".tmp.npz"
            np.savez(temporary, images=test[0], labels=test[1])
            os.replace(temporary, self._test_path(index))
        first = self.next_id if ids is None else int(np.min(ids))
        end = first + len(y) if ids is None else int(np.max(ids)) + 1
        entry = {"classes": [int(c) for c in classes], "examples": int(len(y)),
                 "first_id": first, "end_id": end, "digest": digest(x, y),
                 "test": test is not None}
        self._write(self.entries + [entry])
        self.entries.append(entry)
        return entry

    def _write(self, entries):
        temporary = self.path + ".tmp"
        with open(temporary, "w") as handle:
            json.dump({"tasks": entries}, handle)
        os.replace(temporary, self.path)

    def task(self, index, image_shape, x=None, y=None):
        """Task `index` with its test set; training arrays `x`, `y` (the task being trained) or
        none (a finished task: only its size is kept)."""
        entry = self.entries[index]
        empty = np.zeros((0,) + tuple(image_shape), np.float32)
        x_test, y_test = empty, np.zeros(0, np.int64)
        if entry["test"]:
            try:
                if os.path.exists(self._test_path(index)):
                    with np.load(self._test_path(index), allow_pickle=False) as archive:
                        x_test, y_test = archive["images"], archive["labels"]
                else:
                    x_test, y_test = _kotlin_test_set(
                        os.path.join(self.state_dir, f"test_{index}.bin"), image_shape)
            except (OSError, ValueError, KeyError) as error:
                raise DataError(f"cannot read the test set of task {index} in "
                                f"{self.state_dir}: {error}") from None
        if x is None:
            x, y = empty, np.zeros(0, np.int64)
        first = entry["first_id"]
        return Task(index, np.asarray(entry["classes"], np.int64), x, y,
                    np.arange(first, first + len(y), dtype=np.int64), x_test, y_test)


def _kotlin_test_set(path, image_shape):
    """A Kotlin learner's test_<t>.bin (TaskRecord.kt: ImageSet.write, then the labels;
    big-endian): (images, labels)."""
    with open(path, "rb") as handle:
        content = handle.read()
    count, size, as_bytes = *np.frombuffer(content, ">i4", 2), content[8]
    if size != int(np.prod(image_shape)):
        raise ValueError(f"{path} holds images of {size} values")
    dtype = np.dtype("u1") if as_bytes else np.dtype(">f4")
    end = 9 + count * size * dtype.itemsize
    images = np.frombuffer(content, dtype, count * size, 9).reshape((count, *image_shape))
    labels = np.frombuffer(content, ">i4", int(np.frombuffer(content, ">i4", 1, end)[0]), end + 4)
    return images.astype(np.uint8 if as_bytes else np.float32), labels.astype(np.int64)


PLAN_FILE = "plan.json"


def keep_plan(state_dir, plan):
    """Writes `plan` (the model's session plan) into a state folder that has none, so the folder
    says what it was learned under; DataError when it holds another model's plan."""
    path = os.path.join(state_dir, PLAN_FILE)
    current = plan.to_json()
    if os.path.exists(path):
        try:
            with open(path) as handle:
                kept = json.load(handle)
        except (OSError, ValueError) as error:
            raise DataError(f"{path} is unreadable ({error}); restore it or use a new state "
                            f"folder") from None
        if {k: v for k, v in kept.items() if k != "run_config"} != {
                k: v for k, v in current.items() if k != "run_config"}:
            raise DataError(f"{state_dir} was learned with another model (its {PLAN_FILE} differs "
                            f"from the model's session plan); use a new state folder")
        return
    os.makedirs(state_dir, exist_ok=True)
    with open(path + ".tmp", "w") as handle:
        json.dump(current, handle)
    os.replace(path + ".tmp", path)


def read_kept_plan(state_dir):
    """The session plan a state folder was learned under (`keep_plan`)."""
    try:
        with open(os.path.join(state_dir, PLAN_FILE)) as handle:
            return SessionPlan.from_json(json.load(handle))
    except (OSError, ValueError) as error:
        raise DataError(f"{state_dir} has no readable {PLAN_FILE} ({error}): not a device "
                        f"learner's state folder") from None
