"""ContinualLearner: a user's own Keras model through the same loop the binaries use."""

import json

import keras
import numpy as np
import pytest

from sparcl_tf.config import SparCL
from sparcl_tf.errors import ConfigError
from sparcl_tf.experiment import Experiment
from sparcl_tf.keras import DERPP, ER, ContinualLearner
from sparcl_tf.layers import masked_layers, sparsifiable_layers
from sparcl_tf.models import build_model
from sparcl_tf.reporting.results import MACHINE_DEPENDENT
from sparcl_tf.sparsity.masks import active_count


def _learner_like(config, tasks, **extra):
    """A user's learner with the registry run's model and settings, written out by hand."""
    keras.utils.set_random_seed(config.seed)
    model = build_model(config.model.name, tasks.image_shape, tasks.num_classes,
                        width=config.model.width)
    return ContinualLearner(
        model, method=DERPP(alpha=config.method.alpha, beta=config.method.beta),
        buffer_size=config.replay.buffer_size,
        sparcl=SparCL.paper(weight_sparsity=0.9, gradient_sparsity=0.92, removal=0.3),
        epochs_per_task=config.epochs_per_task, batch_size=config.batch_size,
        replay_batch_size=config.replay.batch_size,
        learning_rate=config.optimizer.learning_rate, normalization=(tasks.mean, tasks.std),
        seed=config.seed, verbose=0, **extra)


def _fit(learner, tasks, **extra):
    for task in tasks.tasks:
        results = learner.fit_task(task.x_train, task.y_train,
                                   test_data=(task.x_test, task.y_test), classes=task.classes,
                                   **extra)
    return results


def _same_run(first, second):
    """Equal results; per-layer entries compared in layer order (two builds of a user's model
    get different auto-numbered layer names)."""
    for key in set(first) - set(MACHINE_DEPENDENT) - {"preset", "dataset", "model"}:
        mine, theirs = first[key], second[key]
        if key in ("layer_sparsity", "gradient_density"):
            mine, theirs = list(mine.values()), list(theirs.values())
        assert mine == theirs, key


def test_a_learner_trains_exactly_what_the_binary_trains(tmp_path, make_config):
    config = make_config("paper_sparcl_derpp_90", data__num_tasks=3, epochs_per_task=2)
    binary = Experiment(config, None, verbose=0)
    expected = binary.run()
    learner = _learner_like(config, binary.tasks)
    results = _fit(learner, binary.tasks)
    assert results["examples_removed"] > 0 and len(results["class_il_matrix"]) == 3
    _same_run(expected, {**results, "class_order": expected["class_order"]})
    for mine, theirs in zip(learner.network.variables, binary.network.variables):
        np.testing.assert_array_equal(mine.numpy(), theirs.numpy(), err_msg=mine.path)


def _user_model(seed=0):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((28, 28, 1))
    h = keras.layers.Conv2D(8, 3, padding="same", use_bias=False)(inputs)
    h = keras.layers.BatchNormalization()(h)
    h = keras.layers.ReLU(6.0)(h)
    h = keras.layers.DepthwiseConv2D(3, strides=2, padding="same", activation="relu")(h)
    h = keras.layers.Conv2D(16, 1, activation="relu")(h)
    h = keras.layers.Dense(24, activation="relu")(keras.layers.GlobalAveragePooling2D()(h))
    return keras.Model(inputs, keras.layers.Dense(10, name="logits")(h), name="user_cnn")


def _user_tasks(data_dir, tasks=2):
    from sparcl_tf.data.sources import load_idx_folder
    data = load_idx_folder(data_dir, "tiny")
    x, y, x_test, y_test = data.x_train, data.y_train, data.x_test, data.y_test
    for t in range(tasks):
        train, test = np.isin(y, [2 * t, 2 * t + 1]), np.isin(y_test, [2 * t, 2 * t + 1])
        yield x[train], y[train], x_test[test], y_test[test]


