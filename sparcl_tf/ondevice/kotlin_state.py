"""A Kotlin device learner's state, read on the host: the newest `state-<n>.bin` of its folder
(tflite/android's `StateFile.kt`) as the arrays and progress of a Python device folder, so the
host takes a phone's run over the same way as a Python device learner's.

Layout (big-endian): "SPARCLST", format, plan version, plan and model fingerprints, record count,
records (modified-UTF-8 name, kind I/J/F/D/B, length, values), then the CRC32 of all that as a
long. The session plan the folder was learned under (plan.json, which the Kotlin learner keeps)
gives the variables' order; the host model their shapes.
"""

import os
import re
import struct
import zlib

import numpy as np

from sparcl_tf.errors import CheckpointError

MAGIC = b"SPARCLST"
FORMAT = 1
_KINDS = {"I": ">i4", "J": ">i8", "F": ">f4", "D": ">f8", "B": "u1"}
_NAME = re.compile(r"state-(\d+)\.bin$")


def latest_state_file(state_dir):
    """The newest Kotlin state file in `state_dir`, or None."""
    found = [(int(m.group(1)), name) for name in os.listdir(state_dir)
             if (m := _NAME.match(name))] if os.path.isdir(state_dir) else []
    return os.path.join(state_dir, max(found)[1]) if found else None


def read_records(path, plan_version):
    """Name -> numpy array of every record of the Kotlin state file at `path`."""
    with open(path, "rb") as handle:
        content = handle.read()
    if not content.startswith(MAGIC) or len(content) < len(MAGIC) + 40:
        raise CheckpointError(f"{path} is not a whole Kotlin session state file")
    body, (crc,) = content[:-8], struct.unpack(">q", content[-8:])
    if zlib.crc32(body) != crc:
        raise CheckpointError(f"{path} is truncated or corrupt (checksum mismatch)")
    at = len(MAGIC)
    form, version, _, _, count = struct.unpack_from(">iiqqi", body, at)
    at += struct.calcsize(">iiqqi")
    if form != FORMAT or version != plan_version:
        raise CheckpointError(f"{path} has format {form} for plan version {version}; this host "
                              f"reads format {FORMAT}, plan version {plan_version}")
    records = {}
    try:
        for _ in range(count):
            (size,) = struct.unpack_from(">H", body, at)
            name = body[at + 2:at + 2 + size].decode("utf-8")
            at += 2 + size
            kind, length = chr(body[at]), struct.unpack_from(">i", body, at + 1)[0]
            at += 5
            dtype = np.dtype(_KINDS[kind])
            records[name] = np.frombuffer(body, dtype, length, at).astype(dtype.newbyteorder("="))
            at += length * dtype.itemsize
    except (KeyError, struct.error, ValueError) as error:
        raise CheckpointError(f"{path} is corrupt ({error!r})") from None
    return records


def _rows(flat, sizes):
    rows, at = [], 0
    for size in sizes:
        rows.append([None if np.isnan(v) else float(v) for v in flat[at:at + size]])
        at += size
    return rows


def as_device_folder(records, plan, shapes):
    """(arrays, progress) in a Python device folder's names from a Kotlin state's `records`;
    `shapes`: per variable of `plan.model["variables"]`, its shape on the host. Weight units
    only (the caller refuses filter slots)."""
    progress, counters = records["progress"], records["counters"]
    task, epoch = int(progress[0]), int(progress[1])
    arrays = {}
    for name, shape in zip(plan.model["variables"], shapes):
        raw = records.get(f"model/{name}")
        if raw is None:
            raise CheckpointError(f"the Kotlin state lacks the model variable {name!r}")
        width = raw.size // max(int(np.prod(shape)), 1)
        arrays[f"device/{name}"] = raw.view(np.bool_ if width == 1 else np.dtype("<f4")).reshape(
            shape)
    for layer, name in zip(plan.sparse_layers, plan.model["unit_masks"]):
        key = f"model/last_gradient__{layer}"
        if key in records:
            arrays[f"device/last_gradient__{layer}"] = records[key].view("<f4").reshape(
                arrays[f"device/{name}"].shape)  # weight units: the kernel's, as its mask
    for name in ("presentations", "correct", "last_correct", "forgetting_events"):
        arrays[f"stats/stats_{name}"] = records[f"stats/{name}"].astype(np.int32)
    arrays["stats/stats_last_margin"] = records["stats/last_margin"].astype(np.float32)
    if "buffer/labels" in records:
        slots = len(records["buffer/labels"])
        arrays.update({
            "buffer/buffer_images": records["buffer/images"].astype(np.float32).reshape(
                (slots, *plan.image_shape)),
            "buffer/buffer_labels": records["buffer/labels"].astype(np.int32),
            "buffer/buffer_logits": records["buffer/logits"].astype(np.float32).reshape(
                slots, plan.num_classes),
            "buffer/buffer_task_ids": records["buffer/task_ids"].astype(np.int32),
            "buffer/buffer_example_ids": records["buffer/example_ids"].astype(np.int64),
            "buffer/buffer_seen": np.asarray(records["buffer/seen"][0], np.int64)})
    sizes = records["matrix_row_sizes"]
    removed = int(counters[3]) + len(records["removed_by_task"])
    state = {"task": task, "epoch": epoch, "epoch_order": None if "epoch_order" not in records
             else [int(r) for r in records["epoch_order"]],
             "global_step": int(counters[0]), "examples_presented": int(counters[1]),
             "examples_removed": removed, "train_time_s": float(counters[2]) / 1e9,
             "class_il_matrix": _rows(records["class_il"], sizes),
             "task_il_matrix": _rows(records["task_il"], sizes),
             "task_examples": [int(n) for n in records["task_examples"]]}
    return arrays, state
