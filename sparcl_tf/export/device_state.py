"""A run handed between host and device: the state folder a `DeviceLearner` opens, written from a
Keras session at a task boundary, so a phone continues where the host stopped without forgetting;
and back, a device's folder (a Python device learner's, or a Kotlin one's state files) read into a
Keras learner to evaluate it, inspect its masks or strip it (and go on training on the host).

The folder is the device learner's own (`ondevice.learner`): a session checkpoint whose variables
are the exported model's state (`device/<name>`: what `get_state` returns, with the last kernel
gradients TDM's next importance reads), the replay buffer, the example statistics and the FLOPs
ledger, the host's progress (tasks, steps, accuracy matrices), and the task record (classes,
sizes, test sets) for the accuracy matrix of later tasks.
"""

import dataclasses
import json
import os

import numpy as np

from sparcl_tf.checkpoint import CheckpointManager
from sparcl_tf.errors import CheckpointError, ExportError
from sparcl_tf.ondevice.device_model import DeviceModel
from sparcl_tf.ondevice import kotlin_state
from sparcl_tf.ondevice.task_record import TaskRecord, keep_plan, read_kept_plan
from sparcl_tf.session.progress import RESUME_FREE_FIELDS


def _host_arrays(session):
    """The host session's buffer, statistics and ledger under the loop's checkpoint names."""
    arrays = {}
    for group, state in (("stats", session.stats.state()),
                         ("buffer", session.buffer.state() if session.buffer else {}),
                         ("ledger", session.ledger.state() if session.ledger else {})):
        arrays.update({f"{group}/{name}": np.asarray(v.numpy()) for name, v in state.items()})
    return arrays


def check_handover(state_dir, session):
    """ExportError, before anything is written, when `session` cannot be handed over into
    `state_dir`."""
    progress = session.progress
    if progress.epoch or progress.epoch_order is not None:
        raise ExportError(f"task {progress.task + 1} is in the middle; finish it before handing "
                          f"the run to a device")
    if os.path.isdir(state_dir) and os.listdir(state_dir):
        raise ExportError(f"{state_dir} is not empty: the device state goes into a new folder")


def write_device_state(state_dir, model_path, session, last_gradients):
    """The device learner's folder `state_dir` for the model at `model_path` (exported from the
    session's network), holding `session` (a `SessionLoop` between tasks, `check_handover`);
    `last_gradients`: sparse layer name -> its last kernel gradient."""
    check_handover(state_dir, session)
    progress = session.progress
    state = DeviceModel(model_path).get_state()
    for layer, gradient in last_gradients.items():
        name = f"last_gradient__{layer}"
        if name in state:
            state[name] = np.asarray(gradient, state[name].dtype)
    arrays = {f"device/{name}": value for name, value in state.items()}
    arrays.update(_host_arrays(session))
    keep_plan(state_dir, session.plan)
    record = TaskRecord(state_dir)
    stream = session.stream
    for task in stream.tasks.tasks[:progress.task]:
        x, y, ids = stream.training(task.index)
        record.add(task.classes, x, y, (task.x_test, task.y_test) if len(task.y_test) else None,
                   ids)
    CheckpointManager(os.path.join(state_dir, "checkpoints"), {}).save(
        progress.global_step, dataclasses.asdict(progress), arrays)
    return state_dir


def _by_value(tree):
    """A JSON tree with every number as a float and lists as tuples (values, not spellings)."""
    if isinstance(tree, dict):
        return {key: _by_value(value) for key, value in tree.items()}
    if isinstance(tree, (list, tuple)):
        return tuple(_by_value(value) for value in tree)
    if isinstance(tree, (int, float)) and not isinstance(tree, bool):
        return float(tree)
    return tree


def _deciding(config):
    """The fields of a config (as JSON) that decide what a run computes."""
    return {key: value for key, value in config.items() if key not in RESUME_FREE_FIELDS}


