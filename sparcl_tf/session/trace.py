"""A session's trace: one JSON line per step, mask update, removal stage and task end.

Every host writes the same records (the Python loop here, the Kotlin session with --trace), so two
runs of one plan compare record by record:
  {"kind": "step", "task": t, "step": global step, "loss": loss}
  {"kind": "mask_update", "task": t, "update": update index, "active": [per sparse layer]}
  {"kind": "removal", "task": t, "stage": k, "removed": [example ids, in removal order]}
  {"kind": "task_end", "task": t, "class_il": [per task, null unseen], "task_il": [...]}
"""

import json

from sparcl_tf.paths import usable_file


class TraceFile:
    """Appends records to `path` (a resumed run goes on after the records already there)."""

    def __init__(self, path, name="--trace"):
        self._handle = open(usable_file(path, name), "a")

    def __call__(self, record):
        self._handle.write(json.dumps(record) + "\n")
        self._handle.flush()

    def close(self):
        self._handle.close()


def read_trace(path):
    with open(path) as handle:
        return [json.loads(line) for line in handle if line.strip()]
