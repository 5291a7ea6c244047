"""A whole continual-learning session driven through a training .tflite, as a phone app would.

The LiteRT step engine: the model does every weight update (`train`, `update_masks`); the one
task loop (`session.loop`) does what an app does, from the session plan the model was converted
with (signatures.json beside it, read back as an app reads it): task and example order, replay
from the host's reservoir buffer, data removal, mask updates with the plan's counts and seeds,
gradient-mask refreshes, evaluation through `infer`, checkpoints (the model's state included) and
the model state after every task in DIR/device_state/task_<t>.npz, as an app persists it.
"""

import json
import os

import ml_collections
import numpy as np

from sparcl_tf import results as run_results
from sparcl_tf.checkpoint import HostArray
from sparcl_tf.config import differing_fields, validate
from sparcl_tf.data import build_tasks, load_source
from sparcl_tf.errors import ConfigError, DataError
from sparcl_tf.engine import image_stream, sparse_units
from sparcl_tf.experiment import build_networks
from sparcl_tf.flops import FlopsLedger
from sparcl_tf.layers import channel_masks
from sparcl_tf.methods import build_method
from sparcl_tf.ondevice.device_model import DEFAULT_THREADS, DeviceModel
from sparcl_tf.session.loop import SessionLoop
from sparcl_tf.session.plan import SessionPlan, build_plan

MOMENTUM_PREFIX = "momentum__"


def read_plan(model_path):
    """The session plan in the signatures.json beside `model_path`, or None without one."""
    path = os.path.join(os.path.dirname(os.path.abspath(model_path)), "signatures.json")
    if not os.path.exists(path):
        return None
    try:
        with open(path) as handle:
            described = json.load(handle)
    except (OSError, ValueError) as error:
        raise DataError(f"cannot read {path}: {error}") from None
    if not isinstance(described, dict) or "session_plan" not in described:
        raise DataError(f"{path} has no session_plan: convert the run again with tools.convert")
    return SessionPlan.from_json(described["session_plan"])


# Config fields that say where the data is, where a run ran or how it reports, not what the model
# computes.
_LOCATION_FIELDS = ("data.dir", "data.path", "data.tfds_download", "log.", "checkpoint.",
                    "distribute.", "preset")


def baked_in_differences(config, run_config):
    """Dotted config fields whose values differ from the run config a model was converted with
    (learning rate, method weights, widths, ...: what its signatures compute with)."""
    return differing_fields(json.loads(config.to_json()), run_config, _LOCATION_FIELDS)


class LiteRTEngine:
    """The LiteRT step engine over a `DeviceModel`."""

    def __init__(self, device, layer_names, structured, full_filters, parameters, workdir):
        self.device, self.layer_names, self.workdir = device, layer_names, workdir
        self.structured, self.full_filters, self.parameters = structured, full_filters, parameters
        self.state = {name: HostArray(np.array(value))
                      for name, value in device.get_state().items()}
        self._momenta = [name for name in self.state if name.startswith(MOMENTUM_PREFIX)]

    def _mask_name(self, layer):
        return f"{layer}__mask" if not self.structured else self.structured[layer]

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
        state = self.device.get_state()
        return [int(np.count_nonzero(state[self._mask_name(n)])) for n in self.layer_names]

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
        """Exact zeros per sparse kernel (for a compacted model, the share of the full layer's
        filters that are not active), size and runtime."""
        state = self.device.get_state()
        if not self.structured:
            sparsity = {name: float(np.mean(state[f"{name}__kernel"] == 0))
                        for name in self.layer_names}
        else:
            sparsity = {name: 1.0 - float(state[self.structured[name]].sum())
                        / self.full_filters[name] for name in self.layer_names}
        return {"layer_sparsity": sparsity, "parameters": self.parameters, "runtime": "litert",
                "model_file": os.path.abspath(self.device.path)}


