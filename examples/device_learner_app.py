r"""An app that learns on the device, in Python: the twin of tflite/android's app example
(jvm/src/dev/sparcl/ondevice/jvm/AppExample.kt), with the same flags, lines and results.

  python examples/device_learner_app.py --model=W/model.tflite --data=TASKS --state_dir=S
      [--trace=FILE] [--cancel_after_step=N]

The tasks of TASKS arrive one at a time, as a user's photos would: a folder of task_1, task_2, ...
each with train/<class>/*.png and optionally test/<class>/*.png (`python -m tools.task_images`
makes one from a task-data file), or a task-data file itself (train_images_<t>, train_labels_<t>,
optional classes_<t>, test_images_<t>, test_labels_<t>);
before each new task the app shows what the model predicts for its first test image, then the
learner learns it. --cancel_after_step=N stops the running task after global step N (its state
is saved; exit 3), as a phone stops a background worker; running again goes on where it stopped.
Writes S/results.json. Make a model with `python -m tools.convert --state=initial ...` or
`ContinualLearner(...).export(W)`.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from absl import app, flags  # noqa: E402

flags.DEFINE_string("model", None, "Training .tflite (signatures.json beside it).", required=True)
flags.DEFINE_string("data", None, "Task-image folder or task-data .npz: the tasks that will "
                    "arrive.", required=True)
flags.DEFINE_string("state_dir", None, "The learner's state folder.", required=True)
flags.DEFINE_string("trace", None, "Append the session's records (JSON lines) to this file.")
flags.DEFINE_integer("cancel_after_step", None, "Cancel the running task after this global step.")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    import json

    import numpy as np

    from sparcl_tf.ondevice import (DeviceLearner, SparclError, TaskCancelled, TraceFile,
                                    read_plan, read_task_data)

    try:
        arriving = read_task_data(FLAGS.data, read_plan(FLAGS.model)).tasks  # the app's store
        trace = TraceFile(FLAGS.trace) if FLAGS.trace else None
        last_step = [-1]

        def record(entry):
            if trace is not None:
                trace(entry)
            if entry["kind"] == "step":
                last_step[0] = entry["step"]

        stop_after = FLAGS.cancel_after_step
        with DeviceLearner(FLAGS.model, FLAGS.state_dir, trace=record) as learner:
            for task in arriving[learner.progress.task:]:
                test = (task.x_test, task.y_test) if len(task.y_test) else None
                guess = int(np.argmax(learner.predict(task.x_test[:1])[0])) if test else "-"
                print(f"task {task.index + 1} arrives ({len(task.y_train)} examples); the model "
                      f"now says class {guess} for its first test image")
                results = learner.fit_task(
                    task.x_train, task.y_train, classes=task.classes, test_data=test,
                    cancelled=lambda: stop_after is not None and last_step[0] >= stop_after)
                print(f"task {task.index + 1} learned: class-IL {results['class_il']}")
            path = os.path.join(FLAGS.state_dir, "results.json")
            with open(path + ".tmp", "w") as handle:
                json.dump(learner.results(), handle, indent=2)
            os.replace(path + ".tmp", path)
            print(f"results: {path}")
    except TaskCancelled as cancelled:
        print(f"cancelled: {cancelled}")
        return 3
    except (SparclError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    app.run(main)
