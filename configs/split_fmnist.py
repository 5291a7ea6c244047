"""Split Fashion-MNIST: 5 tasks x 2 classes, read offline from Debian's dataset-fashion-mnist.

Sized for two CPU cores: the edge CNN (0.47 M parameters), 2 epochs per task (data removal needs
a second epoch to save anything: it drops examples already seen), SGD lr 0.05, batch 32, buffer
500. A full run (60k training images) takes 2-3 minutes; add `--config.data.train_per_task=1000
--config.data.test_per_task=500` for a half-minute check.

Usage: python -m tools.train --config=configs/split_fmnist.py:derpp --workdir=runs/fmnist_derpp
The `micro` preset is for the microcontroller path: python -m tools.micro --config=...:micro.
"""

from sparcl_tf.config import ALL_PRESETS, MICRO_PRESETS, apply_preset, base_config

PRESETS = {**ALL_PRESETS, **MICRO_PRESETS}


def get_config(preset="derpp"):
    config = base_config()
    config.data.source = "fashion_mnist"
    config.data.classes_per_task = 2
    config.data.augment = "none"
    config.model.name = "edge_cnn"
    config.epochs_per_task = 2
    config.optimizer.learning_rate = 0.05
    return apply_preset(config, PRESETS, preset)
