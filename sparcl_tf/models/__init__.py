"""Model registry: every model is a functional Keras model of masked layers producing logits."""

from sparcl_tf.errors import ConfigError
from sparcl_tf.layers import sparsifiable_layers
from sparcl_tf.models.edge_cnn import edge_cnn
from sparcl_tf.models.mlp import mlp
from sparcl_tf.models.mobilenet_v2 import mobilenet_v2
from sparcl_tf.models.resnet import resnet18

MODELS = {"resnet18": resnet18, "edge_cnn": edge_cnn, "mlp": mlp, "mobilenet_v2": mobilenet_v2}


STRUCTURED_MODELS = ("edge_cnn", "resnet18", "mobilenet_v2")
CHAINED_PRODUCERS = ("edge_cnn",)  # structured producers that feed each other
_PRODUCER_SUFFIX = {"resnet18": "_conv1", "mobilenet_v2": "_expand"}


def structured_producers(name, network):
    """The layers channel-structured SparCL prunes by filters: every sparsifiable layer of the
    edge CNN; the inner conv of each ResNet block (its output feeds only the block's conv2);
    the expand conv of each MobileNetV2 block (its channels feed only the block's depthwise
    conv and projection)."""
    names = [layer.name for layer in sparsifiable_layers(network)]
    suffix = _PRODUCER_SUFFIX.get(name)
    return [n for n in names if n.endswith(suffix)] if suffix else names


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
        return MODELS[name](tuple(input_shape), int(num_classes), width=width,
                            capacities=capacities)
    return MODELS[name](tuple(input_shape), int(num_classes), width=width)
