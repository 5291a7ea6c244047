r"""Turns a task-data file into a folder of image files, as an app's photos arrive.

  python -m tools.task_images --data=D.npz --out=TASKS

writes TASKS/task_1/train/<class>/000000.png ... (and test/ where the file has test sets): 8-bit
PNGs, grey or RGB as the images' channels, named by position so the folder keeps the file's
order. Every host reads such a folder as its --data (tools.ondevice, tflite/android's session.sh
and app_example.sh, examples/device_learner_app.py); the layout is in
sparcl_tf/ondevice/task_data.py. Only uint8 pixels are written (PNG holds nothing else exactly).
"""

from absl import flags

from sparcl_tf.cli import app as cli

_DATA = flags.DEFINE_string("data", None, "Task-data .npz to write as images.", required=True)
_OUT = flags.DEFINE_string("out", None, "The folder to write (new, or empty).",
                           required=True)


def main(argv):
    del argv
    from sparcl_tf.ondevice.task_data import write_task_images
    cli.run_or_exit(lambda: write_task_images(_DATA.value, _OUT.value))
    print(f"tasks: {_OUT.value}")
    return 0


run = cli.entry_point(main, __doc__)


if __name__ == "__main__":
    run()
