"""Training under tf.distribute equals one device: MirroredStrategy on 2 logical CPU devices and
MultiWorkerMirroredStrategy with 2 worker processes on 127.0.0.1, against the same short
SparCL-DER++ 0.90 run (tiny edge CNN, 2 tasks) on one device: weights, masks, gradient masks,
optimizer slots, the replay buffer and the removed examples, and every replica's copy of every
variable. Each run is a fresh process (`distribute_driver.py`): a strategy must be made before
TensorFlow runs its first op."""

import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

from sparcl_tf.errors import ConfigError

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DRIVER = os.path.join(HERE, "distribute_driver.py")
PRESET = "paper_sparcl_derpp_90"
RUN = ("data.num_tasks=2", "data.train_per_task=128")
MIRRORED = ("distribute.strategy=mirrored", "distribute.devices=2")
TIMEOUT_S = 180
TOLERANCE = 1e-5


def _start(data, workdir, out, *overrides, stop_after_task=-1, tf_config=None, preset=PRESET):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    if tf_config is not None:
        env["TF_CONFIG"] = tf_config
    return subprocess.Popen(
        [sys.executable, DRIVER, data, str(workdir), str(out), preset, str(stop_after_task),
         *RUN, *overrides], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)


def _finish(*children):
    """Waits for every child (all killed past TIMEOUT_S); [(exit code, stderr)]."""
    outcomes = []
    for child in children:
        try:
            _, errors = child.communicate(timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            for other in children:
                other.kill()
            pytest.fail(f"a distributed run took more than {TIMEOUT_S} s")
        outcomes.append((child.returncode, errors))
    return outcomes


def _run(*children):
    for code, errors in _finish(*children):
        assert code == 0, errors[-3000:]


def _exact(name, value):
    return (not np.issubdtype(value.dtype, np.floating) or "mask" in name
            or name.startswith("removed/"))


def assert_same_run(reference, other, removals_expected=True):
    """Every variable, buffer entry and removal of `other` equals `reference`: integers, masks
    and removed examples exactly, floats within TOLERANCE of the value's scale; returns the
    largest float difference."""
    largest = 0.0
    removals = [n for n in other.files if n.startswith("removed/")]
    assert set(removals) <= set(reference.files) and bool(removals) == removals_expected
    for name in reference.files:
        if name.startswith(("spread/", "about/")) or (
                name.startswith("removed/") and name not in removals):
            continue
        expected, actual = reference[name], other[name]
        assert expected.shape == actual.shape, name
        if _exact(name, expected):
            np.testing.assert_array_equal(actual, expected, err_msg=name)
        else:
            difference = float(np.abs(actual.astype(np.float64) - expected).max(initial=0.0))
            scale = max(1.0, float(np.abs(expected).max(initial=0.0)))
            assert difference <= TOLERANCE * scale, (name, difference)
            largest = max(largest, difference)
    return largest


def _results(workdir):
    with open(os.path.join(workdir, "results.json")) as handle:
        return json.load(handle)


def _resume_copy(source, target):
    """`source`'s workdir as it was after task 1 (its newest checkpoint, task 2's, removed)."""
    shutil.copytree(source, target)
    folder = os.path.join(target, "checkpoints")
    newest = max(os.listdir(folder), key=lambda name: int(name.split("-")[1].split(".")[0]))
    shutil.rmtree(os.path.join(folder, newest))
    os.remove(os.path.join(target, "results.json"))


@pytest.fixture(scope="module")
def runs(idx_folder, tmp_path_factory):
    """The run on one device and under MirroredStrategy (2 logical CPUs), side by side."""
    root = tmp_path_factory.mktemp("distribute")
    one, mirrored = root / "one", root / "mirrored"
    _run(_start(idx_folder, one, root / "one.npz"),
         _start(idx_folder, mirrored, root / "mirrored.npz", *MIRRORED))
    return root


def test_mirrored_run_equals_one_device_with_identical_replicas(runs):
    one, mirrored = np.load(runs / "one.npz"), np.load(runs / "mirrored.npz")
    assert int(one["about/replicas"]) == 1 and int(mirrored["about/replicas"]) == 2
    assert any(n.startswith("variable/run/gradient_mask_") for n in one.files)
    assert assert_same_run(one, mirrored) > 0  # computed apart, not copied
    spreads = {n: float(mirrored[n]) for n in mirrored.files if n.startswith("spread/")}
    assert spreads and all(value == 0.0 for value in spreads.values())
    assert bool(mirrored["about/divergence_caught"])  # a copy changed by hand is reported
    distribute = _results(runs / "mirrored")["distribute"]
    assert distribute == {"strategy": "mirrored", "replicas": 2, "workers": 1,
                          "batch_norm": "sync", "replica_checks": 2}
    assert "distribute" not in _results(runs / "one")


def test_the_edge_defaults_keep_the_replicas_identical(idx_folder, tmp_path):
    """sparcl_derpp_90 scales its sparse layers' rates (SparCL's defaults): the factor is applied
    before the all-reduce, so the replicas stay bit-identical (applied after it, on the masks,
    they parted by a rounding and the run stopped with a DivergedError). Against one device the
    paper preset agrees within TOLERANCE (above); at 10x the sparse layers' rate the rounding of
    the two reductions grows through ReLU flips past it (7e-4 in a stored gradient, measured), so
    the replicas' identity is what is held here."""
    _run(_start(idx_folder, tmp_path / "mirrored", tmp_path / "mirrored.npz", *MIRRORED,
                preset="sparcl_derpp_90"))
    mirrored = np.load(tmp_path / "mirrored.npz")
    spreads = {n: float(mirrored[n]) for n in mirrored.files if n.startswith("spread/")}
    assert spreads and all(value == 0.0 for value in spreads.values())
    assert _results(tmp_path / "mirrored")["distribute"]["replica_checks"] >= 2


def test_checkpoints_resume_across_one_device_and_mirrored(runs, idx_folder):
    _resume_copy(runs / "one", runs / "one_then_mirrored")
    _resume_copy(runs / "mirrored", runs / "mirrored_then_one")
    _run(_start(idx_folder, runs / "one_then_mirrored", runs / "one_then_mirrored.npz",
                *MIRRORED),
         _start(idx_folder, runs / "mirrored_then_one", runs / "mirrored_then_one.npz"))
    one = np.load(runs / "one.npz")
    for name in ("one_then_mirrored", "mirrored_then_one"):
        resumed = np.load(runs / f"{name}.npz")
        assert not any(n.startswith("removed/0.") for n in resumed.files)  # task 1 restored
        assert_same_run(one, resumed)
        assert len(_results(runs / name)["class_il_matrix"]) == 2


def test_a_run_saved_before_the_distribute_fields_still_converts(runs, tmp_path):
    """tools.convert reads a run on one device, also one whose config.json has no `distribute`
    group (written before it existed)."""
    older = tmp_path / "older"
    shutil.copytree(runs / "one", older)
    config = json.loads((older / "config.json").read_text())
    del config["distribute"]
    (older / "config.json").write_text(json.dumps(config))
    child = subprocess.run([sys.executable, "-m", "tools.convert", f"--workdir={older}",
                            f"--output_dir={tmp_path / 'model'}"], cwd=ROOT,
                           capture_output=True, text=True, timeout=TIMEOUT_S)
    assert child.returncode == 0, child.stderr
    assert (tmp_path / "model" / "model.tflite").stat().st_size > 0


def test_own_model_learner_under_mirrored_strategy_equals_one_device(tmp_path):
    children = [subprocess.Popen([sys.executable, DRIVER, "learner", str(tmp_path / name), name],
                                 cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True) for name in ("none", "mirrored")]
    _run(*children)
    one, mirrored = np.load(tmp_path / "none.npz"), np.load(tmp_path / "mirrored.npz")
    assert assert_same_run(one, mirrored, removals_expected=False) > 0
    results = {name: json.loads(str(archive["about/results"]))
               for name, archive in (("one", one), ("mirrored", mirrored))}
    assert results["mirrored"]["distribute"]["replicas"] == 2
    assert results["mirrored"]["class_il_matrix"] == results["one"]["class_il_matrix"]


@pytest.mark.multi_worker
def test_multi_worker_run_equals_one_device_and_refuses_workers_out_of_step(runs, idx_folder):
    from sparcl_tf.distribute import local_cluster
    chief_dir = runs / "workers"
    _run(*[_start(idx_folder, chief_dir, runs / f"worker{index}.npz",
                  "distribute.strategy=multi_worker", tf_config=tf_config)
           for index, tf_config in enumerate(local_cluster(2))])
    chief, worker = np.load(runs / "worker0.npz"), np.load(runs / "worker1.npz")
    assert int(chief["about/replicas"]) == 2
    assert_same_run(np.load(runs / "one.npz"), chief)
    for name in chief.files:  # the two processes' copies: bit for bit
        np.testing.assert_array_equal(worker[name], chief[name], err_msg=name)
    assert _results(chief_dir)["distribute"]["workers"] == 2
    assert not os.path.exists(runs / "worker1")

    # The chief resumes after task 1, the worker finds no checkpoint: both stop, one line each.
    _resume_copy(runs / "one", runs / "resumed_chief")
    outcomes = _finish(*[
        _start(idx_folder, runs / folder, runs / f"out{index}.npz",
               "distribute.strategy=multi_worker", tf_config=tf_config)
        for index, (folder, tf_config) in enumerate(zip(("resumed_chief", "empty"),
                                                        local_cluster(2)))])
    for code, errors in outcomes:
        assert code != 0 and "the workers start from different states" in errors


def test_batch_that_does_not_split_over_replicas_is_one_line(idx_folder, tmp_path):
    child = subprocess.run(
        [sys.executable, "-m", "tools.train", "--config=configs/split_fmnist.py:derpp",
         f"--workdir={tmp_path / 'run'}", f"--config.data.dir={idx_folder}",
         "--config.batch_size=15", "--config.distribute.strategy=mirrored",
         "--config.distribute.devices=2"], cwd=ROOT, capture_output=True, text=True,
        timeout=TIMEOUT_S)
    assert child.returncode == 2
    assert child.stderr.strip().splitlines() == [
        "error: batch_size=15 must split evenly over the 2 replicas of "
        "distribute.strategy=mirrored"]


@pytest.mark.parametrize("field, value, message", [
    ("strategy", "horovod", "distribute.strategy='horovod' is invalid"),
    ("devices", -1, "distribute.devices=-1 is invalid"),
    ("batch_norm", "frozen", "distribute.batch_norm='frozen' is invalid"),
    ("startup_timeout_s", 0.0, "distribute.startup_timeout_s=0.0 is invalid"),
    ("startup_timeout_s", float("inf"), "distribute.startup_timeout_s=inf is invalid"),
])
def test_bad_distribute_fields_are_config_errors(make_config, field, value, message):
    from sparcl_tf.config import validate
    config = make_config()
    config.distribute[field] = value
    with pytest.raises(ConfigError, match=message):
        validate(config)


@pytest.mark.parametrize("tf_config, says", [
    (None, "it is unset"), ("{not json", "it is not JSON"),
    ('{"cluster": {"worker": ["127.0.0.1:1"]}, "task": {"type": "worker", "index": 3}}',
     "it is {"),
])
def test_multi_worker_without_a_usable_tf_config_says_what_to_set(monkeypatch, tf_config, says):
    from sparcl_tf.distribute import cluster_from_environment
    monkeypatch.delenv("TF_CONFIG", raising=False)
    if tf_config is not None:
        monkeypatch.setenv("TF_CONFIG", tf_config)
    with pytest.raises(ConfigError, match=f"needs TF_CONFIG .*; {says}"):
        cluster_from_environment()


def test_local_cluster_names_distinct_free_ports():
    from sparcl_tf.distribute import local_cluster
    configs = [json.loads(text) for text in local_cluster(3)]
    addresses = configs[0]["cluster"]["worker"]
    assert len(set(addresses)) == 3 and all(c["cluster"]["worker"] == addresses for c in configs)
    assert [c["task"] for c in configs] == [{"type": "worker", "index": i} for i in range(3)]


def test_a_collective_that_loses_its_peer_is_a_cluster_error():
    import tensorflow as tf

    from sparcl_tf.distribute import _collectives
    from sparcl_tf.errors import ClusterError
    with pytest.raises(ClusterError, match="start all workers again with the same command"):
        with _collectives():
            raise tf.errors.UnavailableError(None, None, "[[{{node CollectiveReduceV2_4}}]]")


def _train_in_cluster(idx_folder, workdir, tf_config, *flags):
    return subprocess.run(
        [sys.executable, "-m", "tools.train", "--config=configs/split_fmnist.py:derpp",
         f"--workdir={workdir}", f"--config.data.dir={idx_folder}",
         "--config.distribute.strategy=multi_worker", *flags], cwd=ROOT,
        env=dict(os.environ, TF_CONFIG=tf_config), capture_output=True, text=True,
        timeout=TIMEOUT_S)


@pytest.mark.parametrize("tf_config, line", [
    ('{"cluster": {"worker": ["no-such-host.invalid:2345", "127.0.0.1:2346"]}, '
     '"task": {"type": "worker", "index": 1}}',
     "error: TF_CONFIG worker 0's address no-such-host.invalid:2345 does not resolve"),
    ('{"cluster": {"worker": ["127.0.0.1", "127.0.0.1:2346"]}, '
     '"task": {"type": "worker", "index": 1}}',
     "error: TF_CONFIG worker 0's address '127.0.0.1' is not host:port"),
    ('{"cluster": {"worker": ["192.0.2.1:2345", "127.0.0.1:2346"]}, '
     '"task": {"type": "worker", "index": 0}}',
     "error: this process (worker 0 of TF_CONFIG) cannot listen on its address 192.0.2.1:2345"),
])
def test_cluster_addresses_that_cannot_work_are_one_line_before_tensorflow_waits(
        idx_folder, tmp_path, tf_config, line):
    refused = _train_in_cluster(idx_folder, tmp_path / "run", tf_config)
    assert refused.returncode == 2 and len(refused.stderr.splitlines()) == 1, refused.stderr
    assert refused.stderr.startswith(line), refused.stderr


@pytest.mark.multi_worker
def test_a_peer_that_never_joins_ends_the_start_after_the_timeout(idx_folder, tmp_path):
    """TensorFlow would wait for ever, holding the GIL; the start-up watcher ends the process
    after distribute.startup_timeout_s with one line."""
    from sparcl_tf.distribute import local_cluster
    alone = json.loads(local_cluster(2)[0])
    started = time.monotonic()
    waited = _train_in_cluster(idx_folder, tmp_path / "run", json.dumps(alone),
                               "--config.distribute.startup_timeout_s=5")
    assert waited.returncode == -9 and time.monotonic() - started < 90, waited.stderr
    assert waited.stderr.splitlines() == [
        f"error: the cluster did not form within distribute.startup_timeout_s=5 s: not every "
        f"one of {alone['cluster']['worker'][1:]} joined"]
