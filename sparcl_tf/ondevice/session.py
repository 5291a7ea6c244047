"""A whole continual-learning session driven through a training .tflite, as a phone app would.

The LiteRT step engine: the model does every weight update (`train`, `update_masks`); the one
task loop (`session.loop`) does what an app does, from the session plan the model was converted
with (signatures.json beside it, read back as an app reads it): task and example order, replay
from the host's reservoir buffer, data removal, mask updates with the plan's counts and seeds,
gradient-mask refreshes, evaluation through `infer`, checkpoints (the model's state included) and
the model state after every task in DIR/device_state/task_<t>.npz, as an app persists it.
"""

import json

import ml_collections
import numpy as np

from sparcl_tf.reporting import results as run_results
from sparcl_tf.config import differing_fields, validate
from sparcl_tf.data import build_tasks, load_source
from sparcl_tf.errors import ConfigError, DataError
from sparcl_tf.engines.keras import image_stream, session_plan
from sparcl_tf.engines.litert import LiteRTEngine
from sparcl_tf.reporting.flops import FlopsLedger
from sparcl_tf.methods import build_method
from sparcl_tf.models.networks import build_networks
from sparcl_tf.ondevice.device_model import DEFAULT_THREADS, DeviceModel, read_signatures
from sparcl_tf.ondevice.task_data import read_task_data
from sparcl_tf.session.loop import SessionLoop
from sparcl_tf.session.plan import SessionPlan

def read_plan(model_path):
    """The session plan in the signatures.json beside `model_path`, or None without one."""
    described = read_signatures(model_path)
    if described is None:
        return None
    if "session_plan" not in described:
        raise DataError(f"the signatures.json beside {model_path} has no session_plan: convert "
                        f"the run again with tools.convert")
    return SessionPlan.from_json(described["session_plan"])


# Config fields that say where the data is, where a run ran or how it reports, not what the model
# computes.
_LOCATION_FIELDS = ("data.dir", "data.path", "data.tfds_download", "log.", "checkpoint.",
                    "distribute.", "preset")


def baked_in_differences(config, run_config):
    """Dotted config fields whose values differ from the run config a model was converted with
    (learning rate, method weights, widths, ...: what its signatures compute with)."""
    return differing_fields(json.loads(config.to_json()), run_config, _LOCATION_FIELDS)


class OnDeviceSession:
    """Runs a task stream through the model at `model_path`, living in `workdir`, following the
    session plan in signatures.json beside the model, as an app does.

    The tasks come from `data` (a task-data .npz, `ondevice.task_data`: tasks of any size the
    model has never seen, trained under the model's own plan and run config), or from `config`'s
    data set (the reference experiment; without `config`, the run config recorded in the plan):
    a config whose plan differs from the file's is refused (the model was converted for another
    session). `trace` receives the session's records (`session.trace`).
    """

    def __init__(self, model_path, config, workdir, verbose=1, trace=None,
                 threads=DEFAULT_THREADS, data=None):
        self.device = DeviceModel(model_path, threads)
        file_plan = read_plan(model_path)
        if data is not None:
            if config is not None:
                raise ConfigError("--data trains the file's tasks under the model's own session "
                                  "plan and run config: drop --config")
            if file_plan is None or not file_plan.run_config or not file_plan.model:
                raise ConfigError(f"--data needs the session plan beside {model_path} "
                                  f"(signatures.json); convert the model again")
            self.config = validate(ml_collections.ConfigDict(file_plan.run_config))
            self.plan, self.tasks = file_plan, read_task_data(data, file_plan)
            self.method = build_method(self.config.method)
        else:
            self.config = self._config(model_path, config, file_plan)
            self.tasks = build_tasks(load_source(self.config.data), self.config.data,
                                     self.config.seed)
            self.method = build_method(self.config.method)
            self.plan = self._plan_of_config(model_path, file_plan)
        self._check_model()
        self.workdir, self.layer_names = workdir, list(self.plan.sparse_layers)
        self.engine = LiteRTEngine(self.device, self.plan, self.config, workdir)
        self.session = SessionLoop(
            self.plan, self.engine, image_stream(self.method, self.tasks), self.config, workdir,
            run_results.identity(self.config, self.method, self.tasks),
            ledger=FlopsLedger(self.plan.model["flops"]), verbose=verbose, trace=trace)

    @staticmethod
    def _config(model_path, config, file_plan):
        """`config`, or the plan's run config; refused where the model's train step holds other
        values."""
        if config is None:
            if file_plan is None or not file_plan.run_config:
                raise ConfigError(f"no --config and no session plan with its run config beside "
                                  f"{model_path}")
            config = ml_collections.ConfigDict(file_plan.run_config)
            if config.data.source == "arrays":
                raise ConfigError(f"{model_path} was exported by a ContinualLearner, whose data "
                                  f"the model does not name: give the tasks with --data=FILE.npz")
        config = validate(config)
        if file_plan is not None and file_plan.run_config:
            differing = baked_in_differences(config, file_plan.run_config)
            if differing:
                raise ConfigError(f"{model_path} was converted with other values of "
                                  f"{differing[:6]} (its train step holds them); convert this "
                                  f"config with tools.convert, or drop --config")
        return config

    def _plan_of_config(self, model_path, file_plan):
        """The config's plan (its Keras network built for layer names, sizes and FLOPs only);
        the file's where it has one, which must agree."""
        network, kind = build_networks(self.config, self.tasks)
        plan = session_plan(self.config, self.tasks, network, kind, self.method)
        if file_plan is None:
            return plan
        differing = plan.differences(file_plan)
        if differing:
            raise ConfigError(f"{model_path} was converted for another session plan "
                              f"(fields {differing}); convert this config with tools.convert")
        return file_plan  # what an app does: follow the plan in the file

    @property
    def progress(self):
        return self.session.progress

    def _check_model(self):
        """The model must take the plan's inputs: one ConfigError naming each gap."""
        plan, device = self.plan, self.device
        masks = plan.model["unit_masks"]
        expected = {
            "image shape": (device.image_shape, tuple(plan.image_shape)),
            "classes": (device.num_classes, plan.num_classes),
            "batch_size": (device.batch_size, plan.batch_size),
            "replay draws": (device.replay_draws, plan.replay["draws"]),
            "DGM (refresh_gradient_masks input)": (device.has_gradient_masks,
                                                   plan.dgm_refresh_every > 0),
            "update_masks signature": ("update_masks" in device.signatures,
                                       plan.schedule["mask_rule"] != "none"),
            "sparse layer masks": ([int(np.prod(device.state_spec.get(mask, ((0,), None))[0]))
                                    for mask in masks], list(plan.layer_units)),
        }
        if device.replay_draws:
            expected["replay.batch_size"] = (device.replay_batch_size,
                                             plan.replay["batch_size"])
        gaps = [f"{what}: model {got}, plan {want}" for what, (got, want) in expected.items()
                if got != want]
        if gaps:
            raise ConfigError(f"{device.path} was converted for another session "
                              f"({'; '.join(gaps)}); convert this config with tools.convert")

    def run(self, stop_after_task=None):
        """Trains the remaining tasks (or up to `stop_after_task`); writes results.json and plots
        when the stream is done and returns the results (None when stopped early)."""
        return self.session.run(stop_after_task, label="LiteRT")
