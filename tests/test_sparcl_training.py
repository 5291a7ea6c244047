"""SparCL inside real (tiny) runs: targets, exact zeros, gradient masks, data removal, ablations."""

import numpy as np
import pytest

from conftest import run_until_interrupted
from sparcl_tf.errors import ConfigError
from sparcl_tf.engines.keras import KerasEngine
from sparcl_tf.experiment import Experiment
from sparcl_tf.session.plan import removal_targets
from sparcl_tf.sparsity import masks, schedule


def _masks(run):
    return {layer.name: layer.mask.numpy().copy() for layer in run.model.sparse}


def test_per_layer_targets_override_the_uniform_sparsity(tmp_path, make_config):
    config = make_config("paper_sparcl_derpp_90")
    config.sparsity.layer_sparsity = {"fc1": 0.5}
    run = Experiment(config, str(tmp_path), verbose=0)
    sparsity = {layer.name: masks.sparsity(layer.mask.numpy()) for layer in run.model.sparse}
    assert sparsity["fc1"] == pytest.approx(0.5, abs=1e-4)
    assert sparsity["conv3"] == pytest.approx(0.9, abs=1e-3)
    config.sparsity.layer_sparsity = {"conv9": 0.5}
    with pytest.raises(ConfigError, match="conv9"):
        Experiment(config, str(tmp_path / "bad"), verbose=0)


def test_initial_masks_are_magnitude_masks_at_the_target(tmp_path, make_config):
    run = Experiment(make_config("paper_sparcl_derpp_90"), str(tmp_path), verbose=0)
    for layer in run.model.sparse:
        mask, kernel = layer.mask.numpy(), layer.kernel.numpy()
        assert mask.size - mask.sum() == round(0.9 * mask.size)
        assert np.all(kernel[mask == 0] == 0)


def test_every_schedule_point_hits_its_targets_with_exact_zeros(tmp_path, make_config,
                                                                 monkeypatch):
    config = make_config("paper_sparcl_derpp_90", epochs_per_task=2, data__num_tasks=2)
    checked = []
    original = KerasEngine.update_masks

    def checked_update(self, prune_to, grow_to, seed):
        update_index = len(checked) % 10
        before = {layer.name: layer.mask.numpy().copy() for layer in self.model.sparse}
        active = original(self, prune_to, grow_to, seed)
        _, target = schedule.tdm_targets(update_index, 10, 0.9, 0.01, 0.01)
        for layer, count in zip(self.model.sparse, active):
            mask, kernel = layer.mask.numpy(), layer.kernel.numpy()
            assert count == mask.sum() == masks.active_count(mask.size, target), layer.name
            assert np.all(kernel[mask == 0] == 0.0)
            grown = (mask == 1) & (before[layer.name] == 0)
            assert np.all(kernel[grown] == 0.0)  # grown weights start at exactly zero
            if update_index in (0, 4):
                assert grown.any()  # the open and swap updates really grow
        checked.append(update_index)
        return active

    monkeypatch.setattr(KerasEngine, "update_masks", checked_update)
    results = Experiment(config, str(tmp_path), verbose=0).run()
    assert checked == list(range(10)) * 2
    for name, value in results["layer_sparsity"].items():
        assert abs(value - 0.9) < 0.01, name  # the last update of a task freezes at the target


def test_gradient_masks_keep_exactly_the_target_count_after_a_refresh(tmp_path, make_config):
    run = Experiment(make_config("paper_sparcl_derpp_90", data__num_tasks=2), str(tmp_path),
                     verbose=0)
    results = run.run()
    for layer, mask, keep in zip(run.model.sparse, run.model.masking.groups["gradient_mask"],
                                 run.model.masking.keep):
        size = mask.numpy().size
        assert keep == size - round(0.92 * size)
        assert mask.numpy().sum() == keep
        assert results["gradient_density"][layer.name] == pytest.approx(keep / size, rel=1e-5)


def test_gradient_masks_are_cached_between_refreshes(tmp_path, make_config):
    config = make_config("paper_sparcl_derpp_90", dgm__refresh_every=3, data__num_tasks=1)
    run = Experiment(config, str(tmp_path), verbose=0)
    task = run.tasks.tasks[0]
    images = run.session.stream.prepare(task.x_train[:16])
    class_mask = np.isin(np.arange(10), task.classes).astype(np.float32)
    draws = (np.zeros((2, 16, 28, 28, 1), np.float32), np.zeros((2, 16), np.int32),
             np.zeros((2, 16, 10), np.float32))
    history = []
    for refresh in (True, False, False, True):
        run.model.step(images, task.y_train[:16].astype(np.int32), class_mask, *draws, 0.0,
                       refresh)
        history.append(run.model.masking.groups["gradient_mask"][0].numpy().copy())
    np.testing.assert_array_equal(history[0], history[1])  # refreshed at step 0, cached 1 and 2
    np.testing.assert_array_equal(history[1], history[2])
    assert not np.array_equal(history[2], history[3])  # refreshed again at step 3


