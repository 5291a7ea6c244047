"""A host run handed to the device: the state folder a `DeviceLearner` opens, written from a Keras
session at a task boundary, so a phone continues where the host stopped without forgetting.

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
from sparcl_tf.errors import ExportError
from sparcl_tf.ondevice.device_model import DeviceModel
from sparcl_tf.ondevice.task_record import TaskRecord


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
    record = TaskRecord(state_dir)
    stream = session.stream
    for task in stream.tasks.tasks[:progress.task]:
        x, y, ids = stream.training(task.index)
        record.add(task.classes, x, y, (task.x_test, task.y_test) if len(task.y_test) else None,
                   ids)
    CheckpointManager(os.path.join(state_dir, "checkpoints"), {}).save(
        progress.global_step, dataclasses.asdict(progress), arrays)
    return state_dir
