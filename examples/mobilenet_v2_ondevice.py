r"""MobileNetV2 from keras.applications, trained with SparCL and exported for on-device training.

  python examples/mobilenet_v2_ondevice.py [--train_per_task=300 --test_per_task=200]
      [--dense] [--export_dir=runs/mobilenet_v2_tflite] [--seed=0]

`keras.applications.MobileNetV2(weights=None, alpha=0.35)` on Split Fashion-MNIST padded to
32x32, SparCL-DER++ 0.90 (or dense DER++), five tasks. With --export_dir the trained network
becomes a builtins-only training .tflite (model.tflite, signatures.json, op_audit.json) that
`python -m tools.ondevice` or the Android session can keep training. About two minutes on two
cores at the default sizes with the export (the conversion of the 53-layer training graph takes
most of it).
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from absl import app, flags, logging  # noqa: E402

flags.DEFINE_integer("train_per_task", 300, "Training examples per task (0 = all).")
flags.DEFINE_integer("test_per_task", 200, "Test examples per task (0 = all).")
flags.DEFINE_integer("tasks", 5, "Tasks of the five to train.")
flags.DEFINE_integer("epochs", 2, "Epochs per task.")
flags.DEFINE_integer("seed", 0, "Seed of weights, data order, replay and masks.")
flags.DEFINE_bool("dense", False, "Dense DER++ instead of SparCL-DER++ 0.90.")
flags.DEFINE_string("data_dir", "", "Fashion-MNIST IDX folder (default: Debian's).")
flags.DEFINE_string("export_dir", None, "Where the training .tflite goes (none: no export).")
flags.DEFINE_string("results", None, "Also write the results as JSON to this file.")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)  # no converter chatter
    import keras
    import numpy as np

    from sparcl_tf.keras import DERPP, ContinualLearner, SparCL, split_dataset

    keras.utils.set_random_seed(FLAGS.seed)
    tasks = split_dataset("fashion_mnist", FLAGS.data_dir, train_per_task=FLAGS.train_per_task,
                          test_per_task=FLAGS.test_per_task, seed=FLAGS.seed)
    model = keras.applications.MobileNetV2(weights=None, alpha=0.35, input_shape=(32, 32, 1),
                                           classes=10, classifier_activation=None)
    for layer in model.layers:  # ImageNet's 0.999 leaves the moving statistics of a task of a
        if isinstance(layer, keras.layers.BatchNormalization):  # few dozen steps at their
            layer.momentum = 0.9                                # start: evaluation at chance
    learner = ContinualLearner(
        model, method=DERPP(alpha=0.1, beta=0.5), buffer_size=500, epochs_per_task=FLAGS.epochs,
        sparcl=None if FLAGS.dense else SparCL(weight_sparsity=0.9, gradient_sparsity=0.92),
        learning_rate=0.05, normalization=(tasks.mean, tasks.std), seed=FLAGS.seed)

    def pad(images):  # 28x28 -> 32x32, the smallest input MobileNetV2's five halvings take
        return np.pad(images, ((0, 0), (2, 2), (2, 2), (0, 0)))

    for task in tasks.tasks[:FLAGS.tasks]:
        results = learner.fit_task(pad(task.x_train), task.y_train,
                                   test_data=(pad(task.x_test), task.y_test))
    print(f"{'DER++' if FLAGS.dense else 'SparCL-DER++ 0.90'} on MobileNetV2: class-IL "
          f"{results['class_il']:.2f}  task-IL {results['task_il']:.2f}  training FLOPs "
          f"{results['training_flops'] / results['dense_training_flops']:.3f} of dense")
    if FLAGS.results:
        with open(FLAGS.results, "w") as handle:
            json.dump(results, handle, indent=2)
    if FLAGS.export_dir:
        path, audit = learner.export(FLAGS.export_dir)
        flex = sorted({op for entry in audit.values() for op in entry["flex_ops"]})
        print(f"{path}: {os.path.getsize(path):,} bytes, signatures {sorted(audit)}, Flex ops: "
              f"{flex or 'none'}")


if __name__ == "__main__":
    app.run(main)