def test_sparcl_on_an_own_model_in_two_calls(idx_folder, tmp_path):
    history = keras.callbacks.History()
    batches = []
    counter = keras.callbacks.LambdaCallback(on_train_batch_end=lambda b, logs: batches.append(
        logs["loss"]))
    learner = ContinualLearner(_user_model(), method=DERPP(), buffer_size=40,
                               sparcl=SparCL.paper(weight_sparsity=0.9, gradient_sparsity=0.92),
                               epochs_per_task=2, batch_size=16, verbose=0,
                               workdir=str(tmp_path))
    for x, y, x_test, y_test in _user_tasks(idx_folder):
        results = learner.fit_task(x, y, test_data=(x_test, y_test),
                                   callbacks=[history, counter])
    # Every Conv2D, DepthwiseConv2D and Dense was masked; the stem, the depthwise conv and the
    # logits layer stay dense, the others are at exactly the target count.
    assert [type(layer).__name__ for layer in masked_layers(learner.network)] == [
        "MaskedConv2D", "MaskedDepthwiseConv2D", "MaskedConv2D", "MaskedDense", "MaskedDense"]
    layers = sparsifiable_layers(learner.network)
    assert [type(layer).__name__ for layer in layers] == ["MaskedConv2D", "MaskedDense"]
    for layer in layers:
        size = int(np.prod(layer.kernel.shape))
        assert np.count_nonzero(layer.kernel.numpy()) <= active_count(size, 0.9)
        assert int(layer.mask.numpy().sum()) == active_count(size, 0.9)
    assert len(batches) == results["steps"] and len(history.epoch) == 2  # the last task's fit
    assert results["examples_removed"] > 0 and results["training_flops"] < results[
        "dense_training_flops"]
    assert json.loads((tmp_path / "results.json").read_text())["steps"] == results["steps"]
    # strip gives plain Keras with the zeros in and the same outputs.
    x = next(_user_tasks(idx_folder))[2][:8].astype(np.float32)
    plain = learner.strip()
    assert not sparsifiable_layers(plain)
    np.testing.assert_allclose(plain(x), learner.network(x), atol=1e-5)
    scores = learner.evaluate(x, np.zeros(8, np.int64), classes=[0, 1])
    assert set(scores) == {"class_il", "task_il"}


def test_a_learner_resumes_task_by_task(idx_folder, tmp_path):
    def learner(workdir):
        return ContinualLearner(_user_model(), method=ER(), buffer_size=40, batch_size=16,
                                verbose=0, workdir=workdir)

    tasks = list(_user_tasks(idx_folder))
    reference = learner(None)
    for x, y, xt, yt in tasks:
        expected = reference.fit_task(x, y, test_data=(xt, yt))
    first = learner(str(tmp_path))
    first.fit_task(*tasks[0][:2], test_data=tasks[0][2:])
    again = learner(str(tmp_path))  # a new process on the same workdir
    assert again.progress.task == 1
    for x, y, xt, yt in tasks:
        results = again.fit_task(x, y, test_data=(xt, yt))
    _same_run(expected, results)
    for mine, theirs in zip(again.network.variables, reference.network.variables):
        np.testing.assert_array_equal(mine.numpy(), theirs.numpy(), err_msg=mine.path)


def test_a_dataset_trains_like_its_arrays(idx_folder):
    import tensorflow as tf
    x, y, xt, yt = next(_user_tasks(idx_folder))
    runs = []
    for data in ((x, y), (tf.data.Dataset.from_tensor_slices((x, y)).batch(7),)):
        learner = ContinualLearner(_user_model(), method=ER(), buffer_size=40, batch_size=16,
                                   verbose=0)
        runs.append(learner.fit_task(*data, test_data=(xt, yt)))
    _same_run(*runs)


def test_a_learning_rate_schedule_runs_per_task(idx_folder):
    x, y, xt, yt = next(_user_tasks(idx_folder))
    learner = ContinualLearner(_user_model(), method=ER(), buffer_size=40, batch_size=16,
                               epochs_per_task=2, learning_rate=0.04, verbose=0,
                               learning_rate_schedule={"schedule": "step", "milestones": [0.5],
                                                       "gamma": 0.25})
    assert learner.plan.learning_rate == {"schedule": "step", "base": 0.04,
                                          "final_fraction": 0.0, "milestones": [0.5],
                                          "gamma": 0.25}
    learner.fit_task(x, y, test_data=(xt, yt))
    # the last step of the task ran in its second epoch, at 0.25 x the base rate
    assert learner.engine.model.optimizer.learning_rate.numpy() == np.float32(0.01)


