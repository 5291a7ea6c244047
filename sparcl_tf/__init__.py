"""sparcl-tf: sparse continual learning on edge devices, in TensorFlow / Keras 3.

The library's public face is `sparcl_tf.keras` (`import sparcl_tf.keras as sparcl`): the
learner, SparCL's settings, the replay methods, sparsify / strip, the masked layers, the frozen
backbone, task splitting and the errors. The device side is `sparcl_tf.ondevice.DeviceLearner`.
Every other module serves the binaries in `tools/` and is internal. Importing this package loads
nothing else, so a config file or a binary that stops at a bad flag never waits for TensorFlow.
"""

__version__ = "0.9.0"
