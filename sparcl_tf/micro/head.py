"""The trainable head of the microcontroller path, as stateless TFLM-compatible models.

TFLite Micro runs one subgraph per model and has no training kernels, no ONE_HOT, TOPK_V2 or
SELECT (v1), so the head is written out by hand in ops it does have:

  features (int8, from the frozen backbone) -> dequantise -> dense H (masked, sparse) -> ReLU
  -> dense C (dense) -> logits

`train_step` is one SGD step of the run's method on the head: current-batch CE over the classes in
class_mask plus the method's replay terms (DER++: alpha * MSE to the stored logits on draw 0,
beta * CE on draw 1; ER: CE; DER: MSE), scaled by replay_weight; labels come one-hot from the
host. Gradients are written by hand (no autodiff ops); the hidden kernel's gradient is
multiplied by the weight mask and the DGM gradient mask, which the step recomputes (16-step
threshold bisection, `sparsity.dgm`) when `refresh` is 1. Parameters go in and come out: the
model holds no variables, so the same bytes work in LiteRT, in TFLM and in the board's C code
(`tflite/micro/`), and the caller owns the state (a flash-sized blob on a board). `infer` is the
forward pass alone.
"""

import numpy as np
import tensorflow as tf

from sparcl_tf.methods.base import NEG_INF_LOGIT
from sparcl_tf.sparsity import dgm

PARAMETERS = ("w1", "b1", "w2", "b2")
# Outputs in subgraph order (a TFLM model's outputs are positional).
TRAIN_OUTPUTS = ("new_w1", "new_b1", "new_w2", "new_b2", "new_gradient_mask", "loss", "logits",
                 "correct", "gradient_w1")
INFER_OUTPUTS = ("logits",)
HEAD_LAYER = "head_hidden"  # the name TDM targets and the plan use for the head's sparse kernel


def dequantize(features, scale, zero_point):
    return (tf.cast(features, tf.float32) - float(zero_point)) * float(scale)


def _log_softmax(logits):
    # The max is a constant shift: stopping its gradient keeps the exact gradient and its ops out.
    shifted = logits - tf.stop_gradient(tf.reduce_max(logits, axis=1, keepdims=True))
    return shifted - tf.math.log(tf.reduce_sum(tf.exp(shifted), axis=1, keepdims=True))


