"""A training module's SavedModel and its conversion to one .tflite holding every signature."""

import tensorflow as tf


def convert(module, directory):
    """SavedModel in `directory`, then a .tflite with every signature (bytes); builtins only
    unless the module has the Flex save/restore signatures."""
    flex = module.save is not None
    signatures = module.signatures()
    tf.saved_model.save(module, directory, signatures=signatures)
    converter = tf.lite.TFLiteConverter.from_saved_model(directory,
                                                         signature_keys=list(signatures))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS] + (
        [tf.lite.OpsSet.SELECT_TF_OPS] if flex else [])
    converter.experimental_enable_resource_variables = True
    return converter.convert()
