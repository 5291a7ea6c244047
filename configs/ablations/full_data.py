"""Ablation variants on the full-data setting: Split Fashion-MNIST, all 12,000 / 2,000 images a
task, 2 epochs (the README's full table; run as configs/ablations/own_model.py says)."""

from configs import split_fmnist
from configs.ablations.variants import VARIANTS, variant_config

PRESETS = VARIANTS


def get_config(preset="derpp"):
    return variant_config(split_fmnist.get_config, preset)
