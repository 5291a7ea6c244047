"""Kills a short training run with SIGKILL at random moments, over and over, and resumes it.

Run as a script by tests/test_fault_injection.py (never imported by pytest: it forks, which is
safe only in a process whose TensorFlow has run no op yet). It imports TensorFlow once, then
forks one child per attempt: the child runs `Experiment(...).run()` on the workdir (resuming
from its checkpoints, written at every step), the parent kills it after a random delay or,
every other time, as soon as a checkpoint save has begun. A run that finishes is compared with an
uninterrupted one and the next run starts in a fresh workdir, until KILLS kills are done. Prints
one JSON summary line.

  python tests/fault_driver.py DATA_FOLDER WORKDIR KILLS SEED
"""

import json
import os
import random
import signal
import sys
import time

sys.path[:0] = [os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                os.path.dirname(os.path.abspath(__file__))]

from conftest import tiny_config  # noqa: E402
from sparcl_tf.experiment import Experiment  # noqa: E402
from sparcl_tf.reporting.results import MACHINE_DEPENDENT  # noqa: E402


def _child(config, workdir):
    pid = os.fork()
    if pid == 0:  # the run, as a fresh process would do it
        try:
            Experiment(config, workdir, verbose=0).run()
            os._exit(0)
        except BaseException as error:  # noqa: B902 - report anything, then die
            print(f"child failed: {type(error).__name__}: {error}", file=sys.stderr, flush=True)
            os._exit(3)
    return pid


def _saving(folder):
    """True while a save's staging folder is there (a kill now lands inside the save)."""
    return os.path.isdir(folder) and any(n.startswith(".ckpt-") for n in os.listdir(folder))


def _wait_for_a_save(pid, folder, deadline):
    """Polls until a staging folder of a save appears (or the child ends, or the deadline)."""
    while time.perf_counter() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return done, status
        if _saving(folder):
            break
        time.sleep(0.0005)
    return 0, 0


def _results(workdir):
    with open(os.path.join(workdir, "results.json")) as handle:
        return {k: v for k, v in json.load(handle).items() if k not in MACHINE_DEPENDENT}


def main(data_folder, base, kills, seed):
    config = tiny_config(data_folder, "sparcl_derpp", data__num_tasks=2,
                         checkpoint__every_steps=1, log__tensorboard=False)
    reference_dir = os.path.join(base, "reference")
    started = time.perf_counter()
    pid = _child(config, reference_dir)
    if os.waitpid(pid, 0)[1] != 0:
        raise SystemExit("the uninterrupted run failed")
    duration = time.perf_counter() - started  # start-up (data, model, tracing) and training
    reference = _results(reference_dir)
    rng = random.Random(seed)
    summary = {"kills": 0, "kills_inside_a_save": 0, "runs": 0, "equal_runs": 0, "failures": 0}
    while summary["kills"] < kills:
        workdir = os.path.join(base, f"killed_{summary['runs']}")
        while True:
            pid = _child(config, workdir)
            if summary["kills"] >= kills:  # enough: let this one finish
                status = os.waitpid(pid, 0)[1]
                break
            if summary["kills"] % 2:  # every other kill: the moment a save has begun
                time.sleep(0.5 * duration)
                done, status = _wait_for_a_save(pid, os.path.join(workdir, "checkpoints"),
                                                deadline=time.perf_counter() + duration)
            else:  # the others: anywhere, start-up included
                time.sleep(rng.uniform(0.3, 0.9) * duration)
                done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            summary["kills"] += 1
            summary["kills_inside_a_save"] += _saving(os.path.join(workdir, "checkpoints"))
        summary["failures"] += status != 0
        summary["runs"] += 1
        summary["equal_runs"] += status == 0 and _results(workdir) == reference
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
