import importlib

import pytest

from sparcl_tf.config import SparCL, validate
from sparcl_tf.errors import ConfigError

CONFIG_FILES = ("configs.split_fmnist", "configs.split_mnist", "configs.split_cifar10",
                "configs.split_tinyimagenet", "configs.split_fmnist_paper")
REQUIRED_PRESETS = ("finetune", "joint", "er", "der", "derpp")


@pytest.mark.parametrize("module", CONFIG_FILES)
@pytest.mark.parametrize("preset", REQUIRED_PRESETS)
def test_every_config_file_has_every_preset_and_it_validates(module, preset):
    config = importlib.import_module(module).get_config(preset)
    assert config.preset == preset and config.method.name == preset
    validate(config)


def test_cifar10_config_carries_the_papers_settings():
    config = importlib.import_module("configs.split_cifar10").get_config("derpp")
    assert (config.optimizer.learning_rate, config.optimizer.momentum) == (0.03, 0.0)
    assert (config.batch_size, config.epochs_per_task, config.replay.buffer_size) == (32, 50, 500)
    assert (config.method.alpha, config.method.beta, config.method.cl_mask) == (0.1, 0.5, True)
    assert (config.model.name, config.data.augment, config.data.crop_padding) == (
        "resnet18", "crop_flip", 4)
    assert config.data.source == "cifar10" and config.data.classes_per_task == 2


def test_tinyimagenet_config_has_ten_tasks_of_twenty_classes():
    config = importlib.import_module("configs.split_tinyimagenet").get_config("derpp")
    assert config.data.source == "tiny_imagenet" and config.data.classes_per_task == 20


@pytest.mark.parametrize("path, value, field", [
    ("replay.buffer_size", -1, "replay.buffer_size"),
    ("replay.buffer_size", 0, "replay.buffer_size"),  # a replay method without a buffer
    ("epochs_per_task", 0, "epochs_per_task"),
    ("batch_size", 2.5, "batch_size"),
    ("optimizer.learning_rate", 0.0, "optimizer.learning_rate"),
    ("optimizer.momentum", 1.0, "optimizer.momentum"),
    ("method.name", "ewc", "method.name"),
    ("method.alpha", -0.1, "method.alpha"),
    ("data.source", "imagenet", "data.source"),
    ("data.scenario", "task_il", "data.scenario"),
    ("data.class_order", "random", "data.class_order"),
    ("data.augment", "mixup", "data.augment"),
    ("data.train_per_task", -1, "data.train_per_task"),
    ("model.name", "vgg", "model.name"),
    ("model.width", 0.0, "model.width"),
    ("optimizer.schedule", "linear", "optimizer.schedule"),
    ("optimizer.final_fraction", 1.5, "optimizer.final_fraction"),
    ("optimizer.gamma", 0.0, "optimizer.gamma"),
    ("optimizer.milestones", (0.75, 0.5), "optimizer.milestones"),
    ("optimizer.milestones", (0.5, 1.0), "optimizer.milestones"),
])
def test_invalid_field_is_named_in_the_error(path, value, field):
    config = importlib.import_module("configs.split_fmnist").get_config("derpp")
    section, _, leaf = path.rpartition(".")
    target = config[section] if section else config
    with target.ignore_type():
        target[leaf] = value
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        validate(config)


@pytest.mark.parametrize("overrides, field", [
    ({"sparsity.schedule": "lottery"}, "sparsity.schedule"),
    ({"sparsity.weight_sparsity": 1.0}, "sparsity.weight_sparsity"),
    ({"sparsity.grow": "magnitude"}, "sparsity.grow"),
    ({"sparsity.updates_per_task": 1}, "sparsity.updates_per_task"),
    ({"dgm.gradient_sparsity": 0.85}, "dgm.gradient_sparsity"),  # below the 0.90 weight sparsity
    ({"dgm.threshold": "sort"}, "dgm.threshold"),
    ({"ddr.total_fraction": 1.2}, "ddr.total_fraction"),
    ({"ddr.stages": 10}, "ddr.stages"),
    ({"sparsity.schedule": "none"}, "dgm.enabled"),  # gradient masks need weight masks
    ({"ddr.min_task_steps": -1}, "ddr.min_task_steps"),
    ({"dgm.min_epochs": -2}, "dgm.min_epochs"),
    ({"sparsity.rate_scaling": "inverse"}, "sparsity.rate_scaling"),
    ({"sparsity.distribution": "erdos"}, "sparsity.distribution"),
    ({"sparsity.distribution": "erk", "sparsity.granularity": "filter",
      "sparsity.rate_scaling": "same"}, "sparsity.distribution"),
    ({"sparsity.rate_scaling": "inverse_density", "sparsity.granularity": "filter"},
     "sparsity.rate_scaling"),
])
def test_invalid_sparcl_field_is_named_in_the_error(overrides, field):
    config = importlib.import_module("configs.split_fmnist").get_config("sparcl_derpp_90")
    for path, value in overrides.items():
        section, leaf = path.split(".")
        config[section][leaf] = value
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        validate(config)


