"""Runs one short experiment under the strategy its overrides name and writes what the distribute
tests compare. Run as a script by tests/test_distribute.py (never imported by pytest): a strategy
must be made before TensorFlow runs its first op, so each run is a fresh process.

  python tests/distribute_driver.py DATA_FOLDER WORKDIR OUT.npz PRESET STOP_AFTER_TASK \
      [FIELD=VALUE ...]
  python tests/distribute_driver.py learner OUT.npz none|mirrored

STOP_AFTER_TASK -1 trains every task. OUT.npz holds every engine variable (weights, masks,
optimizer slots, gradient masks, last gradients), the replay buffer, the examples removed at each
stage (`removed/T.S`), per variable the largest difference between this process's replica copies
(`spread/NAME`, exact zeros when they agree), and whether a copy changed by hand afterwards is
caught by the replica check (`about/divergence_caught`).
"""

import ast
import os
import sys

sys.path[:0] = [os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                os.path.dirname(os.path.abspath(__file__))]

import numpy as np  # noqa: E402

from conftest import tiny_config  # noqa: E402


def _value(text):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def _divergence_caught(engine, strategy):
    """True when one replica copy changed by hand makes the replica check fail (False where
    this process holds one copy)."""
    from sparcl_tf.errors import DivergedError
    kernel = engine.network.trainable_variables[0]
    copies = strategy.experimental_local_results(kernel.value)
    if len(copies) < 2:
        return False
    copies[1].assign(copies[1] + 1e-3)
    try:
        engine.replication.check_identical(engine.variables())
    except DivergedError as error:
        return kernel.name in str(error) or "network/000" in str(error)
    return False


def main(data_folder, workdir, out, preset, stop_after_task, *overrides):
    import keras

    from sparcl_tf.experiment import Experiment
    config = tiny_config(data_folder, preset, **{
        key.replace(".", "__"): _value(value)
        for key, value in (override.split("=", 1) for override in overrides)})
    run = Experiment(config, workdir, verbose=0)
    removals = {}

    def trace(record):
        if record["kind"] == "removal":
            removals[f"removed/{record['task']}.{record['stage']}"] = np.asarray(
                record["removed"], np.int64)
    run.session.trace = trace
    stop = int(stop_after_task)
    run.run(stop_after_task=None if stop < 0 else stop)
    arrays = {}
    strategy = run.engine.replication.strategy
    for name, variable in run.engine.variables().items():
        arrays[f"variable/{name}"] = np.asarray(variable.numpy())
        copies = [np.asarray(c.numpy()) for c in strategy.experimental_local_results(
            variable.value if isinstance(variable, keras.Variable) else variable)]
        arrays[f"spread/{name}"] = np.float64(max(
            np.abs(c.astype(np.float64) - copies[0].astype(np.float64)).max(initial=0.0)
            for c in copies))
    for name, holder in run.buffer.state().items():
        arrays[f"buffer/{name}"] = np.asarray(holder.numpy())
    arrays.update(removals)
    arrays["about/replicas"] = np.int64(run.engine.replication.replicas)
    arrays["about/divergence_caught"] = _divergence_caught(run.engine, strategy)
    np.savez(out, **arrays)


def learner_main(out, strategy_name):
    """A user's own Keras model (BatchNorm included) through `ContinualLearner(strategy=...)`,
    SparCL-DER++ 0.90, two generated tasks; OUT.npz holds its variables and results."""
    import contextlib
    import json

    import keras
    import tensorflow as tf

    from conftest import class_pattern_images
    from sparcl_tf.keras import ContinualLearner, SparCL
    strategy = None
    if strategy_name == "mirrored":
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    with strategy.scope() if strategy else contextlib.nullcontext():
        keras.utils.set_random_seed(0)
        inputs = keras.Input((28, 28, 1))
        x = keras.layers.Conv2D(8, 3, strides=2, padding="same")(inputs)
        x = keras.layers.Conv2D(16, 3, strides=2, padding="same")(x)
        x = keras.layers.ReLU()(keras.layers.BatchNormalization()(x))
        x = keras.layers.Dense(32, activation="relu")(keras.layers.Flatten()(x))
        model = keras.Model(inputs, keras.layers.Dense(4)(x))
    learner = ContinualLearner(model, buffer_size=40, batch_size=16, learning_rate=0.05,
                               sparcl=SparCL(weight_sparsity=0.9),
                               strategy=strategy, verbose=0)
    rng = np.random.default_rng(0)
    for classes in ((0, 1), (2, 3)):
        labels = rng.choice(classes, 96)
        test = rng.choice(classes, 32)
        learner.fit_task(class_pattern_images(labels, rng)[..., None], labels, test_data=(
            class_pattern_images(test, rng)[..., None], test))
    np.savez(out, **{f"variable/{i:03d}.{v.name}": v.numpy()
                     for i, v in enumerate(learner.network.variables)},
             **{"about/results": json.dumps(learner.results())})


if __name__ == "__main__":
    if sys.argv[1] == "learner":
        learner_main(*sys.argv[2:])
    else:
        main(*sys.argv[1:])
