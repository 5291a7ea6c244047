r"""Runs a continual-learning session through a converted training .tflite (LiteRT), as a device.

  python -m tools.ondevice --model=W0/model.tflite --data=D.npz --workdir=W2
  python -m tools.ondevice --model=W0/model.tflite --workdir=W2
  python -m tools.ondevice --model=W0/model.tflite --workdir=W2 \
      --config=configs/split_fmnist.py:sparcl_derpp_90 [--config.epochs_per_task=1 ...]

The session follows the session plan in signatures.json beside the model (written by
tools.convert or ContinualLearner.export), as an app does: each task's events are computed when
the task begins, from its size. --data trains the tasks of a task-data file the model has never
seen, of any size of at least one batch (train_images_<t>, train_labels_<t>, optional
train_ids_<t>, classes_<t>, test_images_<t>, test_labels_<t>; sparcl_tf/ondevice/task_data.py),
or of a folder of PNGs (task_1/train/<class>/*.png ...; `python -m tools.task_images`).
Without --data, --config (or the run config recorded in the plan) supplies the reference
experiment's task stream; a --config whose plan differs from the model's (another schedule,
seed, batch or method) is refused. Every weight update runs in the interpreter; the host keeps
the replay buffer, data removal and the event schedule. Writes W2/results.json (the trainer's
keys, plus runtime and model_file), plots, TensorBoard scalars, the model state after each task
(W2/device_state/) and host checkpoints; running again resumes where the last run stopped.
--trace=FILE appends the session's trace (the records the Kotlin session's --trace writes). A bad
model, state file or config prints one line and exits 2.
"""

from absl import flags

from sparcl_tf.cli import app as cli

_MODEL = flags.DEFINE_string("model", None, "Training .tflite from tools.convert.", required=True)
_CONFIG = cli.define_config_flag()
_WORKDIR = flags.DEFINE_string("workdir", None, "Session folder (results, state).",
                               required=True)
_DATA = flags.DEFINE_string("data", None, "Task-data .npz or task-image folder whose tasks to "
                            "learn (instead of the data set of --config or of the model's run "
                            "config).")
_QUIET = flags.DEFINE_bool("quiet", False, "No progress bar or per-task lines.")
_THREADS = flags.DEFINE_integer("threads", None, "LiteRT interpreter threads (1 to 64; default "
                                "sparcl_tf.ondevice.device_model.DEFAULT_THREADS).")
_TRACE = flags.DEFINE_string("trace", None, "Also write the session's trace (JSON lines: steps, "
                             "mask updates, removals, task ends) to this file.")


def main(argv):
    del argv
    from sparcl_tf.ondevice import OnDeviceSession
    from sparcl_tf.session.trace import TraceFile
    from sparcl_tf.ondevice.device_model import DEFAULT_THREADS
    threads = DEFAULT_THREADS if _THREADS.value is None else _THREADS.value
    if not 1 <= threads <= 64:
        cli.fail(f"--threads must be 1 to 64, got {threads}")
    trace = TraceFile(_TRACE.value) if _TRACE.value else None
    results = cli.run_or_exit(lambda: OnDeviceSession(
        _MODEL.value, _CONFIG.value, _WORKDIR.value, verbose=0 if _QUIET.value else 1,
        trace=trace, threads=threads, data=_DATA.value).run())
    cli.print_results(results, _WORKDIR.value)
    return 0


run = cli.entry_point(main, __doc__)


if __name__ == "__main__":
    run()
