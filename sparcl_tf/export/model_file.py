"""A model's bytes checked before a runtime sees them (the twin of the Kotlin host's
`ModelFile.kt`): the TFLite file identifier, the root table, the subgraphs' tensors and every
buffer's bytes inside the file, so a cut or foreign file is one DataError instead of a runtime
that reads past the end; then the SHA-256 signatures.json carries (`model_sha256`), which catches
damage in the weights' bytes that no structural check sees."""

import hashlib
import struct

from sparcl_tf.errors import DataError

IDENTIFIER = b"TFL3"


def checksum(model):
    """signatures.json's `model_sha256` of the model bytes `model`."""
    return hashlib.sha256(model).hexdigest()


class _Tables:
    """Flatbuffer tables of `data`, every offset checked to lie inside it (IndexError if not)."""

    def __init__(self, data):
        self.data, self.size = data, len(data)

    def inside(self, at, length, what):
        if at < 0 or length < 0 or at + length > self.size:
            raise IndexError(f"{what} at {at}+{length} of {self.size} bytes")
        return at

    def uint(self, at):
        return struct.unpack_from("<I", self.data, self.inside(at, 4, "offset"))[0]

    def target(self, at, what):
        return self.inside(at + self.uint(at), 4, what)

    def field(self, table, index):
        """The position of field `index` of the table at `table`, or None when absent."""
        soffset = struct.unpack_from("<i", self.data, self.inside(table, 4, "table"))[0]
        vtable = self.inside(table - soffset, 4, "vtable")
        vtable_size = struct.unpack_from("<H", self.data, vtable)[0]
        slot = 4 + 2 * index
        if slot + 2 > vtable_size:
            return None
        offset = struct.unpack_from("<H", self.data, self.inside(vtable + slot, 2, "vtable"))[0]
        return self.inside(table + offset, 4, "field") if offset else None

    def tables(self, table, index, what):
        at = self.field(table, index)
        if at is None:
            return []
        vector = self.target(at, what)
        count = self.uint(vector)
        self.inside(vector + 4, 4 * count, what)
        return [self.target(vector + 4 + 4 * i, what) for i in range(count)]

    def check_model(self):
        root = self.target(0, "root table")
        for subgraph in self.tables(root, 2, "subgraphs"):
            self.tables(subgraph, 0, "tensors")
        for buffer in self.tables(root, 4, "buffers"):
            at = self.field(buffer, 0)
            if at is not None:
                data = self.target(at, "buffer data")
                self.inside(data + 4, self.uint(data), "buffer data")
            offset, size = (struct.unpack_from("<Q", self.data, self.inside(at, 8, name))[0]
                            if at is not None else 0
                            for at, name in ((self.field(buffer, 1), "buffer offset"),
                                             (self.field(buffer, 2), "buffer size")))
            if offset > 1:
                self.inside(offset, size, "buffer data")


def verify(model, sha256, name):
    """DataError naming `name` unless `model` (bytes) is a whole .tflite file whose SHA-256 is
    `sha256` (None: not compared)."""
    if len(model) < 16:
        raise DataError(f"{name} is not a readable .tflite model ({len(model)} bytes)")
    if model[4:8] != IDENTIFIER:
        raise DataError(f"{name} is not a readable .tflite model (file identifier "
                        f"{bytes(model[4:8])!r}, not {IDENTIFIER!r})")
    try:
        _Tables(model).check_model()
    except IndexError as error:
        raise DataError(f"{name} is not a readable .tflite model: truncated or corrupt "
                        f"({error})") from None
    if sha256 is not None and checksum(model) != sha256:
        raise DataError(f"{name} does not match the model_sha256 of the signatures.json beside "
                        f"it: the file is damaged or was replaced; convert the run again")
