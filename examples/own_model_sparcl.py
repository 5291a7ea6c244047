r"""Your own Keras model with SparCL (TDM + DGM + DDR on DER++) on Split Fashion-MNIST.

  python examples/own_model_sparcl.py [--train_per_task=1000 --test_per_task=500]
      [--dense] [--workdir=runs/own_model]

Five tasks of two classes, read offline from Debian's dataset-fashion-mnist. With --workdir the
run writes results.json, plots and TensorBoard there and resumes when run again. About a minute
on two cores at the default sizes.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from absl import app, flags, logging  # noqa: E402

flags.DEFINE_integer("train_per_task", 1000, "Training examples per task (0 = all).")
flags.DEFINE_integer("test_per_task", 500, "Test examples per task (0 = all).")
flags.DEFINE_integer("epochs", 2, "Epochs per task (data removal needs at least 2).")
flags.DEFINE_bool("dense", False, "Dense DER++ instead of SparCL-DER++ 0.90.")
flags.DEFINE_string("data_dir", "", "Fashion-MNIST IDX folder (default: Debian's).")
flags.DEFINE_string("workdir", None, "Run folder (results, plots, checkpoints); none: in memory.")
FLAGS = flags.FLAGS


def build_model():
    """Any Keras model giving logits; nothing in it knows about SparCL."""
    import keras
    inputs = keras.Input((28, 28, 1))
    x = keras.layers.Conv2D(32, 3, strides=2, padding="same", activation="relu")(inputs)
    x = keras.layers.Conv2D(64, 3, strides=2, padding="same", activation="relu")(x)
    x = keras.layers.Dense(128, activation="relu")(keras.layers.Flatten()(x))
    return keras.Model(inputs, keras.layers.Dense(10)(x))


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)  # no converter chatter
    import keras

    from sparcl_tf.keras import DERPP, ContinualLearner, SparCL, split_dataset

    keras.utils.set_random_seed(0)
    tasks = split_dataset("fashion_mnist", FLAGS.data_dir, train_per_task=FLAGS.train_per_task,
                          test_per_task=FLAGS.test_per_task)
    sparcl = None if FLAGS.dense else SparCL(weight_sparsity=0.9, gradient_sparsity=0.92,
                                             removal=0.3)
    learner = ContinualLearner(build_model(), method=DERPP(alpha=0.1, beta=0.5), buffer_size=500,
                               sparcl=sparcl, epochs_per_task=FLAGS.epochs, learning_rate=0.05,
                               normalization=(tasks.mean, tasks.std), workdir=FLAGS.workdir)
    for task in tasks.tasks:
        results = learner.fit_task(task.x_train, task.y_train,
                                   test_data=(task.x_test, task.y_test))
    print(f"class-IL {results['class_il']:.2f}  task-IL {results['task_il']:.2f}  training FLOPs "
          f"{results['training_flops'] / results['dense_training_flops']:.3f} of dense  "
          f"removed {results['examples_removed']} examples")


if __name__ == "__main__":
    app.run(main)
