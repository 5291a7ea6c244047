r"""A frozen inference .tflite as the feature extractor, a SparCL head that learns on the device.

  python examples/frozen_backbone_head.py [--backbone=model.tflite --feature_tensor=NAME]
      [--train_per_task=1000 --test_per_task=500] [--export_dir=runs/head_tflite]

Without --backbone the script makes one the way a user's would be made: a small Keras CNN
trained on the first task, converted to an ordinary inference .tflite (a PyTorch model through
ai-edge-torch would do as well). The features are its pooled layer (`--feature_tensor`; the
script prints the candidates). A two-layer head then learns the five tasks from the features
with SparCL-DER++ (latent replay: the buffer stores features), and --export_dir writes the
head's builtins-only training .tflite; on the device an app runs the backbone, then the head's
`train` signature. Half a minute on two cores.
"""

import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from absl import app, flags, logging  # noqa: E402

flags.DEFINE_string("backbone", None, "An inference .tflite (default: make one).")
flags.DEFINE_string("feature_tensor", None, "Its tensor to use as features (default: the "
                    "made backbone's pooled layer, or the model's output).")
flags.DEFINE_integer("train_per_task", 1000, "Training examples per task (0 = all).")
flags.DEFINE_integer("test_per_task", 500, "Test examples per task (0 = all).")
flags.DEFINE_string("data_dir", "", "Fashion-MNIST IDX folder (default: Debian's).")
flags.DEFINE_string("export_dir", None, "Where the head's training .tflite goes.")
FLAGS = flags.FLAGS


def make_backbone(task, normalize, path):
    """A CNN classifier trained on one task and converted to an inference .tflite; returns the
    name of its pooled-features tensor."""
    import keras
    import tensorflow as tf
    inputs = keras.Input((28, 28, 1))
    x = keras.layers.Conv2D(32, 3, strides=2, padding="same", activation="relu")(inputs)
    x = keras.layers.Conv2D(64, 3, strides=2, padding="same", activation="relu")(x)
    features = keras.layers.GlobalAveragePooling2D(name="features")(x)
    classifier = keras.Model(inputs, keras.layers.Dense(10)(features))
    classifier.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9),
                       loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    classifier.fit(normalize(task.x_train), task.y_train, batch_size=32, epochs=3, verbose=0)
    with open(path, "wb") as handle:
        handle.write(tf.lite.TFLiteConverter.from_keras_model(classifier).convert())
    from sparcl_tf.keras import FrozenBackbone
    return next(name for name, _ in FrozenBackbone(path).tensors() if "/features" in name)


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)  # no converter chatter
    import keras

    from sparcl_tf.keras import (DERPP, ContinualLearner, FrozenBackbone, Normalizer, SparCL,
                                 split_dataset)

    keras.utils.set_random_seed(0)
    tasks = split_dataset("fashion_mnist", FLAGS.data_dir, train_per_task=FLAGS.train_per_task,
                          test_per_task=FLAGS.test_per_task)
    normalize = Normalizer(tasks.mean, tasks.std)
    path, feature_tensor = FLAGS.backbone, FLAGS.feature_tensor
    if path is None:
        path = os.path.join(tempfile.mkdtemp(prefix="backbone_"), "backbone.tflite")
        feature_tensor = make_backbone(tasks.tasks[0], normalize, path)
    backbone = FrozenBackbone(path, feature_tensor)
    print(f"backbone {path}: features {feature_tensor or 'output'} {backbone.feature_shape}")

    head = keras.Sequential([keras.Input(backbone.feature_shape),
                             keras.layers.Dense(128, activation="relu"), keras.layers.Dense(10)])
    learner = ContinualLearner(head, method=DERPP(alpha=0.1, beta=0.5), buffer_size=500,
                               sparcl=SparCL(weight_sparsity=0.5, gradient_sparsity=0.6),
                               epochs_per_task=2, learning_rate=0.05)
    for task in tasks.tasks:
        results = learner.fit_task(backbone.features(normalize(task.x_train)), task.y_train,
                                   test_data=(backbone.features(normalize(task.x_test)),
                                              task.y_test))
    print(f"head on frozen features: class-IL {results['class_il']:.2f}  task-IL "
          f"{results['task_il']:.2f}  removed {results['examples_removed']} examples")
    if FLAGS.export_dir:
        model_path, audit = learner.export(FLAGS.export_dir)
        flex = sorted({op for entry in audit.values() for op in entry["flex_ops"]})
        print(f"{model_path}: {os.path.getsize(model_path):,} bytes, Flex ops: {flex or 'none'}")


if __name__ == "__main__":
    app.run(main)