def test_bad_models_and_data_get_one_clear_error(idx_folder):
    x, y, xt, yt = next(_user_tasks(idx_folder))
    softmax = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(),
                                keras.layers.Dense(10, activation="softmax")])
    with pytest.raises(ValueError, match="softmax"):
        ContinualLearner(softmax)

    with pytest.raises(ValueError, match="ContinualLearner needs a Keras model, got str"):
        ContinualLearner("model.keras")
    with pytest.raises(ValueError, match="method must be a sparcl_tf.keras method object"):
        ContinualLearner(_user_model(), method="derpp")
    with pytest.raises(ConfigError, match="registry model"):
        ContinualLearner(_user_model(), sparcl=SparCL.paper(structured=True))
    with pytest.raises(ConfigError, match="learning_rate"):
        ContinualLearner(_user_model(), learning_rate=-1.0)
    with pytest.raises(ConfigError, match="optimizer.schedule='linear'"):
        ContinualLearner(_user_model(), learning_rate_schedule="linear")
    with pytest.raises(ConfigError, match="learning_rate_schedule=.* is invalid"):
        ContinualLearner(_user_model(), learning_rate_schedule={"schedule": "step", "decay": 2})
    with pytest.raises(ConfigError, match="buffer_size=0 must be > 0"):
        ContinualLearner(_user_model(), buffer_size=0)
    with pytest.raises(ValueError, match=r"normalization must be finite .* \(1\)"):
        ContinualLearner(_user_model(), normalization=([0.1, 0.2], [1.0, 1.0]))
    learner = ContinualLearner(_user_model(), buffer_size=40, batch_size=16, verbose=0)
    cases = [((x[..., 0], y), "do not fit"), ((x, y + 10), r"\[0, 10\)"),
             ((x.astype(np.float32) * np.nan, y), "NaN"), ((x, y.astype(np.float32)), "integers"),
             ((x[:3], y[:3]), "fewer than batch_size")]
    for (images, labels), message in cases:
        with pytest.raises(ValueError, match=message):
            learner.fit_task(images, labels, test_data=(xt, yt))
    with pytest.raises(ValueError, match="outside classes"):
        learner.fit_task(x, y, test_data=(xt, yt), classes=[0])
    assert learner.progress.global_step == 0 and len(learner.tasks) == 0  # nothing was lost


class _Injected(Exception):
    """A failure injected into a learner's task."""


def _raise(*_):
    raise _Injected("injected")


def _rollback_learner():
    return ContinualLearner(_user_model(), method=DERPP(), buffer_size=40, batch_size=16,
                            sparcl=SparCL.paper(weight_sparsity=0.9, gradient_sparsity=0.92,
                                          updates_per_task=4, removal_stages=2),
                            epochs_per_task=2, verbose=0)


@pytest.fixture(scope="module")
def never_failed(idx_folder):
    """(results, network weights) of a learner that learned two tasks without a failure."""
    tasks = list(_user_tasks(idx_folder))
    reference = _rollback_learner()
    for x, y, x_test, y_test in tasks:
        results = reference.fit_task(x, y, test_data=(x_test, y_test))
    return results, [v.numpy() for v in reference.network.variables]


@pytest.mark.parametrize("stage", ["first_batch", "mid_epoch", "epoch_end", "mask_update",
                                   "evaluation", "interrupt"])
def test_a_task_that_fails_at_any_stage_leaves_the_learner_as_it_was(idx_folder, never_failed,
                                                                    stage, monkeypatch):
    """A failure at each stage of fit_task (a callback's error, a mask update, the task-end
    evaluation, Ctrl-C) rolls the learner back to before the call: weights, optimizer, masks,
    buffer, statistics, progress and tasks; the next good call then trains exactly what a
    learner that never failed trains."""
    (x0, y0, xt0, yt0), (x1, y1, xt1, yt1) = _user_tasks(idx_folder)
    expected, weights = never_failed
    failing = _rollback_learner()
    failing.fit_task(x0, y0, test_data=(xt0, yt0))
    before = {key: np.array(v.numpy(), copy=True) for key, v in failing.session.variables.items()}
    results_before = failing.results()
    callbacks = None
    if stage in ("first_batch", "mid_epoch", "interrupt"):
        at = 0 if stage == "first_batch" else 3

        def on_batch(batch, logs):
            if batch == at:
                raise KeyboardInterrupt if stage == "interrupt" else _Injected("injected")

        callbacks = [keras.callbacks.LambdaCallback(on_train_batch_end=on_batch)]
    elif stage == "epoch_end":
        callbacks = [keras.callbacks.LambdaCallback(on_epoch_end=_raise)]
    elif stage == "mask_update":
        monkeypatch.setattr(failing.engine, "update_masks", _raise)
    else:
        monkeypatch.setattr(failing.engine, "logits", _raise)
    with pytest.raises(KeyboardInterrupt if stage == "interrupt" else _Injected):
        failing.fit_task(x1, y1, test_data=(xt1, yt1), callbacks=callbacks)
    monkeypatch.undo()
    assert len(failing.tasks) == 1 and failing.progress.task == 1
    _same_run(results_before, failing.results())
    for key, variable in failing.session.variables.items():
        np.testing.assert_array_equal(variable.numpy(), before[key], err_msg=key)
    _same_run(expected, failing.fit_task(x1, y1, test_data=(xt1, yt1)))
    for mine, theirs in zip(failing.network.variables, weights):
        np.testing.assert_array_equal(mine.numpy(), theirs, err_msg=mine.path)
