"""The library face for a user's own Keras 3 model: continual learning with SparCL, or masks
alone under a plain `model.fit`.

    learner = ContinualLearner(model, method=DERPP(), buffer_size=500,
                               sparcl=SparCL(weight_sparsity=0.9, gradient_sparsity=0.92))
    learner.fit_task(x, y, test_data=(x_test, y_test))             # once per task
    model = sparcl_tf.keras.sparsify(model, weight_sparsity=0.9)   # exact magnitude masks
    model.fit(..., callbacks=[sparcl_tf.keras.KeepMasksExact()])   # pruned weights stay 0
    plain = sparcl_tf.keras.strip(model)                           # plain Keras, zeros baked in

Everything a user of the library needs is here (`__all__`); the registry runs, the hosts and the
device learner stay in their modules (`sparcl_tf.experiment`, `sparcl_tf.ondevice`, ...).
"""

from sparcl_tf.models.frozen_backbone import FrozenBackbone
from sparcl_tf.config import SparCL
from sparcl_tf.data.pipeline import Normalizer
from sparcl_tf.data.split import split_dataset
from sparcl_tf.errors import (CheckpointError, ClusterError, ConfigError, DataError,
                              DivergedError, ExportError, SparclError, TaskCancelled)
from sparcl_tf.layers import MaskedConv2D, MaskedDense, MaskedDepthwiseConv2D, ReLU
from sparcl_tf.learner import ContinualLearner
from sparcl_tf.methods import DER, DERPP, ER, Finetune, Joint
from sparcl_tf.sparsify import SUPPORTED_LAYERS, KeepMasksExact, sparsify, strip

__all__ = [
    # learning
    "ContinualLearner", "SparCL", "DERPP", "DER", "ER", "Finetune", "Joint",
    # masks on any Keras model
    "sparsify", "strip", "KeepMasksExact", "SUPPORTED_LAYERS",
    "MaskedConv2D", "MaskedDense", "MaskedDepthwiseConv2D", "ReLU",
    # data and features
    "split_dataset", "Normalizer", "FrozenBackbone",
    # errors
    "SparclError", "ConfigError", "DataError", "CheckpointError", "DivergedError",
    "ClusterError", "ExportError", "TaskCancelled",
]
