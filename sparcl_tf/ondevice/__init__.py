"""The device side's face: continual learning driven through a converted training .tflite in the
LiteRT interpreter, as an app does it (`DeviceLearner`, tasks as they arrive), or a whole planned
session (`OnDeviceSession`, what tools.ondevice runs); with what an app around them needs."""

from sparcl_tf.errors import ConfigError, DataError, SparclError, TaskCancelled
from sparcl_tf.ondevice.device_model import DeviceModel
from sparcl_tf.ondevice.learner import DeviceLearner
from sparcl_tf.ondevice.session import OnDeviceSession, read_plan
from sparcl_tf.ondevice.task_data import read_task_data
from sparcl_tf.session.trace import TraceFile

__all__ = ["ConfigError", "DataError", "DeviceLearner", "DeviceModel", "OnDeviceSession",
           "SparclError", "TaskCancelled", "TraceFile", "read_plan", "read_task_data"]
