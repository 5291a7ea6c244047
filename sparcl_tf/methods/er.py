"""Experience Replay: CE on the current batch + CE on one replay batch."""

from sparcl_tf.methods.base import ContinualMethod


class ER(ContinualMethod):
    """Experience Replay: the current batch's loss + CE on a replay draw. Arguments as
    `ContinualMethod`."""

    name = "er"
    REPLAY_TERMS = (("ce", None),)
