"""Fine-tuning (lower bound): the base method, named for the registry."""

from sparcl_tf.methods.base import ContinualMethod


class Finetune(ContinualMethod):
    """Fine-tuning, the lower bound: each task in turn, nothing against forgetting."""

    name = "finetune"
