"""What a .tflite contains: the ops of each signature (Flex ops singled out) and its interface."""

import collections

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
    """signature -> {"ops": {op name: count}, "flex_ops": [Flex op names]}."""
    try:
        model = schema.Model.GetRootAs(model_bytes, 0)
        codes = [_operator_name(model.OperatorCodes(i)) for i in range(model.OperatorCodesLength())]
        audit = {}
        for index in range(model.SignatureDefsLength()):
            signature = model.SignatureDefs(index)
            subgraph = model.Subgraphs(signature.SubgraphIndex())
            ops = collections.Counter(codes[subgraph.Operators(i).OpcodeIndex()]
                                      for i in range(subgraph.OperatorsLength()))
            audit[signature.SignatureKey().decode()] = {
                "ops": dict(sorted(ops.items())),
                "flex_ops": sorted(name for name in ops if name.startswith("Flex"))}
    except Exception as error:  # a corrupt flatbuffer fails anywhere inside the accessors
        raise DataError(f"not a readable .tflite model: {error}") from None
    return audit
