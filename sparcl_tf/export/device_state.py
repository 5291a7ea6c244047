"""A run handed between host and device: the state folder a `DeviceLearner` opens, written from a
Keras session at a task boundary, so a phone continues where the host stopped without forgetting;
and back, a device's folder read into a Keras learner to evaluate it, inspect its masks or strip
it (and go on training on the host).

The folder is the device learner's own (`ondevice.learner`): a session checkpoint whose variables
are the exported model's state (`device/<name>`: what `get_state` returns, with the last kernel
gradients TDM's next importance reads), the replay buffer, the example statistics and the FLOPs
ledger, the host's progress (tasks, steps, accuracy matrices), and the task record (classes,
sizes, test sets) for the accuracy matrix of later tasks.
"""

import dataclasses
import os

import numpy as np

from sparcl_tf.checkpoint import CheckpointManager
from sparcl_tf.errors import CheckpointError, ExportError
from sparcl_tf.ondevice.device_model import DeviceModel
from sparcl_tf.ondevice.task_record import TaskRecord, keep_plan, read_kept_plan


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


def read_device_state(state_dir, session, network, last_gradients):
    """Loads the device learner's folder `state_dir` (between tasks) into a Keras `session` over
    `network` (the architecture the device's model was exported from; its variables matched by
    position to the plan's): weights, masks and BN statistics, `last_gradients` (sparse layer
    name -> variable, in the plan's order), buffer, statistics, ledger and progress. Returns the
    task record. CheckpointError, with nothing changed, for a folder of another model or config,
    or one in the middle of a task."""
    manager = CheckpointManager(os.path.join(state_dir, "checkpoints"), {})
    folder = manager.latest()
    if folder is None:
        raise CheckpointError(f"{state_dir} holds no device state (no checkpoints/)")
    arrays, host_state = CheckpointManager._read(folder)
    progress = type(session.progress).from_checkpoint(host_state, folder)
    if progress.config_hash != session.progress.config_hash:
        raise CheckpointError(f"{state_dir} was learned under another config (method, sparsity, "
                              f"schedule, ...) than this learner's; make the learner with the "
                              f"settings the model was exported with")
    if progress.epoch or progress.epoch_order is not None:
        raise CheckpointError(f"{state_dir} is in the middle of task {progress.task + 1}; finish "
                              f"it on the device first")
    plan = read_kept_plan(state_dir)
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
