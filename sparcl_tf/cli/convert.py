r"""Converts a run's network into a builtins-only .tflite with on-device training signatures.

  python -m tools.convert --workdir=W [--config=configs/split_fmnist.py:sparcl_derpp_90]
      [--state=checkpoint|initial] [--flex] [--with_state] [--task_data] [--output_dir=DIR]

Takes W/config.json and W's latest checkpoint (or, for a workdir without a run, a fresh model
from --config) and writes W/model.tflite, W/signatures.json (every signature's inputs and outputs:
name, shape, dtype, meaning; the sparse layers in update_masks' order) and W/op_audit.json (ops
per signature, Flex ops listed). --state=initial embeds the run's starting state instead (seeded
weights and initial masks: the state the Keras trainer starts from), for an on-device session
that repeats the run. --flex adds save/restore signatures that need the Select-TF runtime.
--with_state also writes W/state, the run's whole state (replay buffer, example statistics, tasks
seen, accuracy so far) as the folder a `sparcl_tf.ondevice.DeviceLearner` continues from, so a
device goes on where the host stopped. --task_data also writes task_data.npz (the run's task
stream, for the Kotlin session on a desktop JVM). A graph that would need a Flex op without
--flex fails with one line naming the op. A run
trained under `distribute.strategy` is read on one device. The
run is read, never written (no config.json, events or folders appear in W when --output_dir
points elsewhere); a run with a config but no checkpoint is refused unless --state=initial.
"""

import json
import os

from absl import flags

from sparcl_tf.cli import app as cli

_WORKDIR = flags.DEFINE_string("workdir", None, "Run folder; receives the .tflite.", required=True)
_CONFIG = cli.define_config_flag()
_STATE = flags.DEFINE_enum("state", "checkpoint", ["checkpoint", "initial"],
                           "State embedded in the model: the run's latest checkpoint or its start.")
_OUTPUT_DIR = flags.DEFINE_string("output_dir", None,
                                  "Where the model and its descriptions go (default: --workdir).")
_FLEX = flags.DEFINE_bool("flex", False, "Add save/restore signatures (Select-TF ops).")
_WITH_STATE = flags.DEFINE_bool("with_state", False, "Also write OUTPUT_DIR/state: the run's "
                                 "whole state (replay buffer, example statistics, tasks seen), "
                                 "the folder a DeviceLearner continues from.")
_TASK_DATA = flags.DEFINE_bool("task_data", False, "Also write task_data.npz: the run's task "
                               "stream, for a host without the data set (the JVM session).")


def _config_for(workdir):
    """The run's config from W/config.json, else --config for a fresh model (its initial state)."""
    import ml_collections
    path = os.path.join(workdir, "config.json")
    if os.path.exists(path):
        try:
            with open(path) as handle:
                saved = json.load(handle)
        except (OSError, ValueError) as error:
            cli.fail(f"{path} is unreadable ({cli.one_line(error)}); restore it or pass "
                     f"--config=FILE:PRESET with a fresh --workdir")
        if not isinstance(saved, dict):
            cli.fail(f"{path} is not a config")
        if flags.FLAGS["config"].present:
            from sparcl_tf.config import differing_fields
            differing = differing_fields(json.loads(_CONFIG.value.to_json()), saved)
            if differing:  # which one the user meant cannot be guessed
                cli.fail(f"--config is another config than the run in {workdir} (fields "
                         f"{differing}): leave --config out to convert the run")
        return ml_collections.ConfigDict(saved), True
    if flags.FLAGS["config"].present:
        return _CONFIG.value, False
    cli.fail(f"{workdir} holds no run (no config.json): pass --config=FILE:PRESET for a fresh "
             f"model")


def _run(config, workdir, has_run):
    """The run whose state the model embeds, read without writing anything, on one device (a
    run trained under a tf.distribute strategy restores there the same)."""
    from sparcl_tf.config import base_config
    from sparcl_tf.experiment import Experiment
    config.distribute = base_config().distribute  # also for a config.json written before it
    if _STATE.value == "initial" or not has_run:
        return Experiment(config, None, verbose=0)  # the seeded start, no files
    return Experiment(config, workdir, verbose=0, read_only=True)


def main(argv):
    del argv
    workdir = _WORKDIR.value
    output_dir = _OUTPUT_DIR.value or workdir
    from sparcl_tf.paths import check_folder
    if os.path.isfile(workdir):
        cli.fail(f"--workdir {workdir} cannot be used: it is a file, not a folder")
    cli.run_or_exit(lambda: check_folder(output_dir, "--output_dir" if _OUTPUT_DIR.value
                                         else "--workdir"))  # before the long part
    config, has_run = _config_for(workdir)
    from sparcl_tf.checkpoint import CheckpointManager
    if has_run and _STATE.value == "checkpoint" and CheckpointManager(
            os.path.join(workdir, "checkpoints"), {}).latest() is None:
        cli.fail(f"{workdir} has a config but no checkpoint: train it first (tools.train "
                 f"--workdir={workdir}), or pass --state=initial for its untrained start")
    run = cli.run_or_exit(lambda: _run(config, workdir, has_run))
    if not has_run:
        print(f"{workdir} holds no run: the model embeds a fresh --config model's initial state")
    try:
        path, audit = cli.run_or_exit(lambda: run.learner.export(
            output_dir, flex=_FLEX.value, with_state=_WITH_STATE.value))
        if _TASK_DATA.value:
            from sparcl_tf.ondevice.task_data import write_task_data
            data_path = write_task_data(os.path.join(output_dir, "task_data.npz"), run.tasks,
                                        run.engine.method)
    except OSError as error:
        cli.fail(f"cannot write to {output_dir}: {error.strerror or error}")
    print(f"{path}: {os.path.getsize(path):,} bytes")
    if _TASK_DATA.value:
        print(data_path)
    for key, entry in audit.items():
        print(f"  {key}: {sum(entry['ops'].values())} ops, Flex ops: {entry['flex_ops'] or 'none'}")
    return 0


run = cli.entry_point(main, __doc__)


if __name__ == "__main__":
    run()
