"""A converted training .tflite in the LiteRT interpreter: checked on load, called by signature.

Everything a host app does with the model goes through here: validation of the file and of its
signatures against what the session needs, fixed-batch padding for `infer`, and state files
(`get_state` outputs as .npz, written atomically, checked name by name before `set_state`).
"""

import json
import os

import numpy as np

from sparcl_tf.errors import DataError, import_extra
from sparcl_tf.export.audit import op_audit
from sparcl_tf.export import model_file

REQUIRED_SIGNATURES = ("infer", "train", "get_state", "set_state")
# Interpreter threads: the train step is mostly BATCH_MATMUL (builtin_gradients), which LiteRT
# spreads over threads (1.5x faster at 2 than at 1 here; the interpreter's own default is 1).
DEFAULT_THREADS = 2


def read_signatures(model_path):
    """The signatures.json beside `model_path` (a dict), or None without one."""
    path = os.path.join(os.path.dirname(os.path.abspath(model_path)), "signatures.json")
    if not os.path.exists(path):
        return None
    try:
        with open(path) as handle:
            described = json.load(handle)
    except (OSError, ValueError) as error:
        raise DataError(f"cannot read {path}: {error}") from None
    if not isinstance(described, dict):
        raise DataError(f"{path} is not a signatures file: convert the run again")
    return described


class DeviceModel:
    def __init__(self, path, threads=DEFAULT_THREADS):
        Interpreter = import_extra("ai_edge_litert.interpreter", "litert").Interpreter
        try:
            with open(path, "rb") as handle:
                content = handle.read()
        except OSError as error:
            raise DataError(f"cannot read model {path}: {error.strerror}") from None
        model_file.verify(content, (read_signatures(path) or {}).get("model_sha256"), path)
        audit = op_audit(content)
        missing = [key for key in REQUIRED_SIGNATURES if key not in audit]
        if missing:
            raise DataError(f"{path} lacks the signatures {missing} (has {sorted(audit)}); "
                            f"convert the run with tools.convert")
        flex = sorted({op for key in REQUIRED_SIGNATURES for op in audit[key]["flex_ops"]})
        if flex:
            raise DataError(f"{path} needs Select-TF ops {flex}, which this interpreter lacks")
        try:
            self._interpreter = Interpreter(model_content=content, num_threads=int(threads))
            self._runners = {key: self._interpreter.get_signature_runner(key)
                             for key in audit}
        except (RuntimeError, ValueError) as error:
            raise DataError(f"LiteRT cannot load {path}: {error}") from None
        self.path = path
        self.signatures = set(audit)
        infer = self._runners["infer"].get_input_details()["images"]
        self.batch_size = int(infer["shape"][0])
        self.image_shape = tuple(int(d) for d in infer["shape"][1:])
        self.train_inputs = {name: (tuple(int(d) for d in detail["shape"]), detail["dtype"])
                             for name, detail in self._runners["train"].get_input_details()
                             .items()}
        self.state_spec = {name: (tuple(int(d) for d in detail["shape"]), detail["dtype"])
                           for name, detail in self._runners["set_state"].get_input_details()
                           .items()}

    @property
    def num_classes(self):
        return self.train_inputs["class_mask"][0][0]

    @property
    def replay_draws(self):
        return self.train_inputs["replay_images"][0][0] if "replay_images" in self.train_inputs \
            else 0

    @property
    def replay_batch_size(self):
        return self.train_inputs["replay_images"][0][1] if self.replay_draws else 0

    @property
    def has_gradient_masks(self):
        return "refresh_gradient_masks" in self.train_inputs

    def infer(self, images):
        """Logits of any number of images (padded to the signature's fixed batch)."""
        batch, outputs = self.batch_size, []
        for start in range(0, len(images), batch):
            chunk = images[start:start + batch]
            padded = np.zeros((batch,) + self.image_shape, np.float32)
            padded[:len(chunk)] = chunk
            outputs.append(self._runners["infer"](images=padded)["logits"][:len(chunk)])
        return np.concatenate(outputs) if outputs else np.zeros((0, self.num_classes),
                                                                np.float32)

    def train(self, **inputs):
        return self._runners["train"](**inputs)

    def update_masks(self, prune_to, grow_to, seed):
        if "update_masks" not in self.signatures:
            raise DataError(f"{self.path} has no update_masks signature: convert a run whose "
                            f"sparsity.schedule is tdm or rigl")
        return self._runners["update_masks"](
            prune_to=np.asarray(prune_to, np.int32), grow_to=np.asarray(grow_to, np.int32),
            seed=np.int32(seed))["active"]

    def get_state(self):
        return self._runners["get_state"](dummy=np.int32(0))

    def set_state(self, state):
        """Writes every variable; `state` must name each one with its shape and dtype."""
        missing = sorted(set(self.state_spec) - set(state))
        extra = sorted(set(state) - set(self.state_spec))
        if missing or extra:
            raise DataError(f"state does not match the model: missing {missing[:5]}"
                            f"{'...' if len(missing) > 5 else ''}, unknown {extra[:5]}"
                            f"{'...' if len(extra) > 5 else ''}")
        for name, (shape, dtype) in self.state_spec.items():
            value = np.asarray(state[name])
            if value.shape != shape or value.dtype != dtype:
                raise DataError(f"state {name!r} is {value.dtype}{list(value.shape)}; the model "
                                f"needs {np.dtype(dtype)}{list(shape)}")
        self._runners["set_state"](**state)

    def save_state(self, path):
        """get_state's outputs to `path` (.npz), atomically."""
        temporary = path + ".tmp.npz"
        np.savez(temporary, **self.get_state())
        os.replace(temporary, path)

    def load_state(self, path):
        try:
            with np.load(path, allow_pickle=False) as archive:
                state = {name: archive[name] for name in archive.files}
        except (OSError, ValueError) as error:
            raise DataError(f"cannot read state file {path}: {error}") from None
        self.set_state(state)
