r"""Continual learning on a microcontroller budget, run in the TFLite Micro runtime.

  python -m tools.micro --config=configs/split_fmnist.py:micro --workdir=W [--config.KEY=VALUE]

Trains the edge-CNN backbone on the first micro.pretrain_tasks tasks (host), freezes it as an int8
model, extracts every image's features in TFLM, then learns the whole task stream with SparCL on a
small sparse head through TFLM (train and infer models, one per entry point) with a latent replay
buffer; the same head trained by finetuning is run as the baseline. Writes W/results.json
(class-IL / task-IL, minimum TFLM arena bytes, model bytes, buffer bytes, ms per step, the LiteRT
loss comparison, the finetune baseline), accuracy plots, W/backbone_int8.tflite,
W/head_train.tflite and W/head_infer.tflite. Bad input prints one line and exits 2.
"""

import os

from absl import flags

from sparcl_tf.cli import app as cli

_CONFIG = cli.define_config_flag(required=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Output folder.", required=True)
_QUIET = flags.DEFINE_bool("quiet", False, "No per-task lines.")


def main(argv):
    del argv
    from sparcl_tf.micro.session import run_micro
    r = cli.run_or_exit(lambda: run_micro(_CONFIG.value, _WORKDIR.value,
                                          verbose=0 if _QUIET.value else 1))
    print(f"| head | class-IL | task-IL |\n|---|---:|---:|\n"
          f"| {r['preset'] or r['method']} | {r['class_il']:.2f} | {r['task_il']:.2f} |\n"
          f"| finetune | {r['finetune_class_il']:.2f} | {r['finetune_task_il']:.2f} |")
    print(f"TFLM arenas (backbone + head) {r['arena_bytes']:,} B + buffer "
          f"{r['buffer_bytes']:,} B = "
          f"{r['arena_plus_buffer_bytes']:,} B (budget {r['memory_budget_bytes']:,}); models "
          f"{r['model_bytes']:,} B; {r['ms_per_step']:.2f} ms per head step, "
          f"{r['backbone_ms_per_image']:.2f} ms per image (backbone); TFLM vs LiteRT loss "
          f"within {r['litert_max_relative_loss_difference']:.1e} (relative) over "
          f"{r['litert_compared_steps']} steps")
    print(f"results: {os.path.join(_WORKDIR.value, 'results.json')}")
    return 0


run = cli.entry_point(main, __doc__)


if __name__ == "__main__":
    run()
