"""One session, three engines: the Keras trainer and the LiteRT session take the same steps, the
session plan is the contract, and the portable random stream matches its published vectors."""

import json

import numpy as np
import pytest

from conftest import export_initial, make_idx_folder, tiny_config
from sparcl_tf.errors import ConfigError, DataError
from sparcl_tf.engines.keras import KerasEngine
from sparcl_tf.experiment import Experiment
from sparcl_tf.ondevice import OnDeviceSession
from sparcl_tf.engines.litert import LiteRTEngine
from sparcl_tf.session import learning_rate
from sparcl_tf.session import random as session_random
from sparcl_tf.session.loop import SessionLoop
from sparcl_tf.session.plan import SessionPlan
from sparcl_tf.sparsity import schedule, structured
from sparcl_tf.sparsity.masks import active_count


def test_random_stream_matches_its_published_test_vectors():
    # SplitMix64's reference: seed 0 gives 0xE220A8397B1DCDAF first.
    assert session_random.mix(session_random.GAMMA) == 0xE220A8397B1DCDAF
    stream = session_random.Stream(0, session_random.EPOCH_ORDER, 0, 0)
    assert [int(u) for u in stream.outputs(0, 3)] == [
        0xC739F5EC15A29D83, 0xAE1D77A406C6AD8F, 0xCEEE96175FFE237A]
    assert stream.below([10, 10, 10]).tolist() == [7, 6, 8]
    assert stream.permutation(10).tolist() == [5, 2, 0, 9, 1, 3, 4, 8, 6, 7]
    replay = session_random.Stream(7, session_random.REPLAY, 3, 1)
    assert replay.distinct(500, 5).tolist() == [265, 31, 253, 495, 363]
    assert [session_random.growth_seed(0, 0, 0), session_random.growth_seed(0, 1, 2),
            session_random.growth_seed(42, 3, 9)] == [72373, 6450, 102700]


def test_learning_rate_schedules_follow_the_task_progress():
    entry = {"schedule": "cosine", "base": 0.1, "final_fraction": 0.2, "milestones": [0.5, 0.75],
             "gamma": 0.1}
    assert learning_rate.value(entry, 0.0) == 0.1
    assert learning_rate.value(entry, 0.5) == pytest.approx(0.1 * (0.2 + 0.8 * 0.5))
    assert learning_rate.value(entry, 1.0) == pytest.approx(0.02)
    step = dict(entry, schedule="step")
    assert [learning_rate.value(step, p) for p in (0.0, 0.49, 0.5, 0.74, 0.8)] == pytest.approx(
        [0.1, 0.1, 0.01, 0.01, 0.001])
    assert learning_rate.value(dict(entry, schedule="constant"), 0.9) == 0.1
    assert learning_rate.task_progress(1, 48, 96, 2) == 0.75