@pytest.mark.parametrize("module", CONFIG_FILES)
def test_every_config_file_has_the_sparcl_presets(module):
    get_config = importlib.import_module(module).get_config
    for preset in ("sparcl_er", "sparcl_derpp", "sparcl_derpp_90", "sparcl_derpp_95",
                   "static_derpp_90", "rigl_derpp_90", "paper_sparcl_derpp_90_no_tdm",
                   "paper_sparcl_derpp_90_no_ddr", "paper_sparcl_derpp_90_no_dgm"):
        validate(get_config(preset))
    config = get_config("sparcl_derpp_95")
    assert (config.sparsity.weight_sparsity, config.dgm.gradient_sparsity) == (0.95, 0.96)
    assert config.ddr.enabled and config.ddr.total_fraction == 0.3 and config.ddr.stages == 4


def test_finetune_needs_no_buffer():
    config = importlib.import_module("configs.split_fmnist").get_config("finetune")
    config.replay.buffer_size = 0
    validate(config)


def test_sparcl_pairs_its_gradient_sparsity_with_the_weight_sparsity_as_the_paper():
    from sparcl_tf.config import SPARCL_PRESETS
    for weight, gradient, preset in ((0.75, 0.80, "sparcl_derpp"),
                                     (0.90, 0.92, "sparcl_derpp_90"),
                                     (0.95, 0.96, "sparcl_derpp_95")):
        paired = SparCL(weight_sparsity=weight).overrides()
        assert paired == SparCL(weight, gradient).overrides()
        assert {k: v for k, v in SPARCL_PRESETS[preset].items() if k in paired} == paired
    assert SparCL(gradient_sparsity=None).overrides()["dgm.enabled"] is False


@pytest.mark.parametrize("module", ["configs.ablations.own_model", "configs.ablations.edge_cnn",
                                    "configs.ablations.mlp", "configs.ablations.resnet"])
def test_every_ablation_variant_validates(module):
    ablation = importlib.import_module(module)
    for preset in ablation.PRESETS:
        config = validate(ablation.get_config(preset))
        assert config.preset == preset
    assert ablation.get_config("static90_layer").sparsity.rate_scaling == "inverse_density"


def test_a_run_config_written_before_a_field_existed_takes_its_default():
    import json

    import ml_collections
    data = json.loads(importlib.import_module("configs.split_fmnist").get_config(
        "sparcl_derpp_90").to_json())
    for section, field in (("method", "shared_draw"), ("method", "masked_logits"),
                           ("sparsity", "rate_scaling"), ("ddr", "min_task_steps"),
                           ("dgm", "min_epochs")):
        del data[section][field]
    config = validate(ml_collections.ConfigDict(data))
    assert (config.method.shared_draw, config.method.masked_logits, config.sparsity.rate_scaling,
            config.ddr.min_task_steps, config.dgm.min_epochs) == (False, "excluded", "same", 0,
                                                                  0)


def test_the_measured_winners_are_the_presets_defaults():
    """The ablation variants the edge-schedule measurements chose are the presets now, field for
    field, and the paper's rules stay runnable as paper_* presets."""
    from configs.ablations import own_model as ablation

    def fields(preset):
        config = validate(ablation.get_config(preset)).to_dict()
        config.pop("preset")
        return config

    assert fields("sparcl90_layer_gated") == fields("sparcl_derpp_90")
    assert fields("s90_gated") == fields("sparcl_derpp_s90")
    get_config = importlib.import_module("configs.split_fmnist").get_config
    edge, paper = validate(get_config("sparcl_derpp_90")), validate(get_config(
        "paper_sparcl_derpp_90"))
    assert (edge.sparsity.rate_scaling, edge.ddr.min_task_steps, edge.dgm.min_epochs) == \
        ("inverse_density", 500, 6)
    assert (paper.sparsity.rate_scaling, paper.ddr.min_task_steps, paper.dgm.min_epochs) == \
        ("same", 0, 0)
    assert validate(get_config("sparcl_derpp_s90")).sparsity.rate_scaling == "same"
    assert SparCL(0.9).overrides() == {**SparCL.paper(0.9).overrides(),
                                       "sparsity.rate_scaling": "inverse_density",
                                       "sparsity.distribution": "erk_fc",
                                       "ddr.min_task_steps": 500, "dgm.min_epochs": 6}
    assert SparCL(0.9, structured=True).overrides()["sparsity.distribution"] == "uniform"
