"""The TFLM engine: a session's steps run by the microcontroller head's train model in TFLite
Micro, its parameters held on the host (a board holds them in RAM and flash)."""

import numpy as np

from sparcl_tf.checkpoint import HostArray
from sparcl_tf.micro.head import HEAD_LAYER, INFER_OUTPUTS, PARAMETERS, TRAIN_OUTPUTS
from sparcl_tf.micro.runtime import LiteModel, MicroModel
from sparcl_tf.session.engine import Engine
from sparcl_tf.sparsity.tdm import prune_and_grow


class MicroHeadEngine(Engine):
    """The TFLM step engine: one head's parameters on the host, each step one call of the head's
    train model in TFLM (the first `compare_steps` of a task also in LiteRT, for the record)."""

    def __init__(self, head, models, arena_bytes, params, mask, importance_lambda, rule, grow,
                 compare_steps):
        self.head, self.models = head, models
        self.train_model = MicroModel(models["train"], TRAIN_OUTPUTS, arena_bytes["train"])
        self.infer_model = MicroModel(models["infer"], INFER_OUTPUTS, arena_bytes["infer"])
        self.lite_train = LiteModel(models["train"], TRAIN_OUTPUTS)
        self.layer_names = [HEAD_LAYER]
        self.params, self.mask = params, mask
        self.gradient_mask = np.ones_like(mask)
        self.last_gradient = np.zeros_like(mask)
        self.importance_lambda, self.rule, self.grow = importance_lambda, rule, grow
        self.compare_steps, self.compared_steps, self.max_loss_difference = compare_steps, 0, 0.0
        self._compared_in_task = 0

    def begin_task(self, task_index, reset_optimizer):
        self._compared_in_task = 0  # plain SGD: no optimizer state to reset

    def train(self, inputs, refresh):
        classes = self.head.classes
        head_inputs = dict(features=inputs["images"],
                           labels_onehot=np.eye(classes, dtype=np.float32)[inputs["labels"]],
                           class_mask=inputs["class_mask"], refresh=np.float32(refresh),
                           learning_rate=inputs["learning_rate"],
                           mask=self.mask, gradient_mask=self.gradient_mask, **self.params)
        if self.head.replay_draws:
            head_inputs.update(
                replay_features=inputs["replay_images"],
                replay_onehot=np.eye(classes, dtype=np.float32)[inputs["replay_labels"]],
                replay_logits=inputs["replay_logits"], replay_weight=inputs["replay_weight"])
        out = self.train_model(**head_inputs)
        if self._compared_in_task < self.compare_steps:
            lite = self.lite_train(**head_inputs)
            self.max_loss_difference = max(self.max_loss_difference, abs(
                float(lite["loss"]) - float(out["loss"])) / max(abs(float(out["loss"])), 1e-12))
            self.compared_steps += 1
            self._compared_in_task += 1
        for key in PARAMETERS:
            self.params[key][...] = out[f"new_{key}"]
        self.gradient_mask[...] = out["new_gradient_mask"]
        self.last_gradient[...] = out["gradient_w1"]
        return {"loss": out["loss"], "logits": out["logits"], "correct": out["correct"],
                "gradient_density": [float(np.mean(self.mask * self.gradient_mask))]}

    def update_masks(self, prune_to, grow_to, seed):
        pruned, grown = prune_and_grow(
            self.params["w1"], self.mask, self.last_gradient, prune_to[0], grow_to[0], seed, 0,
            rule=self.rule, grow=self.grow, importance_lambda=self.importance_lambda)
        self.params["w1"][...] = self.params["w1"] * pruned  # grown weights start at exactly 0
        self.mask[...] = grown
        return [int(grown.sum())]

    def active_units(self):
        return [int(self.mask.sum())]

    def logits(self, features):
        batch, logits = self.head.batch_size, []
        for start in range(0, len(features), batch):
            chunk = features[start:start + batch]
            padded = np.zeros((batch, self.head.features), np.int8)
            padded[:len(chunk)] = chunk
            logits.append(self.infer_model(features=padded, mask=self.mask, **self.params)[
                "logits"][:len(chunk)])
        return np.concatenate(logits)

    def variables(self):
        arrays = {**self.params, "mask": self.mask, "gradient_mask": self.gradient_mask,
                  "last_gradient": self.last_gradient}
        return {f"head/{name}": HostArray(array) for name, array in arrays.items()}

    def results(self):
        return {"layer_sparsity": {HEAD_LAYER: float(np.mean(self.params["w1"] == 0))},
                "mask_sparsity": {HEAD_LAYER: float(1.0 - self.mask.mean())}}