class OnDeviceSession:
    """Runs the task stream through the model at `model_path`, living in `workdir`.

    `config` supplies the task stream; without one, the run config recorded in the model's
    session plan does. The session follows the plan in signatures.json beside the model; a config
    whose plan differs from it is refused (the model was converted for another session).
    `trace` receives the session's records (`session.trace`).
    """

    def __init__(self, model_path, config, workdir, verbose=1, trace=None,
                 threads=DEFAULT_THREADS):
        self.device = DeviceModel(model_path, threads)
        file_plan = read_plan(model_path)
        if config is None:
            if file_plan is None or not file_plan.run_config:
                raise ConfigError(f"no --config and no session plan with its run config beside "
                                  f"{model_path}")
            config = ml_collections.ConfigDict(file_plan.run_config)
        self.config = validate(config)
        if file_plan is not None and file_plan.run_config:
            differing = baked_in_differences(config, file_plan.run_config)
            if differing:
                raise ConfigError(f"{model_path} was converted with other values of "
                                  f"{differing[:6]} (its train step holds them); convert this "
                                  f"config with tools.convert, or drop --config")
        self.workdir = workdir
        self.tasks = build_tasks(load_source(config.data), config.data, config.seed)
        self.method = build_method(config.method)
        # The Keras network is built for its layer names, sizes and FLOPs only.
        network, full, self.full_filters = build_networks(config, self.tasks)
        structured = {group.producer: f"{group.name}__mask" for group in
                      channel_masks(network)} if self.full_filters is not None else None
        units = sparse_units(network, self.full_filters)
        self.layer_names = [name for name, _ in units]
        self._check_model(units)
        stream = image_stream(self.method, self.tasks)
        plan = build_plan(config, self.tasks,
                          [len(stream.training(t)[2]) for t in range(len(self.tasks))], units,
                          self.full_filters, self.device.replay_draws)
        if file_plan is not None:
            differing = plan.differences(file_plan)
            if differing:
                raise ConfigError(f"{model_path} was converted for another session plan "
                                  f"(fields {differing}); convert this config with tools.convert")
            plan = file_plan  # what an app does: follow the plan in the file
        self.plan = plan
        self.engine = LiteRTEngine(
            self.device, self.layer_names, structured, self.full_filters,
            int(sum(np.prod(v.shape) for v in network.trainable_variables)), workdir)
        identity = run_results.identity(config, self.method, self.tasks)
        self.session = SessionLoop(plan, self.engine, stream, self.config, workdir, identity,
                                   ledger=FlopsLedger(network, full), verbose=verbose,
                                   trace=trace)

    @property
    def progress(self):
        return self.session.progress

    def _check_model(self, units):
        """The model must have been converted for this config: one ConfigError naming each gap."""
        config, device = self.config, self.device
        sizes = dict(units)
        expected = {
            "image shape": (device.image_shape, tuple(self.tasks.image_shape)),
            "classes": (device.num_classes, self.tasks.num_classes),
            "batch_size": (device.batch_size, config.batch_size),
            "replay draws": (device.replay_draws,
                             self.method.replay_draws if self.method.uses_buffer else 0),
            "DGM (refresh_gradient_masks input)": (device.has_gradient_masks,
                                                   bool(config.dgm.enabled)),
            "update_masks signature": ("update_masks" in device.signatures,
                                       config.sparsity.schedule in ("tdm", "rigl")),
        }
        if self.full_filters is None:
            expected["sparse layer masks"] = (
                [name for name in self.layer_names
                 if int(np.prod(device.state_spec.get(f"{name}__mask", ((0,), None))[0]))
                 == sizes[name]], self.layer_names)
        if device.replay_draws:
            expected["replay.batch_size"] = (device.replay_batch_size, config.replay.batch_size)
        gaps = [f"{what}: model {got}, config {want}" for what, (got, want) in expected.items()
                if got != want]
        if gaps:
            raise ConfigError(f"{device.path} was converted for another config ({'; '.join(gaps)})"
                              f"; convert this config with tools.convert")

    def run(self, stop_after_task=None):
        """Trains the remaining tasks (or up to `stop_after_task`); writes results.json and plots
        when the stream is done and returns the results (None when stopped early)."""
        return self.session.run(stop_after_task, label="LiteRT")
