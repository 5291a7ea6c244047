"""The two session hosts side by side: one converted model's session run by the Python LiteRT
host and by the Kotlin session on the JVM."""

import json
import os
import subprocess
import sys
import time

from sparcl_tf.cli import app as cli
from sparcl_tf.cli.benchmark.report import write_report


# The session the host comparison runs (the Kotlin parity test's: tests/test_android_session.py).
SESSION_SIZE = {"data.num_tasks": 3, "data.train_per_task": 300, "data.test_per_task": 100,
                "epochs_per_task": 1}

def host_session_times(workdir, config_file, repeats):
    """One converted SparCL-DER++ 0.90 session (SESSION_SIZE) run by the Python LiteRT host
    (tools.ondevice) and by the Kotlin session on the JVM (tflite/android/session.sh), each in
    its own process, interleaved repeats: medians of the ms per train call as each host times it
    and of the whole process's wall-clock (start-up, data, evaluation included)."""
    import statistics
    import tempfile

    model_dir = os.path.join(workdir, "session_model")
    model = os.path.join(model_dir, "model.tflite")
    if not os.path.exists(os.path.join(model_dir, "task_data.npz")):
        subprocess.run([sys.executable, "-m", "sparcl_tf.cli.convert", f"--workdir={model_dir}",
                        f"--config={config_file}:sparcl_derpp_90", "--state=initial",
                        "--task_data", *[f"--config.{k}={v}" for k, v in SESSION_SIZE.items()]],
                       check=True, capture_output=True)
    subprocess.run(["bash", "tflite/android/build.sh"], check=True, capture_output=True)
    commands = {
        "Python LiteRT session": lambda state: [
            sys.executable, "-m", "sparcl_tf.cli.ondevice", f"--model={model}",
            f"--workdir={state}", "--quiet"],
        "Kotlin session (JVM)": lambda state: [
            "bash", "tflite/android/session.sh", f"--model={model}",
            f"--data={model_dir}/task_data.npz", f"--state_dir={state}"],
    }
    runs = {label: [] for label in commands}
    for _ in range(repeats):
        for label, command in commands.items():
            state = tempfile.mkdtemp(prefix="sparcl_host_")
            started = time.perf_counter()
            child = subprocess.Popen(command(state), stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
            _, status, usage = os.wait4(child.pid, 0)
            wall = time.perf_counter() - started
            if os.waitstatus_to_exitcode(status) != 0:
                cli.fail(f"the {label} failed (exit {os.waitstatus_to_exitcode(status)})")
            with open(os.path.join(state, "results.json")) as handle:
                results = json.load(handle)
            runs[label].append((results["train_step_ms"], wall, results["steps"],
                                results["class_il"], usage.ru_maxrss / 1024.0))
    return {label: {"train_step_ms": statistics.median(r[0] for r in measured),
                    "wall_s": statistics.median(r[1] for r in measured),
                    "steps": measured[0][2], "class_il": measured[0][3],
                    "peak_rss_mib": max(r[4] for r in measured)}
            for label, measured in runs.items()}

def sessions_report(workdir, config_file, repeats):
    hosts = host_session_times(workdir, config_file, repeats)
    with open(os.path.join(workdir, "sessions.json"), "w") as handle:
        json.dump({"session": SESSION_SIZE, "hosts": hosts}, handle, indent=2)
    python = hosts["Python LiteRT session"]
    size = ", ".join(f"{k}={v}" for k, v in SESSION_SIZE.items())
    lines = [f"SparCL-DER++ 0.90 on Split Fashion-MNIST ({size}), one converted model, median "
             f"of {repeats} interleaved runs per host:", "",
             "| host | steps | class-IL | train call (ms) | vs Python | process wall-clock (s) | "
             "process peak RSS (MiB) |", "|---|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {label} | {h['steps']} | {h['class_il']:.2f} | {h['train_step_ms']:.1f} | "
              f"{h['train_step_ms'] / python['train_step_ms']:.2f}x | {h['wall_s']:.1f} | "
              f"{h['peak_rss_mib']:.0f} |" for label, h in hosts.items()]
    return write_report(workdir, "sessions.md", lines)