def test_every_step_trains_at_the_schedules_rate(idx_folder, tmp_path, monkeypatch):
    config = tiny_config(idx_folder, "derpp", data__num_tasks=2, epochs_per_task=2,
                         optimizer__schedule="step", optimizer__milestones=(0.5,),
                         log__tensorboard=False)
    rates, train = [], KerasEngine.train

    def record(self, inputs, refresh):
        out = train(self, inputs, refresh)
        rates.append((float(inputs["learning_rate"]),
                      float(self.model.optimizer.learning_rate.numpy())))
        return out

    monkeypatch.setattr(KerasEngine, "train", record)
    run = Experiment(config, str(tmp_path), verbose=0)
    assert run.plan.learning_rate["schedule"] == "step"
    run.run()
    fed = [fed for fed, _ in rates]
    assert all(fed == used for fed, used in rates)  # the optimizer stepped at the fed rate
    per_task = len(fed) // 2  # 2 tasks of 2 epochs; the second epoch of each at 0.1 x
    base = np.float32(config.optimizer.learning_rate)
    expected = [base] * (per_task // 2) + [np.float32(base * 0.1)] * (per_task // 2)
    assert fed == pytest.approx(expected * 2, rel=1e-7)


@pytest.fixture(scope="module")
def parity_folder(tmp_path_factory):
    return make_idx_folder(tmp_path_factory.mktemp("parity_data"), train_per_class=96,
                           test_per_class=50)


def _parity_config(folder, preset, **overrides):
    # 3 tasks, 2 epochs, momentum 0.9: data removal, mask updates and DGM refreshes inside
    # epochs, and an optimizer that must be reset per task on both engines.
    settings = dict(data__num_tasks=3, data__train_per_task=192, data__test_per_task=100,
                    epochs_per_task=2, optimizer__momentum=0.9, sparsity__updates_per_task=5,
                    ddr__stages=2, log__tensorboard=False)
    return tiny_config(folder, preset, **{**settings, **overrides})


def _record(monkeypatch):
    """Per engine class: the active counts after every mask update and the ids each data-removal
    stage took."""
    record = {}
    for engine in (KerasEngine, LiteRTEngine):
        original = engine.update_masks

        def update(self, prune_to, grow_to, seed, original=original, name=engine.__name__):
            active = [int(a) for a in original(self, prune_to, grow_to, seed)]
            record.setdefault(name, {"active": [], "removed": []})["active"].append(active)
            return active

        monkeypatch.setattr(engine, "update_masks", update)
    original_event = SessionLoop._apply_event

    def apply_event(self, event, task_index, ids):
        before = len(self.progress.removed)
        original_event(self, event, task_index, ids)
        if event.removal_stage:
            name = type(self.engine).__name__
            record.setdefault(name, {"active": [], "removed": []})["removed"].append(
                sorted(self.progress.removed[before:]))  # the set; its order follows margins

    monkeypatch.setattr(SessionLoop, "_apply_event", apply_event)
    return record


def test_the_step_time_leaves_out_each_process_first_step_which_traces(idx_folder, tmp_path):
    config = tiny_config(idx_folder, "derpp", data__num_tasks=2, log__tensorboard=False)
    run = Experiment(config, str(tmp_path), verbose=0)
    results = run.run()
    assert run.progress.first_steps == 1 and 0 < results["first_step_s"] < results["train_time_s"]
    assert results["train_step_ms"] == pytest.approx(
        1000.0 * (results["train_time_s"] - results["first_step_s"]) / (results["steps"] - 1))


@pytest.mark.parametrize("preset", ["paper_sparcl_derpp_90", "paper_sparcl_derpp_s75"])
def test_keras_and_litert_sessions_take_the_same_steps(parity_folder, tmp_path, monkeypatch,
                                                      preset):
    # Filter sparsity 0.75 as before sNN meant weights: removal ranks by margin, and on a run
    # with other numbers two margins can tie within the runtimes' float rounding (by weights, s75
    # swapped one example of 29 in the last stage); the same runtime (Kotlin) is compared bit
    # for bit in test_android_session.
    config = _parity_config(parity_folder, preset, sparsity__structured_target="filters")
    model = export_initial(config, tmp_path / "model")
    record = _record(monkeypatch)
    keras_results = Experiment(config, str(tmp_path / "keras"), verbose=0).run()
    litert_results = OnDeviceSession(model, config, str(tmp_path / "litert"), verbose=0).run()
    keras_record, litert_record = record["KerasEngine"], record["LiteRTEngine"]
    assert len(keras_record["active"]) == 3 * 5 and len(keras_record["removed"]) == 3 * 2
    assert keras_record["active"] == litert_record["active"]
    assert keras_record["removed"] == litert_record["removed"]
    assert sum(len(ids) for ids in keras_record["removed"]) == keras_results[
        "examples_removed"] > 0
    for key in ("steps", "examples_presented", "examples_removed", "training_flops",
                "dense_training_flops"):
        assert litert_results[key] == pytest.approx(keras_results[key], rel=1e-9), key
    # Exact zeros: the same masks (above), but an active weight may sit at exactly 0.0 on one
    # runtime and at 1e-9 on the other.
    assert litert_results["layer_sparsity"] == pytest.approx(keras_results["layer_sparsity"],
                                                             abs=1e-3)
    assert abs(litert_results["class_il"] - keras_results["class_il"]) <= 0.5
    assert keras_results["class_il"] > 40  # a session that learned something, not chance


def test_a_structured_run_refreshes_filter_gradients_after_every_slot_update(
        parity_folder, tmp_path, monkeypatch):
    config = _parity_config(parity_folder, "paper_sparcl_derpp_s75", data__num_tasks=1)
    log, train, update = [], KerasEngine.train, KerasEngine.update_masks
    monkeypatch.setattr(KerasEngine, "train", lambda self, inputs, refresh: (
        log.append(("step", bool(refresh))), train(self, inputs, refresh))[1])
    monkeypatch.setattr(KerasEngine, "update_masks", lambda self, *args: (
        log.append(("update", None)), update(self, *args))[1])
    Experiment(config, str(tmp_path), verbose=0).run()
    after_updates = [log[i + 1] for i, entry in enumerate(log[:-1]) if entry[0] == "update"]
    assert len(after_updates) == 5 and all(entry == ("step", True) for entry in after_updates)
    assert ("step", False) in log  # and cached selections in between


def test_the_plan_of_a_structured_model_counts_filter_slots(parity_folder, tmp_path):
    config = _parity_config(parity_folder, "paper_sparcl_derpp_s75")
    run = Experiment(config, str(tmp_path), verbose=0)
    plan = run.plan
    assert plan.unit == "filter_slots"
    full = run.kind.full_filters
    for event in plan.task_events(1, 300):
        for name, slots, prune_to, grow_to in zip(plan.sparse_layers, plan.layer_units,
                                                  event.prune_to, event.grow_to):
            # s75: 75 % fewer weights; the edge CNN's chained layers keep sqrt(0.25) of filters
            counts = structured.filter_counts(full[name], 0.5, 0.01, 0.01)
            assert (prune_to, grow_to) == schedule.tdm_phase(event.update_index, 5, *counts)
            assert grow_to <= slots < full[name]
    weights = Experiment(_parity_config(parity_folder, "paper_sparcl_derpp_90"),
                         str(tmp_path / "weights"), verbose=0).plan
    assert weights.unit == "weights"
    last = weights.task_events(0, 300)[-1]
    assert last.prune_to == last.grow_to == tuple(
        active_count(size, 0.9) for size in weights.layer_units)


def test_data_removal_waits_for_tasks_of_its_minimum_steps(parity_folder, tmp_path):
    """ddr.min_task_steps: a task of E epochs of n examples in batches of B has E floor(n / B)
    steps; from the minimum on it removes data, below it none, decided when the task begins."""
    config = _parity_config(parity_folder, "paper_sparcl_derpp_90", ddr__min_task_steps=24)
    plan = Experiment(config, str(tmp_path), verbose=0).plan
    epochs, batch = plan.epochs_per_task, plan.batch_size
    assert plan.schedule["removal"]["min_task_steps"] == 24
    fewest = -(-24 // epochs) * batch  # the smallest task of 24 steps or more
    assert plan.task_steps(fewest) >= 24 > plan.task_steps(fewest - 1)
    for examples, stages in ((fewest - 1, 0), (fewest, 2), (10 * fewest, 2)):
        events = plan.task_events(3, examples)
        assert plan.removal_stages(examples) == stages
        assert [e.removal_stage for e in events if e.removal_stage] == list(range(1, stages + 1))
        assert [e.update_index for e in events if e.mask_update] == list(range(5))


def test_plans_carry_seeds_per_task_and_round_trip_through_json(parity_folder, tmp_path):
    plan = Experiment(_parity_config(parity_folder, "paper_sparcl_derpp_90"), str(tmp_path),
                      verbose=0).plan
    seeds = [[event.seed for event in plan.task_events(t, 192)] for t in range(3)]
    assert seeds[0] != seeds[1] and seeds[0][1] == session_random.growth_seed(0, 0, 1)
    assert [e.removal_target for e in plan.task_events(0, 192) if e.removal_stage] == [29, 58]
    again = SessionPlan.from_json(json.loads(json.dumps(plan.to_json())))
    assert again == plan
    with pytest.raises(DataError, match="session plan version 99"):
        SessionPlan.from_json(dict(plan.to_json(), version=99))


def test_the_litert_session_from_signatures_json_alone_equals_the_one_from_the_config(
        parity_folder, tmp_path):
    config = _parity_config(parity_folder, "paper_sparcl_derpp_90", data__num_tasks=2,
                            optimizer__momentum=0.0)
    model = export_initial(config, tmp_path / "model")
    from_config = OnDeviceSession(model, config, str(tmp_path / "a"), verbose=0).run()
    from_plan = OnDeviceSession(model, None, str(tmp_path / "b"), verbose=0).run()
    for key in ("class_il_matrix", "training_flops", "examples_removed", "layer_sparsity",
                "steps"):
        assert from_plan[key] == from_config[key], key
    other = _parity_config(parity_folder, "paper_sparcl_derpp_90", data__num_tasks=2,
                           optimizer__momentum=0.0, sparsity__swap_fraction=0.05)
    with pytest.raises(ConfigError, match=r"other values of \['sparsity.swap_fraction'\]"):
        OnDeviceSession(model, other, str(tmp_path / "c"), verbose=0)
    faster = _parity_config(parity_folder, "paper_sparcl_derpp_90", data__num_tasks=2,
                            optimizer__momentum=0.0, optimizer__learning_rate=0.1)
    with pytest.raises(ConfigError, match=r"other values of \['optimizer.learning_rate'\]"):
        OnDeviceSession(model, faster, str(tmp_path / "d"), verbose=0)  # baked into `train`
