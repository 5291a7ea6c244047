"""The edge-schedule ablation's variants (issue 28), shared by the setting files beside it: each
a preset of configs/split_fmnist.py plus config fields. Variants built on the paper's SparCL
(`paper_*` presets) keep the meaning they had when they were measured; the winners became the
defaults (`sparcl90_layer_gated` is `sparcl_derpp_90`, `s90_gated` is `sparcl_derpp_s90`:
tests/test_config.py holds them equal)."""

STATIC = {"sparsity.schedule": "static", "sparsity.weight_sparsity": 0.9}
TDM2 = {"sparsity.schedule": "tdm", "sparsity.weight_sparsity": 0.9,
        "sparsity.updates_per_task": 2}
LAYER = {"sparsity.rate_scaling": "inverse_density"}
SQRT = {"sparsity.rate_scaling": "inverse_sqrt_density"}
SHARED = {"method.shared_draw": True}
CONSTANT = {"method.masked_logits": "constant"}
ERK = {"sparsity.distribution": "erk"}
ERK_FC = {"sparsity.distribution": "erk_fc"}
GATED = {"ddr.min_task_steps": 500, "dgm.min_epochs": 6}

VARIANTS = {
    "derpp": ("derpp", {}),
    "derpp_lr06": ("derpp", {"optimizer.learning_rate": 0.06}),
    "derpp_lr10": ("derpp", {"optimizer.learning_rate": 0.1}),
    "derpp_lr30": ("derpp", {"optimizer.learning_rate": 0.3}),
    "derpp_shared": ("derpp", SHARED),
    "derpp_shared_lr06": ("derpp", {**SHARED, "optimizer.learning_rate": 0.06}),
    "derpp_nocl": ("derpp", {"method.cl_mask": False}),
    "derpp_const": ("derpp", CONSTANT),
    "paper_sparcl_derpp_90": ("paper_sparcl_derpp_90", {}),
    "sparcl90_layer": ("paper_sparcl_derpp_90", LAYER),
    # = sparcl_derpp_90 (ERK over the fully connected layers changes only the MLP's targets)
    "sparcl90_layer_gated": ("paper_sparcl_derpp_90", {**LAYER, **GATED, **ERK_FC}),
    "sparcl90_layer_ddr": ("paper_sparcl_derpp_90", {**LAYER, "dgm.min_epochs": 6}),
    "sparcl90_layer_dgm": ("paper_sparcl_derpp_90", {**LAYER, "ddr.min_task_steps": 10 ** 9}),
    "sparcl90_layer_gated_shared": ("paper_sparcl_derpp_90", {**LAYER, **GATED, **SHARED}),
    "sparcl_derpp_90": ("sparcl_derpp_90", {}),  # the edge defaults (SparCL())
    "sparcl_derpp_90_shared": ("sparcl_derpp_90", SHARED),
    "sparcl_derpp_90_erk": ("sparcl_derpp_90", ERK),
    "sparcl_derpp_90_erk_shared": ("sparcl_derpp_90", {**ERK, **SHARED}),
    "sparcl_derpp": ("sparcl_derpp", {}),
    "sparcl_derpp_erk": ("sparcl_derpp", ERK),
    "sparcl_derpp_erk_shared": ("sparcl_derpp", {**ERK, **SHARED}),
    "static90": ("derpp", STATIC),
    "static90_lr10": ("derpp", {**STATIC, "optimizer.learning_rate": 0.1}),
    "static90_lr30": ("derpp", {**STATIC, "optimizer.learning_rate": 0.3}),
    "static90_layer": ("derpp", {**STATIC, **LAYER}),
    "static90_layer_shared": ("derpp", {**STATIC, **LAYER, **SHARED}),
    "static90_layer_const": ("derpp", {**STATIC, **LAYER, **CONSTANT}),
    "static90_sqrt": ("derpp", {**STATIC, **SQRT}),
    "static90_sqrt_lr10": ("derpp", {**STATIC, **SQRT, "optimizer.learning_rate": 0.1}),
    "static90_sqrt_shared": ("derpp", {**STATIC, **SQRT, **SHARED}),
    "static75_layer_shared": ("derpp", {**STATIC, **LAYER, **SHARED,
                                        "sparsity.weight_sparsity": 0.75}),
    "static75_sqrt_shared": ("derpp", {**STATIC, **SQRT, **SHARED,
                                       "sparsity.weight_sparsity": 0.75}),
    "tdm2_90_layer": ("derpp", {**TDM2, **LAYER}),
    "tdm2_90_layer_erk": ("derpp", {**TDM2, **LAYER, **ERK}),
    "tdm2_90_layer_grad": ("derpp", {**TDM2, **LAYER, "sparsity.grow": "gradient"}),
    "tdm2_90_layer_const": ("derpp", {**TDM2, **LAYER, **CONSTANT}),
    "paper_sparcl_derpp_s90": ("paper_sparcl_derpp_s90", {}),
    "s90_gated": ("paper_sparcl_derpp_s90", GATED),  # = sparcl_derpp_s90
    "sparcl_derpp_s90": ("sparcl_derpp_s90", {}),
}


def variant_config(setting, preset):
    """`setting(preset)`'s config (a config file's get_config) with the variant's fields."""
    from sparcl_tf.config import apply_overrides
    base, fields = VARIANTS[preset]
    config = setting(base)
    apply_overrides(config, fields)
    config.preset = preset
    return config
