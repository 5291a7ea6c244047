"""A single-subgraph .tflite called by input and output names, in TFLite Micro or in LiteRT.

TFLM has no signatures: inputs and outputs are positional. Input names come from the subgraph's
input tensors (the tf.function's argument names), output names from the order the model builder
documents (the function's outputs, found by their tensor names), so both runtimes take and return
the same dicts and a step can be run in each and compared.
"""

import contextlib
import os

import numpy as np
from tensorflow.lite.python import schema_py_generated as schema

from sparcl_tf.errors import DataError, import_extra


def _plain(name):
    """'serving_default_features:0' (the converter's tensor name) -> 'features'."""
    name = name.removeprefix("serving_default_")
    return name.rsplit(":", 1)[0] if name.rsplit(":", 1)[-1].isdigit() else name


def _output_position(name, default):
    """Which function output a subgraph output is: 'PartitionedCall:3' -> 3; the converter
    reorders the subgraph's outputs, so their position alone is not the function's order."""
    suffix = name.rsplit(":", 1)[-1]
    return int(suffix) if ":" in name and suffix.isdigit() else default


def output_positions(model_bytes):
    subgraph = schema.Model.GetRootAs(model_bytes, 0).Subgraphs(0)
    return [_output_position(subgraph.Tensors(subgraph.Outputs(i)).Name().decode(), i)
            for i in range(subgraph.OutputsLength())]


def input_names(model_bytes):
    try:
        subgraph = schema.Model.GetRootAs(model_bytes, 0).Subgraphs(0)
        return [_plain(subgraph.Tensors(subgraph.Inputs(i)).Name().decode())
                for i in range(subgraph.InputsLength())]
    except Exception as error:
        raise DataError(f"not a readable .tflite model: {error}") from None


@contextlib.contextmanager
def _quiet():
    """TFLM's C++ side prints every failed allocation; the arena search makes many on purpose."""
    saved = [os.dup(1), os.dup(2)]
    with open(os.devnull, "w") as null:
        os.dup2(null.fileno(), 1)
        os.dup2(null.fileno(), 2)
        try:
            yield
        finally:
            for fd, copy in ((1, saved[0]), (2, saved[1])):
                os.dup2(copy, fd)
                os.close(copy)


def _tflm(model_bytes, arena_size):
    runtime = import_extra("tflite_micro.python.tflite_micro.runtime", "micro")
    with _quiet():
        return runtime.Interpreter.from_bytes(bytes(model_bytes), arena_size=arena_size)


def minimum_arena_bytes(model_bytes, upper=8 << 20, granularity=16):
    """The smallest tensor arena (bytes, to `granularity`) TFLM can allocate this model in."""
    low, high = 0, upper
    try:
        _tflm(model_bytes, high)
    except RuntimeError as error:
        raise DataError(f"TFLM cannot run this model within {upper} bytes of arena: {error}") \
            from None
    while high - low > granularity:
        middle = (low + high) // 2
        try:
            _tflm(model_bytes, middle)
            high = middle
        except RuntimeError:
            low = middle
    return high


class MicroModel:
    """The model in the TFLM Python runtime with an arena of `arena_size` bytes."""

    runtime = "tflm"

    def __init__(self, model_bytes, output_names, arena_size):
        self.inputs = input_names(model_bytes)
        self.outputs = [output_names[k] for k in output_positions(model_bytes)]
        self._interpreter = _tflm(model_bytes, arena_size)

    def __call__(self, **inputs):
        for index, name in enumerate(self.inputs):
            self._interpreter.set_input(np.asarray(inputs[name], order="C"), index)
        self._interpreter.invoke()
        return {name: self._interpreter.get_output(index)
                for index, name in enumerate(self.outputs)}


class LiteModel:
    """The same model in LiteRT (for comparison with TFLM); `reference_kernels` turns off the
    XNNPACK delegate, whose int8 rounding differs from the reference kernels TFLM uses."""

    runtime = "litert"

    def __init__(self, model_bytes, output_names, reference_kernels=False):
        litert = import_extra("ai_edge_litert.interpreter", "micro")
        Interpreter, OpResolverType = litert.Interpreter, litert.OpResolverType
        resolver = OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES if reference_kernels \
            else OpResolverType.AUTO
        self._interpreter = Interpreter(model_content=bytes(model_bytes),
                                        experimental_op_resolver_type=resolver)
        self._interpreter.allocate_tensors()
        self._inputs = {_plain(d["name"]): d["index"]
                        for d in self._interpreter.get_input_details()}
        details = self._interpreter.get_output_details()
        self._outputs = [d["index"] for d in details]
        self.outputs = [output_names[_output_position(d["name"], i)]
                        for i, d in enumerate(details)]

    def __call__(self, **inputs):
        for name, index in self._inputs.items():
            self._interpreter.set_tensor(index, np.asarray(inputs[name], order="C"))
        self._interpreter.invoke()
        return {name: self._interpreter.get_tensor(index)
                for name, index in zip(self.outputs, self._outputs)}
