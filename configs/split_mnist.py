"""Split MNIST (5 tasks x 2 classes) with the benchmark's two-hidden-layer MLP (100 units each).

MNIST is not packaged by Debian: pass the folder holding its four IDX files (plain or .gz) with
`--config.data.dir=DIR`. Domain-incremental variants: `--config.data.scenario=permuted` or
`rotated` (with `--config.data.num_tasks`, default 5, and `--config.data.rotation_step`).
"""

from sparcl_tf.config import ALL_PRESETS, apply_preset, base_config

PRESETS = dict(ALL_PRESETS)


def get_config(preset="derpp"):
    config = base_config()
    config.data.source = "mnist"
    config.data.classes_per_task = 2
    config.model.name = "mlp"
    config.epochs_per_task = 1
    config.optimizer.learning_rate = 0.1
    config.replay.buffer_size = 200
    return apply_preset(config, PRESETS, preset)
