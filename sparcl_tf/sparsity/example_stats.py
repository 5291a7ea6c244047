"""Per-example training statistics keyed by stable example id, kept by the session host.

Every step reports, for each current-task example it trained on, whether the training forward pass
classified it correctly (argmax over all logits, no CL mask) and by what margin. From that follow
presentation counts, correct counts and forgetting events (correct at one presentation, wrong at
the next), which dynamic data removal ranks examples by.
"""

import numpy as np

from sparcl_tf.checkpoint import HostArray

_TABLES = (("presentations", np.int32), ("correct", np.int32), ("last_correct", np.int32),
           ("forgetting_events", np.int32), ("last_margin", np.float32))


class ExampleStats:
    def __init__(self, num_example_ids):
        size = max(int(num_example_ids), 1)
        self._holders = {name: HostArray(np.zeros((size,), dtype), resizable=True)
                         for name, dtype in _TABLES}

    @property
    def tables(self):
        return {name: holder.array for name, holder in self._holders.items()}

    def state(self):
        return {f"stats_{name}": holder for name, holder in self._holders.items()}

    def ensure(self, num_example_ids):
        """Room for ids below `num_example_ids` (a learner's ids grow with every task)."""
        for holder in self._holders.values():
            if len(holder.array) < num_example_ids:
                grown = np.zeros((num_example_ids,), holder.array.dtype)
                grown[:len(holder.array)] = holder.array
                holder.array = grown

    def observe(self, example_ids, correct, margin_values):
        """Records one presentation of each example in the batch (ids distinct within a batch).

        `margin_values`: the true class's logit minus the largest other logit, per example.
        """
        t, index = self.tables, np.asarray(example_ids, np.int64)
        correct = np.asarray(correct).astype(np.int32)
        forgot = (t["presentations"][index] > 0) * t["last_correct"][index] * (1 - correct)
        t["presentations"][index] += 1
        t["correct"][index] += correct
        t["forgetting_events"][index] += forgot.astype(np.int32)
        t["last_correct"][index] = correct
        t["last_margin"][index] = margin_values

    def reset(self):
        for table in self.tables.values():
            table[...] = 0

    def snapshot(self, example_ids):
        """numpy dict of every statistic for `example_ids`."""
        example_ids = np.asarray(example_ids)
        return {name: table[example_ids] for name, table in self.tables.items()}


def margin(logits, labels):
    """True-class logit minus the largest other logit (positive = correct with room to spare)."""
    logits = np.asarray(logits, np.float32)
    rows = np.arange(len(labels))
    true = logits[rows, labels]
    others = logits.copy()
    others[rows, labels] = -np.inf
    return true - others.max(axis=1)
