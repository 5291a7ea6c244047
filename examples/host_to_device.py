r"""A run begun on the host and continued on the device, against the same run all on the host.

  python examples/host_to_device.py [--host_tasks=2] [--seed=0] [--train_per_task=1000]
      [--workdir=runs/host_to_device]

Your own Keras model learns the first --host_tasks tasks of Split Fashion-MNIST with a
`ContinualLearner` (SparCL-DER++ 0.90), is exported with its whole state
(`learner.export(W, with_state=True)`: weights, masks, replay buffer, example statistics, tasks
seen), and a `DeviceLearner` on that .tflite (LiteRT, as a phone runs it) learns the rest. The
same learner going on in Keras is the reference. Prints one JSON line with both runs' accuracy,
steps and removals.
"""

import json
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from absl import app, flags, logging  # noqa: E402

flags.DEFINE_integer("host_tasks", 2, "Tasks learned on the host before the hand-over.")
flags.DEFINE_integer("seed", 0, "Seed of the model, the learner and the data order.")
flags.DEFINE_integer("train_per_task", 1000, "Training examples per task (0 = all).")
flags.DEFINE_integer("test_per_task", 500, "Test examples per task (0 = all).")
flags.DEFINE_integer("epochs", 2, "Epochs per task.")
flags.DEFINE_string("data_dir", "", "Fashion-MNIST IDX folder (default: Debian's).")
flags.DEFINE_string("workdir", None, "Where the export and the device state go (default: a "
                    "temporary folder).")
FLAGS = flags.FLAGS


def build_model(seed):
    import keras
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((28, 28, 1))
    x = keras.layers.Conv2D(32, 3, strides=2, padding="same", activation="relu")(inputs)
    x = keras.layers.Conv2D(64, 3, strides=2, padding="same", activation="relu")(x)
    x = keras.layers.Dense(128, activation="relu")(keras.layers.Flatten()(x))
    return keras.Model(inputs, keras.layers.Dense(10)(x))


def make_learner(tasks, seed):
    from sparcl_tf.keras import DERPP, ContinualLearner, SparCL
    return ContinualLearner(build_model(seed), method=DERPP(), buffer_size=500,
                            sparcl=SparCL(weight_sparsity=0.9, gradient_sparsity=0.92),
                            epochs_per_task=FLAGS.epochs, learning_rate=0.05,
                            normalization=(tasks.mean, tasks.std), seed=seed, verbose=0)


def summary(results):
    return {key: results[key] for key in ("class_il", "task_il", "steps", "examples_removed",
                                          "training_examples")}


def main(argv):
    del argv
    logging.set_verbosity(logging.ERROR)
    from sparcl_tf.keras import split_dataset
    from sparcl_tf.ondevice import DeviceLearner
    tasks = split_dataset("fashion_mnist", train_per_task=FLAGS.train_per_task,
                          test_per_task=FLAGS.test_per_task, seed=FLAGS.seed,
                          data_dir=FLAGS.data_dir)
    handed_over, on_host = make_learner(tasks, FLAGS.seed), make_learner(tasks, FLAGS.seed)
    for learner in (handed_over, on_host):
        for task in tasks.tasks[:FLAGS.host_tasks]:
            learner.fit_task(task.x_train, task.y_train, test_data=(task.x_test, task.y_test))
    workdir = FLAGS.workdir or tempfile.mkdtemp(prefix="host_to_device_")
    model, _ = handed_over.export(os.path.join(workdir, "export"), with_state=True)
    with DeviceLearner(model, os.path.join(workdir, "export", "state")) as device:
        for task in tasks.tasks[FLAGS.host_tasks:]:
            device_results = device.fit_task(task.x_train, task.y_train,
                                             test_data=(task.x_test, task.y_test))
    for task in tasks.tasks[FLAGS.host_tasks:]:
        host_results = on_host.fit_task(task.x_train, task.y_train,
                                        test_data=(task.x_test, task.y_test))
    print(json.dumps({"seed": FLAGS.seed, "host_tasks": FLAGS.host_tasks,
                      "host_then_device": summary(device_results),
                      "host_only": summary(host_results)}))


if __name__ == "__main__":
    app.run(main)
