"""Ablation variants on the MLP setting: Split Fashion-MNIST, all data, 1 epoch a task, the
2x100 MLP, plain CE (run as configs/ablations/own_model.py says)."""

from configs import split_fmnist
from configs.ablations.variants import VARIANTS, variant_config

PRESETS = VARIANTS


def _setting(preset):
    config = split_fmnist.get_config(preset)
    config.model.name, config.epochs_per_task = "mlp", 1
    config.method.cl_mask, config.optimizer.learning_rate = False, 0.03
    return config


def get_config(preset="derpp"):
    return variant_config(_setting, preset)
