"""Continual learning driven through a converted training .tflite in the LiteRT interpreter."""

from sparcl_tf.ondevice.device_model import DeviceModel
from sparcl_tf.ondevice.learner import DeviceLearner
from sparcl_tf.ondevice.session import OnDeviceSession

__all__ = ["DeviceLearner", "DeviceModel", "OnDeviceSession"]
