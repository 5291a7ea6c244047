"""The networks a registry run trains, built from its config."""

import keras

from sparcl_tf.models import build_model
from sparcl_tf.sparsity.kind import sparsity_kind


def build_networks(config, tasks):
    """(network the run trains, its `sparsity.kind`): for channel-structured SparCL the
    compacted model, the full one held by the kind."""
    keras.utils.set_random_seed(config.seed)  # weight initialisers draw from Keras' global seed
    network = build_model(config.model.name, tasks.image_shape, tasks.num_classes,
                          width=config.model.width)
    kind = sparsity_kind(config, network)
    if config.sparsity.granularity != "filter":
        return network, kind
    keras.utils.set_random_seed(config.seed)
    compact = build_model(config.model.name, tasks.image_shape, tasks.num_classes,
                          width=config.model.width, capacities=kind.capacities())
    return compact, kind
