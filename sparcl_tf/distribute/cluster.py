"""Making a strategy's devices and cluster: logical devices for mirrored replicas, TF_CONFIG
read and checked (every address resolves, this process can listen on its own), the bounded
start-up of a multi-worker cluster, and local clusters for tests and the benchmark."""

import contextlib
import json
import os
import socket
import subprocess
import sys

import tensorflow as tf

from sparcl_tf import errors
from sparcl_tf.errors import ClusterError, ConfigError


def use_devices(count, multi_worker):
    """Mirrored device names for `count` replicas on this machine: its first `count` GPUs, or
    `count` logical CPU devices when it has none (set before TensorFlow starts its runtime)."""
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        count = count or len(gpus)
        if count > len(gpus):
            raise ConfigError(f"distribute.devices={count} is invalid: this machine has "
                              f"{len(gpus)} GPUs")
        if multi_worker:
            tf.config.set_visible_devices(gpus[:count], "GPU")
        return [f"/gpu:{index}" for index in range(count)]
    count = count or 1
    if multi_worker and count > 1:
        raise ConfigError(f"distribute.devices={count} is invalid for multi_worker without GPUs: "
                          f"a worker has one CPU replica (use more workers)")
    if count > 1:
        cpu = tf.config.list_physical_devices("CPU")[0]
        try:
            tf.config.set_logical_device_configuration(
                cpu, [tf.config.LogicalDeviceConfiguration()] * count)
        except RuntimeError:  # the runtime already started: fine if it has the devices
            if len(tf.config.list_logical_devices("CPU")) != count:
                raise ConfigError(f"distribute.devices={count} needs {count} logical CPU devices, "
                                  f"which must be set before TensorFlow runs its first op; this "
                                  f"process already runs with "
                                  f"{len(tf.config.list_logical_devices('CPU'))} (start a new "
                                  f"process)") from None
    return [f"/cpu:{index}" for index in range(count)]


def cluster_from_environment():
    """The cluster TF_CONFIG names, checked: {'cluster': {...}, 'task': {'type', 'index'}}."""
    text = os.environ.get("TF_CONFIG", "")
    hint = ("distribute.strategy=multi_worker needs TF_CONFIG in the environment, e.g. "
            "'{\"cluster\": {\"worker\": [\"host1:port\", \"host2:port\"]}, \"task\": {\"type\": "
            "\"worker\", \"index\": 0}}'")
    try:
        spec = json.loads(text)
    except ValueError:
        raise ConfigError(f"{hint}; it is {'unset' if not text else 'not JSON'}") from None
    cluster = spec.get("cluster") if isinstance(spec, dict) else None
    task = spec.get("task") if isinstance(spec, dict) else None
    if not (isinstance(cluster, dict) and cluster and all(
            isinstance(v, list) and v and all(isinstance(a, str) for a in v)
            for v in cluster.values()) and isinstance(task, dict)
            and task.get("type") in cluster and isinstance(task.get("index"), int)
            and 0 <= task["index"] < len(cluster[task["type"]])):
        raise ConfigError(f"{hint}; it is {text[:200]}")
    return spec


def check_addresses(spec):
    """ClusterError for a TF_CONFIG address that is not host:port or does not resolve, or an
    own address this process cannot listen on: TensorFlow would wait for ever, silently."""
    for kind, addresses in spec["cluster"].items():
        for index, address in enumerate(addresses):
            host, _, port = address.rpartition(":")
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ClusterError(f"TF_CONFIG {kind} {index}'s address {address!r} is not "
                                   f"host:port")
            try:
                socket.getaddrinfo(host.strip("[]"), int(port), type=socket.SOCK_STREAM)
            except socket.gaierror as error:
                raise ClusterError(f"TF_CONFIG {kind} {index}'s address {address} does not "
                                   f"resolve: {error.strerror}") from None
    task = spec["task"]
    own = spec["cluster"][task["type"]][task["index"]]
    host, _, port = own.rpartition(":")
    family = socket.getaddrinfo(host.strip("[]"), int(port), type=socket.SOCK_STREAM)[0][0]
    probe = socket.socket(family, socket.SOCK_STREAM)
    try:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((host.strip("[]"), int(port)))
    except OSError as error:
        raise ClusterError(f"this process ({task['type']} {task['index']} of TF_CONFIG) cannot "
                           f"listen on its address {own}: {error.strerror}") from None
    finally:
        probe.close()


# The start-up watcher, a separate process: TensorFlow holds the GIL while it waits for the
# cluster, so no thread of this one can time the wait out, and its coordination service takes
# SIGTERM. The watcher ends quietly when the pipe from its parent closes (the cluster formed, or
# the parent ended); at the deadline it prints the parent's one error line and kills it, and a
# SIGTERM to the process group (what a scheduler or a terminal sends) kills it at once.
_WATCHER = """
import os, select, signal, sys
parent, seconds, message = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
def stop(*_):
    os.kill(parent, signal.SIGKILL)
    os._exit(0)
signal.signal(signal.SIGTERM, stop)  # a SIGTERM to the group: the parent's is taken by TF
if not select.select([sys.stdin], [], [], seconds)[0]:
    os.write(2, message.encode())
    stop()
"""


@contextlib.contextmanager
def start_up_deadline(spec, seconds):
    """Kills this process with one line on stderr when the body (the strategy's start, which
    returns once every worker has joined) takes longer than `seconds`."""
    task = spec["task"]
    peers = [address for kind, addresses in spec["cluster"].items()
             for index, address in enumerate(addresses) if (kind, index) != (task["type"],
                                                                           task["index"])]
    message = (f"error: the cluster did not form within distribute.startup_timeout_s="
               f"{seconds:g} s: not every one of {peers} joined\n")
    try:  # the real stderr of a binary; a stand-in without a descriptor (pytest's) passes ours
        output = errors.error_output.fileno()
    except (AttributeError, OSError, ValueError):
        output = None
    watcher = subprocess.Popen([sys.executable, "-c", _WATCHER, str(os.getpid()), str(seconds),
                                message], stdin=subprocess.PIPE, stderr=output)
    try:
        yield
    finally:
        watcher.stdin.close()
        watcher.wait()


def local_cluster(workers, host="127.0.0.1"):
    """TF_CONFIG values for `workers` processes on this machine, on ports free now."""
    sockets = []
    for _ in range(workers):
        probe = socket.socket()
        probe.bind((host, 0))
        sockets.append(probe)
    addresses = [f"{host}:{probe.getsockname()[1]}" for probe in sockets]
    for probe in sockets:
        probe.close()
    return [json.dumps({"cluster": {"worker": addresses}, "task": {"type": "worker",
                                                                   "index": index}})
            for index in range(workers)]
