"""A frozen feature extractor from any inference .tflite, for a head that learns on the device.

The microcontroller path's design for phones and for models born elsewhere (a PyTorch model
through ai-edge-torch, a Keras model through the TFLite converter): the user's inference
.tflite runs unchanged in LiteRT and gives features, once per example; a small head learns the
task stream from them with `ContinualLearner` (replay then stores features, not images: latent
replay), and `learner.export` makes the head's builtins-only training .tflite. On the device an
app runs the two files one after the other. The backbone never changes, so it learns nothing
from later tasks: the price of training only what fits.

Features are the model's output or any float or int8 tensor inside it (`feature_tensor`, a
name from `tensors()`: the pooled layer before a classifier, say); int8 models get quantised
inputs and dequantised features.
"""

import os
import warnings

import numpy as np

from sparcl_tf.errors import DataError, import_extra


class FrozenBackbone:
    """`features(images)` of an inference .tflite at `model_path` (one input)."""

    def __init__(self, model_path, feature_tensor=None, threads=2):
        Interpreter = import_extra("ai_edge_litert.interpreter", "litert").Interpreter
        if not os.path.isfile(model_path):
            raise DataError(f"backbone {model_path} does not exist")
        try:
            with warnings.catch_warnings():  # "for debugging": it is how an inner tensor is read
                warnings.simplefilter("ignore", UserWarning)
                self._interpreter = Interpreter(
                    model_path=model_path, num_threads=threads,
                    experimental_preserve_all_tensors=feature_tensor is not None)
        except (ValueError, RuntimeError) as error:
            raise DataError(f"backbone {model_path} is not a LiteRT model: "
                            f"{' '.join(str(error).split())[:200]}") from None
        inputs = self._interpreter.get_input_details()
        if len(inputs) != 1:
            raise DataError(f"backbone {model_path} has {len(inputs)} inputs; one is needed")
        self._input = inputs[0]
        self.image_shape = tuple(int(d) for d in self._input["shape"][1:])
        if feature_tensor is None:
            self._output = self._interpreter.get_output_details()[0]
        else:
            found = [t for t in self._interpreter.get_tensor_details()
                     if t["name"] == feature_tensor]
            if not found:
                raise ValueError(f"backbone {model_path} has no tensor {feature_tensor!r}; "
                                 f"FrozenBackbone.tensors() lists them")
            self._output = found[0]
        self.feature_shape = tuple(int(d) for d in self._output["shape"][1:])
        self._batch = None

    def tensors(self):
        """(name, shape) of every float or int8 activation (a tensor with the input's batch
        axis, not a weight): the feature candidates, in the model's tensor order."""
        batch = self._input["shape_signature"][0]

        def activation(detail):
            signature = detail["shape_signature"]
            return len(signature) >= 2 and (signature[0] == -1 if batch == -1 else
                                            detail["shape"][0] == self._input["shape"][0])

        return [(t["name"], tuple(int(d) for d in t["shape"][1:]))
                for t in self._interpreter.get_tensor_details()
                if t["dtype"] in (np.float32, np.int8) and activation(t)]

    def _resize(self, batch):
        if batch != self._batch:
            self._interpreter.resize_tensor_input(self._input["index"],
                                                  [batch, *self.image_shape])
            self._interpreter.allocate_tensors()
            self._batch = batch

    def features(self, images, batch_size=64):
        """float32 features of `images` (as the backbone expects them: normalised floats, or
        floats it quantises itself when its input is int8)."""
        images = np.asarray(images, np.float32)
        if images.shape[1:] != self.image_shape:
            raise ValueError(f"backbone input is {self.image_shape}, got images "
                             f"{images.shape[1:]}")
        if not np.isfinite(images).all():
            raise ValueError("backbone images hold NaN or Inf")
        scale, zero = self._input["quantization"]
        out_scale, out_zero = self._output["quantization"]
        rows = []
        for start in range(0, len(images), batch_size):
            batch = images[start:start + batch_size]
            self._resize(len(batch))
            if self._input["dtype"] == np.float32:
                value = batch
            else:
                info = np.iinfo(self._input["dtype"])
                value = np.clip(np.round(batch / scale) + zero, info.min, info.max).astype(
                    self._input["dtype"])
            self._interpreter.set_tensor(self._input["index"], value)
            self._interpreter.invoke()
            out = self._interpreter.get_tensor(self._output["index"])
            rows.append(out.astype(np.float32) if out.dtype == np.float32
                        else (out.astype(np.float32) - out_zero) * out_scale)
        return np.concatenate(rows) if rows else np.zeros((0,) + self.feature_shape, np.float32)
