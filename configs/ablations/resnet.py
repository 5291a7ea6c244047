"""Ablation variants on the ResNet setting: Split Fashion-MNIST, CIFAR ResNet-18 at width 0.5,
1,000 / 500 images a task, 5 epochs, random crop and flip, lr 0.03 (run as
configs/ablations/own_model.py says; about 3 minutes a run on two cores)."""

from configs import split_fmnist
from configs.ablations.variants import VARIANTS, variant_config

PRESETS = VARIANTS


def _setting(preset):
    config = split_fmnist.get_config(preset)
    config.model.name, config.model.width = "resnet18", 0.5
    config.data.train_per_task, config.data.test_per_task = 1000, 500
    config.epochs_per_task, config.data.augment = 5, "crop_flip"
    config.optimizer.learning_rate = 0.03
    return config


def get_config(preset="derpp"):
    return variant_config(_setting, preset)
