"""The LiteRT engine: a session's steps run by the exported training .tflite's signatures in the
LiteRT interpreter (`ondevice.device_model.DeviceModel`), its state mirrored on the host for the
loop's checkpoints."""

import os

import numpy as np

from sparcl_tf.checkpoint import HostArray
from sparcl_tf.session.engine import Engine
from sparcl_tf.sparsity.kind import described_kind

MOMENTUM_PREFIX = "momentum__"


class LiteRTEngine(Engine):
    """The LiteRT step engine over a `DeviceModel` that follows `plan` (its `model` names the
    unit masks, the parameters and the sparsity kind with the run's `config`)."""

    def __init__(self, device, plan, config, workdir):
        self.device, self.layer_names, self.workdir = device, list(plan.sparse_layers), workdir
        self.unit_masks, self.parameters = plan.model["unit_masks"], plan.model["parameters"]
        self.kind = described_kind(config, plan.model)
        self.state = {name: HostArray(np.array(value))
                      for name, value in device.get_state().items()}
        self._momenta = [name for name in self.state if name.startswith(MOMENTUM_PREFIX)]

    def begin_task(self, task_index, reset_optimizer):
        if reset_optimizer and self._momenta:  # a fresh optimizer per task
            state = self.device.get_state()
            self.device.set_state({name: np.zeros_like(value) if name in self._momenta
                                   else value for name, value in state.items()})

    def train(self, inputs, refresh):
        if self.device.has_gradient_masks:
            inputs = dict(inputs, refresh_gradient_masks=np.float32(refresh))
        return self.device.train(**inputs)

    def update_masks(self, prune_to, grow_to, seed):
        return self.device.update_masks(prune_to, grow_to, seed)

    def active_units(self):
        return self._active_units(self.device.get_state())

    def _active_units(self, state):
        return [int(np.count_nonzero(state[name])) for name in self.unit_masks]

    def logits(self, images):
        return self.device.infer(images)

    def variables(self):
        return {f"device/{name}": holder for name, holder in self.state.items()}

    def before_save(self):
        for name, value in self.device.get_state().items():
            self.state[name].assign(value)

    def after_restore(self):
        self.device.set_state({name: holder.numpy() for name, holder in self.state.items()})

    def end_task(self, task_index):
        folder = os.path.join(self.workdir, "device_state")
        os.makedirs(folder, exist_ok=True)
        self.device.save_state(os.path.join(folder, f"task_{task_index}.npz"))
        stale = os.path.join(folder, f"task_{task_index - 2}.npz")  # keep the last two
        if os.path.exists(stale):
            os.remove(stale)

    def results(self):
        state = self.device.get_state()
        sparsity = self.kind.layer_sparsity(
            self.layer_names, [state[f"{name}__kernel"] for name in self.layer_names],
            self._active_units(state))
        return {"layer_sparsity": sparsity, "parameters": self.parameters, "runtime": "litert",
                "model_file": os.path.abspath(self.device.path)}