def test_the_loop_refreshes_at_epoch_starts_mask_updates_and_every_k_steps(tmp_path,
                                                                           make_config,
                                                                           monkeypatch):
    config = make_config("paper_sparcl_derpp_90", dgm__refresh_every=3, data__num_tasks=1,
                         data__train_per_task=80, epochs_per_task=2, ddr__enabled=False,
                         sparsity__updates_per_task=2)
    flags, original = [], KerasEngine.train
    monkeypatch.setattr(KerasEngine, "train", lambda self, inputs, refresh: (
        flags.append(bool(refresh)), original(self, inputs, refresh))[1])
    Experiment(config, str(tmp_path), verbose=0).run()
    # 5 steps per epoch; mask updates at progress 0 and 1 (each epoch's start); k = 3.
    assert flags == [True, False, False, True, False] * 2


def test_data_removal_takes_the_planned_count_and_never_touches_the_buffer(tmp_path,
                                                                           make_config):
    # Capacity above every offer of the run (5 tasks x 2 epochs x 64): nothing is ever replaced.
    config = make_config("paper_sparcl_derpp_90", epochs_per_task=2, replay__buffer_size=700)
    run = Experiment(config, str(tmp_path), verbose=0)
    results = run.run()
    per_task = removal_targets(64, 0.3, 4)[-1]
    assert per_task == 19 and results["examples_removed"] == 5 * per_task
    removed = np.array(run.progress.removed)  # the last task's removals
    assert len(removed) == per_task
    # Removed examples were trained before their stage (so offered to the reservoir, which here
    # holds everything) and are still in the buffer: the buffer is never filtered...
    assert set(removed) <= set(run.buffer.example_ids)
    # ...and after the last stage they were never presented again.
    assert run.session.stats.snapshot(removed)["presentations"].sum() == 0
    assert results["examples_presented"] < 5 * 2 * 64


@pytest.mark.parametrize("preset", ["paper_sparcl_derpp_90_no_tdm", "static_derpp_90"])
def test_without_tdm_the_initial_mask_never_changes(tmp_path, make_config, preset):
    run = Experiment(make_config(preset, data__num_tasks=2), str(tmp_path), verbose=0)
    initial = _masks(run)
    run.run()
    for name, mask in _masks(run).items():
        np.testing.assert_array_equal(mask, initial[name])


def test_tdm_and_rigl_really_move_the_mask(tmp_path, make_config):
    for preset in ("paper_sparcl_derpp_90", "rigl_derpp_90"):
        run = Experiment(make_config(preset, data__num_tasks=2), str(tmp_path / preset), verbose=0)
        initial = _masks(run)
        results = run.run()
        assert any(not np.array_equal(m, initial[n]) for n, m in _masks(run).items()), preset
        for name, mask in _masks(run).items():
            assert abs(masks.sparsity(mask) - 0.9) <= 1.0 / mask.size, (preset, name)
        assert results["training_flops"] < results["dense_training_flops"]


def test_without_ddr_nothing_is_removed(tmp_path, make_config):
    results = Experiment(make_config("paper_sparcl_derpp_90_no_ddr", data__num_tasks=2),
                         str(tmp_path), verbose=0).run()
    assert results["examples_removed"] == 0 and results["examples_presented"] == 2 * 64


def test_without_dgm_every_active_weight_is_updated(tmp_path, make_config):
    run = Experiment(make_config("paper_sparcl_derpp_90_no_dgm", data__num_tasks=2), str(tmp_path),
                     verbose=0)
    assert "gradient_mask" not in run.model.masking.groups
    results = run.run()
    for layer in run.model.sparse:
        size = layer.mask.numpy().size
        assert results["gradient_density"][layer.name] == pytest.approx(
            (size - round(0.9 * size)) / size, rel=1e-5)


def test_sparcl_run_interrupted_mid_task_resumes_to_the_same_result(tmp_path, make_config,
                                                                    monkeypatch):
    config = make_config("paper_sparcl_derpp_90", epochs_per_task=2, data__num_tasks=3,
                         checkpoint__every_steps=2)
    reference = Experiment(config, str(tmp_path / "reference"), verbose=0)
    expected = reference.run()
    # Inside task 2, after its removals, between the checkpoints at steps 10 and 12.
    run_until_interrupted(config, str(tmp_path / "resumed"), 11, monkeypatch)
    resumed = Experiment(config, str(tmp_path / "resumed"), verbose=0)
    assert resumed.progress.global_step == 10
    results = resumed.run()
    for key in ("class_il_matrix", "examples_removed", "examples_presented", "training_flops",
                "dense_training_flops", "layer_sparsity"):
        assert results[key] == expected[key], key
    for a, b in zip(resumed.network.variables, reference.network.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)


@pytest.mark.parametrize("min_epochs, on", [(3, False), (2, True)])
def test_dgm_stays_off_below_its_minimum_epochs_a_task(tmp_path, make_config, min_epochs, on):
    """dgm.min_epochs: one decision (`dgm.active`) read by the plan (refresh cadence), the
    step's masking and the export alike."""
    from sparcl_tf.export import training_module
    config = make_config("paper_sparcl_derpp_90", data__num_tasks=2, epochs_per_task=2,
                         dgm__min_epochs=min_epochs)
    run = Experiment(config, str(tmp_path), verbose=0)
    assert (run.plan.dgm_refresh_every > 0) == on
    assert ("gradient_mask" in run.model.masking.groups) == on
    module = training_module(run.config, run.network, run.kind)
    names = [spec.name for spec in module.train.input_signature]
    assert ("refresh_gradient_masks" in names) == on
