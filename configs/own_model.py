"""The README's own-model example as a config: `small_cnn` (the example's model, masked as
`ContinualLearner` masks it) on Split Fashion-MNIST with the learner's defaults (SGD lr 0.03,
batch 32, buffer 500, one epoch a task), small tasks: 300 training / 500 test images a task.

Usage: python -m tools.train --config=configs/own_model.py:sparcl_derpp_90 --workdir=W
  (--config.data.train_per_task=1000 for the 1,000-example setting); the presets are
  configs/split_fmnist.py's.
"""

from configs import split_fmnist


def get_config(preset="derpp"):
    config = split_fmnist.get_config(preset)
    config.model.name = "small_cnn"
    config.epochs_per_task = 1
    config.optimizer.learning_rate = 0.03
    config.data.train_per_task = 300
    config.data.test_per_task = 500
    return config