class Head:
    """Shapes and hyper-parameters of a head: F features (int8, `scale`, `zero_point`), H hidden
    units, C classes; batch B; one replay draw of R examples per (kind, weight) replay term;
    `w1_rate_scale`: the sparse hidden kernel learns at the step's rate times this."""

    def __init__(self, features, hidden, classes, scale, zero_point, batch_size,
                 replay_batch_size, replay_terms, gradient_keep, w1_rate_scale=1.0):
        self.features, self.hidden, self.classes = features, hidden, classes
        self.scale, self.zero_point = float(scale), int(zero_point)
        self.batch_size, self.replay_batch_size = batch_size, replay_batch_size
        self.replay_terms = list(replay_terms)
        self.replay_draws = len(self.replay_terms)
        self.gradient_keep = gradient_keep  # entries of the hidden kernel a step updates (DGM)
        self.w1_rate_scale = float(w1_rate_scale)

    def parameter_shapes(self):
        return {"w1": (self.features, self.hidden), "b1": (self.hidden,),
                "w2": (self.hidden, self.classes), "b2": (self.classes,)}

    def initial_parameters(self, seed):
        """He-uniform kernels (Glorot for the output layer), zero biases, as Keras would."""
        rng = np.random.default_rng(seed)
        f, h, c = self.features, self.hidden, self.classes
        return {"w1": rng.uniform(-1, 1, (f, h)).astype(np.float32) * np.float32(np.sqrt(6 / f)),
                "b1": np.zeros(h, np.float32),
                "w2": rng.uniform(-1, 1, (h, c)).astype(np.float32) * np.float32(
                    np.sqrt(6 / (h + c))),
                "b2": np.zeros(c, np.float32)}

    # --- the math, on tensors --------------------------------------------------------------

    def _forward(self, x, p, mask):
        pre = tf.matmul(x, p["w1"] * mask) + p["b1"]
        hidden = tf.nn.relu(pre)
        return pre, hidden, tf.matmul(hidden, p["w2"]) + p["b2"]

    def _backward(self, x, pre, hidden, dlogits, p, mask):
        """Parameter gradients of a batch, given d loss / d logits."""
        g = {"w2": tf.matmul(hidden, dlogits, transpose_a=True),
             "b2": tf.reduce_sum(dlogits, axis=0)}
        dpre = tf.matmul(dlogits, p["w2"], transpose_b=True) * tf.cast(pre > 0, tf.float32)
        g["w1"] = tf.matmul(x, dpre, transpose_a=True)  # dense: importance and growth read it
        g["b1"] = tf.reduce_sum(dpre, axis=0)
        return g

    def train_step(self, features, labels_onehot, class_mask, replay_features, replay_onehot,
                   replay_logits, replay_weight, refresh, learning_rate, p, mask, gradient_mask):
        """-> (new parameters, new gradient mask, loss, logits, correct, dense hidden grad)."""
        x = dequantize(features, self.scale, self.zero_point)
        pre, hidden, logits = self._forward(x, p, mask)
        masked = logits + (1.0 - class_mask) * NEG_INF_LOGIT  # the trainer's CL mask
        log_p = _log_softmax(masked)
        batch = float(self.batch_size)
        loss = -tf.reduce_sum(labels_onehot * log_p) / batch
        dlogits = (tf.exp(log_p) - labels_onehot) / batch
        grads = self._backward(x, pre, hidden, dlogits, p, mask)
        for draw, (kind, weight) in enumerate(self.replay_terms):
            rx = dequantize(replay_features[draw], self.scale, self.zero_point)
            r_pre, r_hidden, r_logits = self._forward(rx, p, mask)
            if kind == "mse":  # DER: match the stored logits (mean over R x C entries)
                diff = r_logits - replay_logits[draw]
                count = float(self.replay_batch_size * self.classes)
                loss += replay_weight * weight * tf.reduce_sum(diff * diff) / count
                d_r = replay_weight * weight * 2.0 * diff / count
            else:  # CE on the stored labels (all classes)
                r_log_p = _log_softmax(r_logits)
                size = float(self.replay_batch_size)
                cross_entropy = -tf.reduce_sum(replay_onehot[draw] * r_log_p) / size
                loss += replay_weight * weight * cross_entropy
                d_r = replay_weight * weight * (tf.exp(r_log_p) - replay_onehot[draw]) / size
            replay_grads = self._backward(rx, r_pre, r_hidden, d_r, p, mask)
            grads = {k: grads[k] + replay_grads[k] for k in grads}

        active = mask
        recomputed = dgm.gradient_mask(grads["w1"] * active, self.gradient_keep, "bisection")
        gradient_mask = refresh * recomputed + (1.0 - refresh) * gradient_mask
        update = dict(grads, w1=grads["w1"] * active * gradient_mask)
        if self.w1_rate_scale != 1.0:
            update["w1"] = update["w1"] * self.w1_rate_scale
        new = {k: p[k] - learning_rate * update[k] for k in PARAMETERS}
        new["w1"] = new["w1"] * mask
        predicted = tf.argmax(logits, axis=1, output_type=tf.int32)
        true = tf.argmax(labels_onehot, axis=1, output_type=tf.int32)
        correct = tf.cast(tf.equal(predicted, true), tf.float32)
        return new, gradient_mask, loss, logits, correct, grads["w1"]

    def infer(self, features, p, mask):
        return self._forward(dequantize(features, self.scale, self.zero_point), p, mask)[2]

    # --- one model per entry point ---------------------------------------------------------

    def _specs(self, batch):
        shapes = self.parameter_shapes()
        return [tf.TensorSpec((batch, self.features), tf.int8, name="features")], [
            tf.TensorSpec(shapes[k], tf.float32, name=k) for k in PARAMETERS] + [
            tf.TensorSpec(shapes["w1"], tf.float32, name="mask")]

    def train_function(self):
        (features,), params = self._specs(self.batch_size)
        d, r, c = self.replay_draws, self.replay_batch_size, self.classes
        specs = [features, tf.TensorSpec((self.batch_size, c), tf.float32, name="labels_onehot"),
                 tf.TensorSpec((c,), tf.float32, name="class_mask")]
        if d:
            specs += [tf.TensorSpec((d, r, self.features), tf.int8, name="replay_features"),
                      tf.TensorSpec((d, r, c), tf.float32, name="replay_onehot"),
                      tf.TensorSpec((d, r, c), tf.float32, name="replay_logits"),
                      tf.TensorSpec((), tf.float32, name="replay_weight")]
        specs += [tf.TensorSpec((), tf.float32, name="refresh"),
                  tf.TensorSpec((), tf.float32, name="learning_rate")] + params + [
            tf.TensorSpec(self.parameter_shapes()["w1"], tf.float32, name="gradient_mask")]

        def train(*args):
            args = list(args)
            x, onehot, class_mask = args[:3]
            rest = args[3:]
            if d:
                replay, rest = rest[:4], rest[4:]
            else:
                replay = [tf.zeros((0, r, self.features), tf.int8), None, None, 0.0]
            refresh, learning_rate, w1, b1, w2, b2, mask, gradient_mask = rest
            new, new_gradient_mask, loss, logits, correct, dense_w1 = self.train_step(
                x, onehot, class_mask, *replay, refresh, learning_rate,
                {"w1": w1, "b1": b1, "w2": w2, "b2": b2}, mask, gradient_mask)
            return (new["w1"], new["b1"], new["w2"], new["b2"], new_gradient_mask, loss, logits,
                    correct, dense_w1)

        return tf.function(train, input_signature=specs)

    def infer_function(self):
        (features,), params = self._specs(self.batch_size)

        def infer(x, w1, b1, w2, b2, mask):
            return (self.infer(x, {"w1": w1, "b1": b1, "w2": w2, "b2": b2}, mask),)

        return tf.function(infer, input_signature=[features] + params)


def convert_function(function):
    """One concrete function -> a single-subgraph .tflite (what TFLM runs), builtins only."""
    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [function.get_concrete_function()], tf.Module())  # no variables to track
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    return converter.convert()
