import json
import os

import numpy as np
import pytest

from conftest import run_until_interrupted
from sparcl_tf.errors import ConfigError
from sparcl_tf.experiment import Experiment
from sparcl_tf.layers import sparsifiable_layers

DESIGN_KEYS = {"class_il", "task_il", "class_il_matrix", "task_il_matrix", "forgetting",
               "training_flops", "dense_training_flops",
               "learning_accuracy", "wall_clock_s", "examples_presented", "examples_removed",
               "layer_sparsity", "gradient_density", "seed", "preset"}


def test_a_run_writes_results_plots_config_and_tensorboard(tmp_path, make_config):
    results = Experiment(make_config("derpp"), str(tmp_path), verbose=0).run()
    on_disk = json.loads((tmp_path / "results.json").read_text())
    assert DESIGN_KEYS <= set(on_disk) and on_disk == json.loads(json.dumps(results))
    # A dense run without removal costs exactly its dense reference.
    assert on_disk["training_flops"] == on_disk["dense_training_flops"] > 0
    assert len(on_disk["class_il_matrix"]) == 5
    assert all(row[t + 1:] == [None] * (4 - t) for t, row in enumerate(on_disk["class_il_matrix"]))
    assert on_disk["class_il"] == pytest.approx(np.mean(on_disk["class_il_matrix"][-1]))
    assert on_disk["examples_presented"] == 5 * 64 and on_disk["examples_removed"] == 0
    assert on_disk["task_il"] >= on_disk["class_il"]
    assert set(on_disk["layer_sparsity"]) == {"conv2", "conv3", "conv4", "fc1"}
    assert all(v == 1.0 for v in on_disk["gradient_density"].values())
    for name in ("accuracy_matrix.png", "task_accuracy.png", "config.json"):
        assert (tmp_path / name).stat().st_size > 0
    assert any(f.startswith("events") for f in os.listdir(tmp_path / "tensorboard"))


def _final_weights(run):
    return {v.path: v.numpy() for v in run.network.variables}


def test_interrupted_run_resumes_to_the_same_result(tmp_path, make_config, monkeypatch):
    config = make_config("derpp", epochs_per_task=2, checkpoint__every_steps=3)
    reference = Experiment(config, str(tmp_path / "reference"), verbose=0)
    expected = reference.run()

    # Checkpoints at steps 3, 6, 9, 12: steps 13 and 14 are lost and trained again.
    run_until_interrupted(config, str(tmp_path / "resumed"), 14, monkeypatch)
    resumed = Experiment(config, str(tmp_path / "resumed"), verbose=0)
    assert resumed.progress.global_step == 12 and resumed.progress.task == 1
    results = resumed.run()
    assert results["class_il_matrix"] == expected["class_il_matrix"]
    assert results["examples_presented"] == expected["examples_presented"]
    for path, value in _final_weights(reference).items():
        np.testing.assert_array_equal(_final_weights(resumed)[path], value, err_msg=path)
    np.testing.assert_array_equal(resumed.buffer.example_ids,
                                  reference.buffer.example_ids)


def test_a_finished_run_reruns_to_the_same_results_without_training(tmp_path, make_config):
    config = make_config("er")
    first = Experiment(config, str(tmp_path), verbose=0).run()
    again = Experiment(config, str(tmp_path), verbose=0)
    assert again.progress.task == 5
    second = again.run()
    assert second["class_il_matrix"] == first["class_il_matrix"]


def test_resuming_with_a_different_config_is_refused(tmp_path, make_config):
    Experiment(make_config("er"), str(tmp_path), verbose=0).run()
    with pytest.raises(ConfigError, match="different config"):
        Experiment(make_config("er", seed=5), str(tmp_path), verbose=0)


@pytest.mark.parametrize("preset", ["finetune", "joint", "der"])
def test_every_method_preset_runs(tmp_path, make_config, preset):
    results = Experiment(make_config(preset, data__num_tasks=2), str(tmp_path), verbose=0).run()
    assert results["method"] == preset and len(results["task_il_matrix"]) == 2


def test_synthetic_tasks_are_learned(tmp_path, make_config):
    # The generated classes are trivially separable: a broken train step would stay near chance.
    results = Experiment(make_config("joint", epochs_per_task=3), str(tmp_path), verbose=0).run()
    assert results["task_il"] > 80.0


def test_split_mnist_config_with_the_mlp_on_a_permuted_domain_stream(tmp_path, idx_folder):
    from configs.split_mnist import get_config
    config = get_config("er")
    config.data.dir = idx_folder
    config.data.scenario, config.data.num_tasks = "permuted", 2
    config.data.train_per_task, config.data.test_per_task = 64, 24
    config.batch_size = config.replay.batch_size = 16
    config.log.progress = False
    results = Experiment(config, str(tmp_path), verbose=0).run()
    assert results["model"] == "mlp" and len(results["class_il_matrix"]) == 2
    assert set(results["layer_sparsity"]) == {"fc1", "fc2"}


def test_erk_targets_reach_the_plan_the_masks_and_the_rates(make_config, tmp_path):
    """sparsity.distribution=erk: per-layer targets from the kernels' shapes, the same in the
    session plan (which every host follows), the initial masks and the rate scaling."""
    from sparcl_tf.sparsity.masks import active_count
    from sparcl_tf.sparsity.schedule import erk_sparsities
    config = make_config("sparcl_derpp_90", model__name="mlp", data__num_tasks=1,
                         sparsity__distribution="erk")
    run = Experiment(config, str(tmp_path), verbose=0)
    shapes = {layer.name: tuple(layer.kernel.shape) for layer in sparsifiable_layers(run.network)}
    expected = erk_sparsities(shapes, 0.9)
    assert expected["fc2"] < 0.9 < expected["fc1"]
    assert run.plan.schedule["layer_targets"] == [expected[n] for n in run.plan.sparse_layers]
    assert run.plan.layer_units == [int(np.prod(shapes[n])) for n in run.plan.sparse_layers]
    assert [int(np.count_nonzero(sparsifiable_layers(run.network)[i].mask.numpy()))
            for i in range(2)] == [active_count(u, expected[n]) for n, u in
                                   zip(run.plan.sparse_layers, run.plan.layer_units)]
    assert run.model.masking.rate_scales == pytest.approx(
        [1 / (1 - expected[n]) for n in run.plan.sparse_layers])


def test_mnist_without_a_folder_is_a_config_error(tmp_path):
    from configs.split_mnist import get_config
    with pytest.raises(ConfigError, match="data.dir"):
        Experiment(get_config("er"), str(tmp_path), verbose=0)


def test_user_npz_source_runs_end_to_end(tmp_path, make_config):
    from conftest import class_pattern_images
    rng = np.random.default_rng(3)
    y_train, y_test = np.repeat(np.arange(4), 40), np.repeat(np.arange(4), 10)
    path = tmp_path / "mine.npz"
    np.savez(path, x_train=class_pattern_images(y_train, rng) / 255.0, y_train=y_train,
             x_test=class_pattern_images(y_test, rng) / 255.0, y_test=y_test)
    config = make_config("er", data__source="npz", data__path=str(path))
    results = Experiment(config, str(tmp_path / "run"), verbose=0).run()
    assert results["num_tasks"] == 2 and results["dataset"] == "npz"
    assert len(results["class_il_matrix"]) == 2
