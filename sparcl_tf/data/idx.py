"""Reader for the IDX format of (Fashion-)MNIST, plain or gzip-compressed."""

import gzip
import math
import os
import struct
import zlib

import numpy as np

from sparcl_tf.errors import DataError

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
               0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


def _read_bytes(path):
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except FileNotFoundError:
        raise DataError(f"IDX file {path} does not exist") from None
    except (OSError, EOFError, zlib.error) as error:
        raise DataError(f"IDX file {path} is not readable or not valid gzip: {error}") from None
    return raw


def read_idx(path):
    """Returns the array stored in IDX file `path` (checked against its header)."""
    raw = _read_bytes(path)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise DataError(f"{path} is not an IDX file (bad magic number)")
    dtype, ndim = np.dtype(_IDX_DTYPES[raw[2]]), raw[3]
    header_size = 4 + 4 * ndim
    if len(raw) < header_size:
        raise DataError(f"IDX file {path} is truncated inside its header")
    shape = struct.unpack(f">{ndim}I", raw[4:header_size])
    expected = math.prod(shape) * dtype.itemsize  # Python ints: a huge header cannot wrap
    if len(raw) - header_size != expected:
        raise DataError(f"IDX file {path} holds {len(raw) - header_size} data bytes, its header "
                        f"{shape} promises {expected} (truncated or corrupt)")
    array = np.frombuffer(raw, dtype=dtype, offset=header_size).reshape(shape)
    return array.astype(dtype.newbyteorder("="), copy=False)


def find_idx_file(folder, stem):
    """Path of `stem` or `stem.gz` in `folder`, whichever exists."""
    for name in (stem, stem + ".gz"):
        path = os.path.join(folder, name)
        if os.path.isfile(path):
            return path
    raise DataError(f"{folder} has no {stem} or {stem}.gz (is the data folder right?)")
