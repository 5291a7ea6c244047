"""Continual-learning methods, one file each, by name."""

from sparcl_tf.errors import ConfigError
from sparcl_tf.methods.base import ContinualMethod
from sparcl_tf.methods.der import DER
from sparcl_tf.methods.derpp import DERPP
from sparcl_tf.methods.er import ER
from sparcl_tf.methods.finetune import Finetune
from sparcl_tf.methods.joint import Joint

__all__ = ["DER", "DERPP", "ER", "METHODS", "ContinualMethod", "Finetune", "Joint",
           "build_method"]

METHODS = {cls.name: cls for cls in (Finetune, Joint, ER, DER, DERPP)}


def build_method(method_config):
    if method_config.name not in METHODS:
        raise ConfigError(f"method.name={method_config.name!r} is unknown; choose one of "
                          f"{sorted(METHODS)}")
    return METHODS[method_config.name](
        cl_mask=method_config.cl_mask, alpha=method_config.alpha, beta=method_config.beta,
        shared_draw=method_config.shared_draw, masked_logits=method_config.masked_logits)
