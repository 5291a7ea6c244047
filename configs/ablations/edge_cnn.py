"""Ablation variants on the edge-CNN setting: Split Fashion-MNIST, 1,000 / 500 images a task,
2 epochs (run as configs/ablations/own_model.py says)."""

from configs import split_fmnist
from configs.ablations.variants import VARIANTS, variant_config

PRESETS = VARIANTS


def _setting(preset):
    config = split_fmnist.get_config(preset)
    config.data.train_per_task, config.data.test_per_task = 1000, 500
    return config


def get_config(preset="derpp"):
    return variant_config(_setting, preset)
