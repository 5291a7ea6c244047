"""Ablation variants on the own-model setting (configs/own_model.py: 300 a task, 1 epoch; add
--override=data.train_per_task=1000 for the 1,000-example setting):

  python -m tools.benchmark --mode=config --config_file=configs/ablations/own_model.py \\
      --presets=derpp,sparcl_derpp_90,static90_layer --seeds=0,1,2,3,4 --step_repeats=0 \\
      --litert_presets= --workdir=W
"""

from configs import own_model
from configs.ablations.variants import VARIANTS, variant_config

PRESETS = VARIANTS


def get_config(preset="derpp"):
    return variant_config(own_model.get_config, preset)
