"""On-device training files: the training module (`module`), its device mask updates
(`device_masks`), conversion to one .tflite (`conversion`), the files beside it (`files`) and the
op audit (`audit`)."""

from sparcl_tf.export.conversion import convert
from sparcl_tf.export.module import training_module

__all__ = ["convert", "training_module"]
