"""The networks a registry run trains, built from its config."""

import keras

from sparcl_tf.models import build_model, structured_producers
from sparcl_tf.sparsity.structured import capacity as structured_capacity
from sparcl_tf.sparsity.structured import filter_targets


def build_networks(config, tasks):
    """(network the run trains, full network or None, full filters per producer or None): for
    channel-structured SparCL the compacted model with the full one beside it."""
    keras.utils.set_random_seed(config.seed)  # weight initialisers draw from Keras' global seed
    network = build_model(config.model.name, tasks.image_shape, tasks.num_classes,
                          width=config.model.width)
    if config.sparsity.granularity != "filter":
        return network, None, None
    producers = structured_producers(config.model.name, network)
    full_filters = {n: int(network.get_layer(n).kernel.shape[-1]) for n in producers}
    targets = filter_targets(config, producers)
    keras.utils.set_random_seed(config.seed)
    compact = build_model(config.model.name, tasks.image_shape, tasks.num_classes,
                          width=config.model.width, capacities={
                              n: structured_capacity(full_filters[n], config.sparsity, targets[n])
                              for n in producers})
    return compact, network, full_filters
