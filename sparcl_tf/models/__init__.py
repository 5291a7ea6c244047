"""Model registry: every model is a functional Keras model of masked layers producing logits."""

import dataclasses
from typing import Callable, Optional

from sparcl_tf.errors import ConfigError
from sparcl_tf.layers import sparsifiable_layers
from sparcl_tf.models.edge_cnn import edge_cnn
from sparcl_tf.models.mlp import mlp
from sparcl_tf.models.mobilenet_v2 import mobilenet_v2
from sparcl_tf.models.resnet import resnet18
from sparcl_tf.models.small_cnn import small_cnn


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """What the library knows of a registry model: how to build it and how channel-structured
    SparCL prunes it (None: not at all; "": every sparsifiable layer; a suffix: the layers whose
    names end with it), and whether those producers feed each other."""
    build: Callable
    producer_suffix: Optional[str] = None
    chained_producers: bool = False


MODEL_SPECS = {
    "resnet18": ModelSpec(resnet18, producer_suffix="_conv1"),
    "edge_cnn": ModelSpec(edge_cnn, producer_suffix="", chained_producers=True),
    "mlp": ModelSpec(mlp),
    "mobilenet_v2": ModelSpec(mobilenet_v2, producer_suffix="_expand"),
    "small_cnn": ModelSpec(small_cnn),
}
MODELS = tuple(MODEL_SPECS)
STRUCTURED_MODELS = tuple(name for name, spec in MODEL_SPECS.items()
                          if spec.producer_suffix is not None)


def structured_producers(name, network):
    """The layers channel-structured SparCL prunes by filters: every sparsifiable layer of the
    edge CNN; the inner conv of each ResNet block (its output feeds only the block's conv2);
    the expand conv of each MobileNetV2 block (its channels feed only the block's depthwise
    conv and projection)."""
    names = [layer.name for layer in sparsifiable_layers(network)]
    return [n for n in names if n.endswith(MODEL_SPECS[name].producer_suffix or "")]


def build_model(name, input_shape, num_classes, width=1.0, capacities=None):
    """Builds model `name` for `input_shape` (H, W, C) and `num_classes` logits; `capacities`
    (layer -> filter slots) builds the compacted model of channel-structured SparCL."""
    if name not in MODELS:
        raise ConfigError(f"model.name={name!r} is unknown; choose one of {sorted(MODELS)}")
    if not width > 0:
        raise ConfigError(f"model.width must be > 0, got {width}")
    if capacities:
        if name not in STRUCTURED_MODELS:
            raise ConfigError(f"sparsity.granularity=filter supports model.name in "
                              f"{list(STRUCTURED_MODELS)}, got {name!r}")
        return MODEL_SPECS[name].build(tuple(input_shape), int(num_classes), width=width,
                                       capacities=capacities)
    return MODEL_SPECS[name].build(tuple(input_shape), int(num_classes), width=width)
