"""Model registry: every model is a functional Keras model of masked layers producing logits."""

from sparcl_tf.errors import ConfigError
from sparcl_tf.models.edge_cnn import edge_cnn
from sparcl_tf.models.mlp import mlp
from sparcl_tf.models.resnet import resnet18

MODELS = {"resnet18": resnet18, "edge_cnn": edge_cnn, "mlp": mlp}


def build_model(name, input_shape, num_classes, width=1.0):
    """Builds model `name` for `input_shape` (H, W, C) and `num_classes` logits."""
    if name not in MODELS:
        raise ConfigError(f"model.name={name!r} is unknown; choose one of {sorted(MODELS)}")
    if not width > 0:
        raise ConfigError(f"model.width must be > 0, got {width}")
    return MODELS[name](tuple(input_shape), int(num_classes), width=width)
