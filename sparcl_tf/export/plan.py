"""The session plan a device app follows, as data: when to update masks (with the exact counts),
when to remove data, how often to refresh gradient masks, how to normalise images.

Written into signatures.json by tools.convert so an app needs no Python: the same schedule
functions the trainer and the LiteRT session use, evaluated for this config's layer sizes.
RigL counts depend on the position in the whole run; its events carry `run_progress` per task.
"""

from sparcl_tf.sparsity import schedule
from sparcl_tf.sparsity.masks import active_count


def session_plan(config, layer_names, layer_sizes, num_tasks, mean, std):
    targets = schedule.layer_targets(config, layer_names)
    events = []
    for task_index in range(num_tasks if config.sparsity.schedule == "rigl" else 1):
        for event in schedule.task_events(config.sparsity, config.ddr, config.epochs_per_task):
            entry = {"progress": event.progress, "update_index": event.update_index,
                     "removal_stage": event.removal_stage}
            if config.sparsity.schedule == "rigl":
                entry["task"] = task_index
            if event.mask_update:
                _, targets_of = schedule.update_targets(config, event, task_index, num_tasks)
                counts = [(active_count(size, prune), active_count(size, grow)) for size, (
                    prune, grow) in zip(layer_sizes, (targets_of(targets[n]) for n in layer_names))]
                entry["prune_to"] = [prune for prune, _ in counts]
                entry["grow_to"] = [grow for _, grow in counts]
            events.append(entry)
    return {
        "epochs_per_task": config.epochs_per_task,
        "replay_from_task": config.replay.from_task,
        "buffer_size": config.replay.buffer_size,
        "dgm_refresh_every": config.dgm.refresh_every if config.dgm.enabled else 0,
        "mask_updates": events,
        "data_removal": {"total_fraction": config.ddr.total_fraction,
                         "stages": config.ddr.stages} if config.ddr.enabled else None,
        "normalization": {"mean": [float(m) for m in mean], "std": [float(s) for s in std],
                          "formula": "(pixel / 255 - mean) / std, per channel"},
    }
