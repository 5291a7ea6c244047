r"""Trains a continual-learning experiment described by a config file and preset.

  python -m tools.train --config=configs/split_fmnist.py:derpp --workdir=runs/derpp \
      [--config.epochs_per_task=1 --config.data.train_per_task=1000 ...]

Writes WORKDIR/results.json, config.json, accuracy_matrix.png, task_accuracy.png, TensorBoard
events under WORKDIR/tensorboard and checkpoints under WORKDIR/checkpoints; running again with the
same workdir resumes. A bad config, data file or checkpoint prints one line and exits 2.
`--config.distribute.strategy=mirrored|multi_worker` trains data-parallel on tf.distribute, equal to
one device (docs/scale-out.md); of several workers only the chief writes.
"""


from absl import flags

from sparcl_tf.cli import app as cli

_CONFIG = cli.define_config_flag(required=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run folder (results, checkpoints, logs).",
                               required=True)
_QUIET = flags.DEFINE_bool("quiet", False, "No progress bar or per-task lines.")


def main(argv):
    del argv
    from sparcl_tf.experiment import run_experiment
    results = cli.run_or_exit(lambda: run_experiment(
        _CONFIG.value, _WORKDIR.value, verbose=0 if _QUIET.value else 1))
    cli.print_results(results, _WORKDIR.value)
    return 0


run = cli.entry_point(main, __doc__)


if __name__ == "__main__":
    run()
