"""What every continual-learning method shares: the current-batch loss and the task data it trains.

A method is a small object the train step asks for its loss; it holds no training loop. Subclasses
declare how many independent replay draws a step needs and add their replay terms.
"""

import math

import tensorflow as tf

from sparcl_tf.errors import ConfigError

NEG_INF_LOGIT = -1e9  # finite, so masked classes give exact zeros in softmax without NaN gradients
# What the CL mask does with the other classes' logits in the current batch's loss: leaves them
# out of the softmax, or keeps them in as constants (the current classes learn to beat them, and
# no gradient pushes them down).
MASKED_LOGITS = ("excluded", "constant")


def cross_entropy(labels, logits):
    return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits))


def logit_matching(logits, labels, stored_logits):
    del labels
    return tf.reduce_mean(tf.square(logits - stored_logits))


def replayed_cross_entropy(logits, labels, stored_logits):
    del stored_logits
    return cross_entropy(labels, logits)


# A replay term's kind -> its loss on one draw (logits of the replayed images, their labels, the
# logits stored with them); the micro head builds the same kinds in its own graph.
REPLAY_LOSSES = {"mse": logit_matching, "ce": replayed_cross_entropy}


class ContinualMethod:
    """Fine-tuning: train on each task in turn with nothing against forgetting (the lower bound).

    A method is data where it can be: `REPLAY_TERMS` lists its replay terms as (kind of
    `REPLAY_LOSSES`, the attribute holding its weight, or None for an unweighted term), each on
    an independent replay draw, or with `shared_draw` all on one draw (one forward and backward
    of the replayed batch instead of one per term, as Avalanche's DER++); the Keras step, the
    exported train signature and the micro head all read them.

    Args:
      cl_mask: the current batch's loss over the current task's classes only.
      alpha: weight of the first replay term (None: the method's default).
      beta: weight of the second replay term (None: the method's default).
      shared_draw: every replay term on one replay draw (DER++ only).
      masked_logits: with the CL mask, the other classes' logits are 'excluded' from the softmax
        or kept in it as 'constant's (no gradient).
    """

    name = "finetune"
    REPLAY_TERMS = ()
    replay_draws, uses_buffer = 0, False  # follow from REPLAY_TERMS (`__init_subclass__`)
    default_alpha = default_beta = 0.0  # the replay terms' weights (the presets' values)

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls.replay_draws, cls.uses_buffer = len(cls.REPLAY_TERMS), bool(cls.REPLAY_TERMS)

    def __init__(self, cl_mask=True, alpha=None, beta=None, shared_draw=False,
                 masked_logits="excluded"):
        who = type(self).__name__
        for name, value in (("cl_mask", cl_mask), ("shared_draw", shared_draw)):
            if not isinstance(value, bool):
                raise ConfigError(f"{who}: {name}={value!r} is invalid: must be True or False")
        if masked_logits not in MASKED_LOGITS:
            raise ConfigError(f"{who}: masked_logits={masked_logits!r} is invalid: must be one "
                              f"of {list(MASKED_LOGITS)}")
        if shared_draw and len(self.REPLAY_TERMS) < 2:
            raise ConfigError(f"{who}: shared_draw=True is invalid: {self.name} has "
                              f"{len(self.REPLAY_TERMS)} replay term(s), nothing to share")
        for name, value in (("alpha", alpha), ("beta", beta)):
            if value is not None and not (isinstance(value, (int, float)) and not isinstance(
                    value, bool) and math.isfinite(value) and value >= 0):
                raise ConfigError(f"{who}: {name}={value!r} is invalid: must be a finite "
                                  f"number >= 0 or None")
        self.cl_mask, self.shared_draw, self.masked_logits = cl_mask, shared_draw, masked_logits
        self.alpha = self.default_alpha if alpha is None else alpha
        self.beta = self.default_beta if beta is None else beta
        # The draw each replay term reads; the step is fed one draw per distinct entry.
        self.term_draws = tuple(0 if shared_draw else i for i in range(len(self.REPLAY_TERMS)))
        self.replay_draws = len(set(self.term_draws))

    def overrides(self):
        """This method as config fields (what results record and a resume checks)."""
        return {"method.name": self.name, "method.alpha": float(self.alpha),
                "method.beta": float(self.beta), "method.cl_mask": bool(self.cl_mask),
                "method.shared_draw": bool(self.shared_draw),
                "method.masked_logits": self.masked_logits}

    def current_loss(self, labels, logits, class_mask):
        """CE on the current batch; with the CL mask, only the current task's classes' logits
        learn from it (the others out of the softmax, or in it as constants: `masked_logits`)."""
        if self.cl_mask:
            others = tf.stop_gradient(logits) if self.masked_logits == "constant" \
                else NEG_INF_LOGIT
            logits = tf.where(class_mask[None, :], logits, others)
        return cross_entropy(labels, logits)

    def replay_terms(self):
        """[(kind, weight)] per replay draw (an unweighted term weighs 1.0)."""
        return [(kind, 1.0 if weight is None else float(getattr(self, weight)))
                for kind, weight in self.REPLAY_TERMS]

    def replay_loss(self, forward, draws):
        """The replay terms on their draws [(images, labels, stored_logits)], in order, each draw
        forwarded once; `forward` -> logits."""
        terms, logits = [], {}
        for (kind, weight), draw in zip(self.REPLAY_TERMS, self.term_draws):
            images, labels, stored = draws[draw]
            if draw not in logits:
                logits[draw] = forward(images)
            term = REPLAY_LOSSES[kind](logits[draw], labels, stored)
            terms.append(term if weight is None else getattr(self, weight) * term)
        return sum(terms[1:], terms[0]) if terms else tf.constant(0.0)

    def task_training_data(self, tasks, task_index):
        """(x, y, ids) that task `task_index` trains on."""
        task = tasks.tasks[task_index]
        return task.x_train, task.y_train, task.ids_train
