"""SparCL's three kinds of sparsity, each its own module, and the loop's view of them.

`masks` (mask math), `schedule` (when and to what targets), `tdm` (mask updates on layers),
`dgm` (gradient masks, used inside the train step), `ddr` (which examples to remove).
"""

import numpy as np

from sparcl_tf.layers import channel_masks
from sparcl_tf.sparsity import schedule
from sparcl_tf.sparsity.structured import ChannelUpdater
from sparcl_tf.sparsity.tdm import MaskUpdater


class SparseTraining:
    """Decides and applies the mask updates of one run (TDM, RigL, static or none)."""

    def __init__(self, config, model, optimizer, full_filters=None):
        self.config = config
        self.model = model
        s = config.sparsity
        self.structured = s.granularity == "filter"
        if self.structured:  # filter slots of a compacted model (full_filters: full layer sizes)
            producers = [group.producer for group in channel_masks(model.network)]
            self.updater = ChannelUpdater(model.network, optimizer,
                                          schedule.layer_targets(config, producers),
                                          full_filters, s, config.seed)
            return
        targets = schedule.layer_targets(config, [layer.name for layer in model.sparse])
        self.updater = MaskUpdater(model.sparse, targets, optimizer, config.seed,
                                   importance_lambda=s.importance_lambda, grow=s.grow)

    @property
    def schedule(self):
        return self.config.sparsity.schedule

    def initialize(self):
        """Initial masks of a fresh run: magnitude pruning of the initial weights to the targets."""
        if self.schedule != "none":
            self.updater.initialize()
            self.model.masks_changed()

    def task_events(self):
        return schedule.task_events(self.config.sparsity, self.config.ddr,
                                    self.config.epochs_per_task)

    def update_masks(self, event, task_index, num_tasks):
        if self.structured:
            gradients = {layer.name: v.numpy() for layer, v in
                         zip(self.model.sparse, self.model.last_gradients)}
            rng = np.random.default_rng([self.config.seed, 37, task_index, event.update_index])
            self.updater.update(event.update_index, gradients, rng)
            return
        rule, targets_of = schedule.update_targets(self.config, event, task_index, num_tasks)
        gradients = [v.numpy() for v in self.model.last_gradients]
        rng = np.random.default_rng([self.config.seed, 37, task_index, event.update_index])
        self.updater.update(targets_of, gradients, rng, rule=rule)
        self.model.masks_changed()

    def removal_target(self, stage, num_examples):
        """Examples of the task removed in total once `stage` (1-based) is done."""
        return schedule.removal_target(self.config.ddr, stage, num_examples)
