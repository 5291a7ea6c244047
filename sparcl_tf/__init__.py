"""sparcl-tf: sparse continual learning on edge devices, in TensorFlow / Keras 3.

Public API; every other module is internal.
"""

from sparcl_tf.config import base_config, validate
from sparcl_tf.continual_model import ContinualModel
from sparcl_tf.errors import CheckpointError, ConfigError, DataError, SparclError
from sparcl_tf.experiment import Experiment, run_experiment
from sparcl_tf.flops import FlopsLedger, layer_forward_flops
from sparcl_tf.layers import MaskedConv2D, MaskedDense, masked_layers, sparsifiable_layers
from sparcl_tf.methods import METHODS, build_method
from sparcl_tf.models import MODELS, build_model
from sparcl_tf.replay import ReservoirBuffer

__all__ = [
    "CheckpointError", "ConfigError", "ContinualModel", "DataError", "Experiment", "FlopsLedger",
    "METHODS", "MODELS", "MaskedConv2D", "MaskedDense", "ReservoirBuffer", "SparclError",
    "base_config", "build_method", "build_model", "layer_forward_flops",
    "masked_layers", "run_experiment", "sparsifiable_layers", "validate",
]
