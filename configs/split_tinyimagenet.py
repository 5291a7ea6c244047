"""Split Tiny-ImageNet (10 tasks x 20 classes) with the SparCL paper's settings.

Needs the standard `tiny-imagenet-200` folder: `--config.data.dir=/path/to/tiny-imagenet-200`
(its labelled val split is the test set). CIFAR ResNet-18 at 64x64, SGD lr 0.03, batch 32,
50 epochs per task, buffer 500, random crop (padding 4, as in mammoth) + horizontal flip.
"""

from sparcl_tf.config import ALL_PRESETS, apply_preset, base_config

PRESETS = dict(ALL_PRESETS)


def get_config(preset="derpp"):
    config = base_config()
    config.data.source = "tiny_imagenet"
    config.data.classes_per_task = 20
    config.data.augment = "crop_flip"
    config.data.crop_padding = 4
    config.model.name = "resnet18"
    config.epochs_per_task = 50
    config.optimizer.learning_rate = 0.03
    config.replay.buffer_size = 500
    return apply_preset(config, PRESETS, preset)
