"""What a .tflite contains: the ops of each signature (Flex ops singled out) and its interface."""

import collections
import re

from tensorflow.lite.python import schema_py_generated as schema

from sparcl_tf.errors import DataError

_BUILTIN_NAMES = {value: name for name, value in vars(schema.BuiltinOperator).items()
                  if not name.startswith("_")}


def _operator_name(code):
    if code.CustomCode():
        return code.CustomCode().decode()
    builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
    return _BUILTIN_NAMES.get(builtin, f"BUILTIN_{builtin}")


def op_audit(model_bytes):
    """signature -> {"ops": {op name: count}, "flex_ops": [Flex op names]}; a model without
    signatures (one subgraph, as TFLite Micro runs) is reported as "main"."""
    try:
        model = schema.Model.GetRootAs(model_bytes, 0)
        codes = [_operator_name(model.OperatorCodes(i)) for i in range(model.OperatorCodesLength())]
        entries = [(model.SignatureDefs(i).SignatureKey().decode(),
                    model.SignatureDefs(i).SubgraphIndex())
                   for i in range(model.SignatureDefsLength())] or [("main", 0)]
        audit = {}
        for key, subgraph_index in entries:
            subgraph = model.Subgraphs(subgraph_index)
            ops = collections.Counter(codes[subgraph.Operators(i).OpcodeIndex()]
                                      for i in range(subgraph.OperatorsLength()))
            audit[key] = {
                "ops": dict(sorted(ops.items())),
                "flex_ops": sorted(name for name in ops if name.startswith("Flex"))}
    except Exception as error:  # a corrupt flatbuffer fails anywhere inside the accessors
        raise DataError(f"not a readable .tflite model: {error}") from None
    return audit


_NEEDS_FLEX = re.compile(r'fused\["(\w+):", "(?:gradient_tape/)?[^/"]+/([^/"]+)/[^"]*"\][^\n]*?'
                         r"'tf\.\1' op is neither a custom op nor a flex op")


def flex_ops_by_layer(converter_error, layer_names):
    """TF op -> layers needing it, read from a builtins-only conversion error.

    The converter names each op by its graph scope (`model/layer_2/...`, `_2` counting calls);
    the layer is the longest name in `layer_names` the scope starts with ('?' if none does).
    """
    found = collections.defaultdict(set)
    by_length = sorted(layer_names, key=len, reverse=True)
    for op, scope in _NEEDS_FLEX.findall(str(converter_error)):
        layer = next((name for name in by_length if scope == name or re.fullmatch(
            re.escape(name) + r"_\d+", scope)), "?")
        found[op].add(layer)
    return {op: sorted(layers) for op, layers in sorted(found.items())}
