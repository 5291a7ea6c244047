"""Split Fashion-MNIST at the SparCL paper's CIFAR-10 settings: the accelerator-scale run.

CIFAR ResNet-18 (width 1), images zero-padded to 32x32 as CIFAR's, random crop (padding 4) +
horizontal flip, SGD lr 0.03 without momentum, batch 32, 50 epochs per task, all 12,000 / 2,000
images per task, buffer 500, DER++ alpha 0.1 / beta 0.5. Offline like split_fmnist.py (Debian's
dataset-fashion-mnist); days on two CPU cores, meant for a GPU:

  python -m tools.benchmark --config_file=configs/split_fmnist_paper.py --mode=config \
      --seeds=0,1,2 --presets=derpp,paper_sparcl_derpp,paper_sparcl_derpp_90,\
paper_sparcl_derpp_s90,sparcl_derpp_90 --step_repeats=0 --litert_presets= \
      --workdir=runs/paper_fmnist
"""

from configs import split_cifar10

PRESETS = split_cifar10.PRESETS


def get_config(preset="derpp"):
    config = split_cifar10.get_config(preset)  # the paper's training settings
    config.data.source = "fashion_mnist"
    config.data.pad_to = 32
    return config
