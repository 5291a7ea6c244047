"""A run's sparsity kind: decided once from the config, known again from the session plan, and
the one source of the step's gradient masking for the Keras model and the export."""

import numpy as np
import pytest

from configs.split_fmnist import get_config
from sparcl_tf.config import validate
from sparcl_tf.data.tasks import TaskSequence
from sparcl_tf.engines.keras import model_description
from sparcl_tf.models.networks import build_networks
from sparcl_tf.sparsity.gradient_masking import FilterSelection, GradientMasking, WeightMasking
from sparcl_tf.sparsity.kind import Dense, FilterSlots, WeightMasks, described_kind

TASKS = TaskSequence([], 10, (28, 28, 1), list(range(10)), np.zeros(1, np.float32),
                     np.ones(1, np.float32), 0)


def _config(preset, **fields):
    config = get_config(preset)
    config.model.width = 0.25
    for dotted, value in fields.items():
        section, _, field = dotted.rpartition(".")
        (config[section] if section else config)[field] = value
    return validate(config)


@pytest.mark.parametrize("preset, fields, kind_type, rule, masking_type, refreshes", [
    ("derpp", {}, Dense, None, GradientMasking, False),
    ("static_derpp_90", {}, WeightMasks, None, WeightMasking, False),
    ("paper_sparcl_derpp_90", {}, WeightMasks, "tdm", WeightMasking, True),
    ("paper_sparcl_derpp_90_no_dgm", {}, WeightMasks, "tdm", WeightMasking, False),
    ("rigl_derpp_90", {}, WeightMasks, "rigl", WeightMasking, False),
    ("paper_sparcl_derpp_s90", {}, FilterSlots, "slots", FilterSelection, True),
    ("paper_sparcl_derpp_s90", {"dgm.enabled": False}, FilterSlots, "slots", GradientMasking,
     False),
])
def test_each_preset_has_one_kind_and_its_masking(preset, fields, kind_type, rule,
                                                  masking_type, refreshes):
    config = _config(preset, **fields)
    network, kind = build_networks(config, TASKS)
    assert type(kind) is kind_type and kind.mask_rule == rule
    masking = kind.gradient_masking(network)
    assert type(masking) is masking_type and masking.refreshes == refreshes
    assert len(masking.last_gradients) == (len(masking.layers) if rule else 0)
    assert [name for name, _ in kind.units(network)] == [layer.name for layer in masking.layers]
    again = described_kind(config, model_description(network, kind))
    assert type(again) is kind_type and again.full_filters == kind.full_filters
    assert again.unit == kind.unit and again.mask_rule == kind.mask_rule


def test_filter_slots_build_the_compacted_network_from_the_full_one():
    network, kind = build_networks(_config("paper_sparcl_derpp_s90"), TASKS)
    capacities = kind.capacities()
    for name, slots in kind.units(network):
        assert slots == capacities[name] == int(network.get_layer(name).kernel.shape[-1])
        assert slots < kind.full_filters[name] == int(
            kind.reference_network.get_layer(name).kernel.shape[-1])


def test_exported_masks_are_stored_as_bool_and_the_keras_ones_as_float():
    config = _config("paper_sparcl_derpp_90")
    network, kind = build_networks(config, TASKS)
    for dtype in ("float32", "bool"):
        state = kind.gradient_masking(network, mask_dtype=dtype).state()
        masks = [v for name, v in state.items() if name.startswith("gradient_mask__")]
        assert masks and all(v.dtype.name == dtype for v in masks)
