"""Data: sources, task splits, tf.data pipelines and augmentation."""

from sparcl_tf.data.sources import LabelledData, load_source
from sparcl_tf.data.tasks import Task, TaskSequence, build_tasks
