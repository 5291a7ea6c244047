"""Fine-tuning (lower bound): the base method, named for the registry."""

from sparcl_tf.methods.base import ContinualMethod


class Finetune(ContinualMethod):
    name = "finetune"
