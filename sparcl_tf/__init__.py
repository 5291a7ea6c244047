"""sparcl-tf: sparse continual learning on edge devices, in TensorFlow / Keras 3.

Public API; every other module is internal. Names load on first use, so a config file or a
binary that stops at a bad flag never waits for TensorFlow to import.
"""

import importlib

_EXPORTS = {
    "base_config": "sparcl_tf.config", "validate": "sparcl_tf.config", "SparCL": "sparcl_tf.config",
    "ContinualLearner": "sparcl_tf.learner", "FrozenBackbone": "sparcl_tf.backbone",
    "ContinualModel": "sparcl_tf.continual_model",
    "CheckpointError": "sparcl_tf.errors", "ConfigError": "sparcl_tf.errors",
    "DataError": "sparcl_tf.errors", "SparclError": "sparcl_tf.errors",
    "Experiment": "sparcl_tf.experiment", "run_experiment": "sparcl_tf.experiment",
    "FlopsLedger": "sparcl_tf.flops", "layer_forward_flops": "sparcl_tf.flops",
    "MaskedConv2D": "sparcl_tf.layers", "MaskedDense": "sparcl_tf.layers",
    "masked_layers": "sparcl_tf.layers", "sparsifiable_layers": "sparcl_tf.layers",
    "METHODS": "sparcl_tf.methods", "build_method": "sparcl_tf.methods",
    "MODELS": "sparcl_tf.models", "build_model": "sparcl_tf.models",
    "ReservoirBuffer": "sparcl_tf.session.buffer",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'sparcl_tf' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
