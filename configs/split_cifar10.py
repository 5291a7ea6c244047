"""Split CIFAR-10 with the SparCL paper's settings (5 tasks x 2 classes).

CIFAR ResNet-18, SGD lr 0.03 without momentum, batch 32, 50 epochs per task, buffer 500, DER++
alpha 0.1 / beta 0.5, random crop (padding 4) + horizontal flip. Data through TFDS ('cifar10'):
prepare it once where there is network (`tfds build cifar10 --data_dir=DIR`) and pass
`--config.data.dir=DIR`. On two CPU cores this is a multi-day run; it is meant for a GPU.
"""

from sparcl_tf.config import ALL_PRESETS, apply_preset, base_config

PRESETS = dict(ALL_PRESETS)


def get_config(preset="derpp"):
    config = base_config()
    config.data.source = "cifar10"
    config.data.classes_per_task = 2
    config.data.augment = "crop_flip"
    config.data.crop_padding = 4
    config.model.name = "resnet18"
    config.epochs_per_task = 50
    config.optimizer.learning_rate = 0.03
    config.replay.buffer_size = 500
    return apply_preset(config, PRESETS, preset)