def _folder_contents(state_dir, session, plan, network):
    """(arrays, host state, where) of a device folder: a Python device learner's newest
    checkpoint, or a Kotlin learner's newest state file in the same names."""
    kotlin_file = kotlin_state.latest_state_file(state_dir)
    if kotlin_file is None:
        folder = CheckpointManager(os.path.join(state_dir, "checkpoints"), {}).latest()
        if folder is None:
            raise CheckpointError(f"{state_dir} holds no device state (no checkpoints/, no "
                                  f"state-<n>.bin)")
        arrays, host_state = CheckpointManager._read(folder)
        return arrays, host_state, folder
    if plan.unit != "weights":
        raise CheckpointError(f"{state_dir}: a Kotlin state of filter slots cannot be read on "
                              f"the host yet")
    arrays, host_state = kotlin_state.as_device_folder(
        kotlin_state.read_records(kotlin_file, plan.version), plan,
        [tuple(v.shape) for v in network.variables])
    # What the phone does not keep: FLOPs (counted from here on) and gradient densities.
    arrays.update({f"ledger/{name}": np.zeros((), np.float64)
                   for name in (session.ledger.state() if session.ledger else {})})
    # org.json writes 1.0 as 1: the run config the phone kept is compared by value, not by hash.
    same = _by_value(_deciding(plan.run_config)) == _by_value(_deciding(json.loads(
        session.config.to_json())))
    host_state.update(
        config_hash=session.progress.config_hash if same else "another",
        active=[int(np.count_nonzero(arrays[f"device/{mask}"]))
                for mask in plan.model["unit_masks"]],
        gradient_density_sum=[0.0] * len(plan.sparse_layers))
    return arrays, host_state, kotlin_file


def read_device_state(state_dir, session, network, last_gradients):
    """Loads the device learner's folder `state_dir` (between tasks) into a Keras `session` over
    `network` (the architecture the device's model was exported from; its variables matched by
    position to the plan's): weights, masks and BN statistics, `last_gradients` (sparse layer
    name -> variable, in the plan's order), buffer, statistics, ledger and progress. Returns the
    task record. CheckpointError, with nothing changed, for a folder of another model or config,
    or one in the middle of a task."""
    plan = read_kept_plan(state_dir)
    arrays, host_state, folder = _folder_contents(state_dir, session, plan, network)
    progress = type(session.progress).from_checkpoint(host_state, folder)
    if progress.config_hash != session.progress.config_hash:
        raise CheckpointError(f"{state_dir} was learned under another config (method, sparsity, "
                              f"schedule, ...) than this learner's; make the learner with the "
                              f"settings the model was exported with")
    if progress.epoch or progress.epoch_order is not None:
        raise CheckpointError(f"{state_dir} is in the middle of task {progress.task + 1}; finish "
                              f"it on the device first")
    names = plan.model["variables"]
    if len(names) != len(network.variables) or len(plan.sparse_layers) != len(last_gradients):
        raise CheckpointError(f"{state_dir} was learned with another model ({len(names)} "
                              f"variables, {len(plan.sparse_layers)} sparse layers; this one "
                              f"has {len(network.variables)} and {len(last_gradients)})")
    # by position: Keras numbers a user's layers per process, so the names may differ
    targets = {f"device/{name}": v for name, v in zip(names, network.variables)}
    targets.update({f"device/last_gradient__{name}": variable for name, variable in zip(
        plan.sparse_layers, last_gradients.values())})
    targets.update({f"{group}/{name}": holder for group, state in (
        ("stats", session.stats.state()),
        ("buffer", session.buffer.state() if session.buffer else {}),
        ("ledger", session.ledger.state() if session.ledger else {})) for name, holder in
        state.items()})
    missing = sorted(name for name in targets if name not in arrays)
    wrong = sorted(name for name, v in targets.items() if name in arrays and tuple(
        arrays[name].shape) != tuple(v.shape) and not getattr(v, "resizable", False))
    if missing or wrong:
        raise CheckpointError(f"{state_dir} holds another model's state: missing {missing[:4]}, "
                              f"other shapes {wrong[:4]}")
    record = TaskRecord(state_dir)
    if len(record.entries) != progress.task:
        raise CheckpointError(f"{state_dir}: tasks.json lists {len(record.entries)} tasks, the "
                              f"state {progress.task}")
    for name, variable in targets.items():  # the device keeps masks as bool, Keras as floats
        variable.assign(arrays[name].astype(np.asarray(variable.numpy()).dtype))
    session.progress = progress
    return record
