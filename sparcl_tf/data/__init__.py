"""Data: sources, task splits, tf.data pipelines and augmentation. (`split.split_dataset`, which
reads the config's defaults, is not imported here: the config's checks import these modules.)"""

from sparcl_tf.data.sources import LabelledData, load_source
from sparcl_tf.data.tasks import Task, TaskSequence, build_tasks

__all__ = ["LabelledData", "Task", "TaskSequence", "build_tasks", "load_source"]
