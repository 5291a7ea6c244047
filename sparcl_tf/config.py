"""The one config tree every experiment uses, named presets, and validation at the boundary.

Config files in `configs/` start from `base_config()`, set their data set's defaults and apply a
preset: a preset is a flat dict of dotted-path overrides, so presets are data, not code paths.
`validate` checks every field a run reads and raises one `ConfigError` naming the field and the
allowed values.
"""

import copy
import dataclasses
import math
from typing import Optional, Union

import ml_collections

from sparcl_tf.errors import ConfigError

_DERPP = {"method.name": "derpp", "method.alpha": 0.1, "method.beta": 0.5}
METHOD_PRESETS = {
    "finetune": {"method.name": "finetune"},
    "joint": {"method.name": "joint"},
    "er": {"method.name": "er"},
    "der": {"method.name": "der", "method.alpha": 0.3},
    "derpp": _DERPP,
}


@dataclasses.dataclass(frozen=True)
class SparCL:
    """SparCL's settings: TDM weight masks at `weight_sparsity` (pruned and regrown
    `updates_per_task` times a task), DGM gradient masks at total sparsity `gradient_sparsity`
    (None: off; "paired": the paper's pairing w + (1 - w) / 5, 0.80 at 0.75, 0.92 at 0.90, 0.96
    at 0.95; refreshed every `refresh_every` steps) and DDR removal of a `removal` share of
    each task's data (0: off) in `removal_stages` stages; `structured`: by whole filters on the
    physically compacted model (registry models only). `overrides()` is its config.

    The defaults are for schedules where devices learn, measured in issue 28's ablation
    (docs/results.md, "Edge schedules"): sparse layers learn at a rate scaled by their density
    (`rate_scaling`; None: `inverse_density` for weight masks, `same` for filters, whose compacted
    layers are dense), the fully connected sparse layers share the target by Erdos-Renyi-Kernel
    (`distribution`; None: `erk_fc` for weight masks, `uniform` for filters), DDR removes data
    only in tasks of at least `removal_min_task_steps` steps (epochs x full batches: its ranking
    needs a network trained on the task), and DGM acts only in runs of at least
    `gradient_min_epochs` epochs a task (both were built to pay back over many presentations; on
    a few short ones they cost accuracy). `SparCL.paper(...)` gives the paper's rules (the same
    rate and target everywhere, DDR and DGM always)."""
    weight_sparsity: float = 0.75
    gradient_sparsity: Union[float, str, None] = "paired"
    removal: float = 0.3
    updates_per_task: int = 10
    refresh_every: int = 30
    removal_stages: int = 4
    structured: bool = False
    rate_scaling: Optional[str] = None
    distribution: Optional[str] = None
    removal_min_task_steps: int = 500
    gradient_min_epochs: int = 6

    @classmethod
    def paper(cls, weight_sparsity=0.75, gradient_sparsity="paired", **settings):
        """The paper's SparCL (Wang et al. 2022): every layer at the run's rate, DDR and DGM
        whatever the schedule; `settings`: any other field."""
        return cls(weight_sparsity, gradient_sparsity,
                   **{"rate_scaling": "same", "distribution": "uniform",
                      "removal_min_task_steps": 0,
                      "gradient_min_epochs": 0, **settings})

    def __post_init__(self):
        """The switch is checked here (any value would pick a granularity); the numbers are
        checked by `validate` as config fields where the settings are used."""
        if not isinstance(self.structured, bool):
            raise ConfigError(f"SparCL: structured={self.structured!r} is invalid: must be True "
                              f"or False")
        if isinstance(self.gradient_sparsity, str) and self.gradient_sparsity != "paired":
            raise ConfigError(f"SparCL: gradient_sparsity={self.gradient_sparsity!r} is invalid: "
                              f"must be a number, 'paired' or None")

    def overrides(self):
        dgm = self.gradient_sparsity is not None
        gradient_sparsity = self.gradient_sparsity
        if gradient_sparsity == "paired" and isinstance(self.weight_sparsity, (int, float)):
            gradient_sparsity = round(self.weight_sparsity + (1 - self.weight_sparsity) / 5, 6)
        rate_scaling, distribution = self.rate_scaling, self.distribution
        if rate_scaling is None:
            rate_scaling = "same" if self.structured else "inverse_density"
        if distribution is None:
            distribution = "uniform" if self.structured else "erk_fc"
        return {"sparsity.schedule": "tdm", "sparsity.weight_sparsity": self.weight_sparsity,
                "sparsity.updates_per_task": self.updates_per_task,
                "sparsity.granularity": "filter" if self.structured else "weight",
                "sparsity.rate_scaling": rate_scaling, "sparsity.distribution": distribution,
                "dgm.enabled": dgm, "dgm.refresh_every": self.refresh_every,
                "dgm.min_epochs": self.gradient_min_epochs,
                **({"dgm.gradient_sparsity": gradient_sparsity} if dgm else {}),
                "ddr.enabled": self.removal > 0, "ddr.stages": self.removal_stages,
                "ddr.min_task_steps": self.removal_min_task_steps,
                **({"ddr.total_fraction": self.removal} if self.removal > 0 else {})}


def _sparcl(weight_sparsity, method=None, structured=False, paper=False):
    """SparCL: TDM weight masks + DGM gradient masks (the paired sparsity) + DDR data removal on
    a replay method; the edge defaults, or the paper's rules."""
    settings = SparCL.paper(weight_sparsity, structured=structured) if paper else \
        SparCL(weight_sparsity, structured=structured)
    return {**(method or _DERPP), **settings.overrides()}


_PAPER_90 = _sparcl(0.90, paper=True)
SPARCL_PRESETS = {
    "sparcl_er": _sparcl(0.75, method={"method.name": "er"}),
    "sparcl_derpp": _sparcl(0.75),
    "sparcl_derpp_90": _sparcl(0.90),
    "sparcl_derpp_95": _sparcl(0.95),
    # The paper's rules (SparCL.paper): the same rate in every layer, DDR and DGM at any schedule.
    "paper_sparcl_er": _sparcl(0.75, method={"method.name": "er"}, paper=True),
    "paper_sparcl_derpp": _sparcl(0.75, paper=True),
    "paper_sparcl_derpp_90": _PAPER_90,
    "paper_sparcl_derpp_95": _sparcl(0.95, paper=True),
    # Sparse-training baselines on DER++, at the 0.90 of the main comparison.
    "static_derpp_90": {**_DERPP, "sparsity.schedule": "static", "sparsity.weight_sparsity": 0.9},
    "rigl_derpp_90": {**_DERPP, "sparsity.schedule": "rigl", "sparsity.weight_sparsity": 0.9,
                      "sparsity.grow": "gradient"},
    # Ablations of the paper's SparCL-DER++ 0.90, one part switched off (TDM off = the initial
    # mask stays).
    "paper_sparcl_derpp_90_no_tdm": {**_PAPER_90, "sparsity.schedule": "static"},
    "paper_sparcl_derpp_90_no_ddr": {**_PAPER_90, "ddr.enabled": False},
    "paper_sparcl_derpp_90_no_dgm": {**_PAPER_90, "dgm.enabled": False},
    # Channel-structured SparCL: filter-level TDM on physically compacted layers, DGM on whole
    # filters (kernel gradients computed for the selected filters only), DDR. sNN: NN % fewer
    # weights in the pruned layers (the filter sparsity is derived, `structured.filter_sparsity`);
    # f90: filter sparsity 0.90 in every pruned layer.
    **{f"sparcl_derpp_s{round(100 * s)}": _sparcl(s, structured=True) for s in (0.75, 0.90, 0.95)},
    **{f"paper_sparcl_derpp_s{round(100 * s)}": _sparcl(s, structured=True, paper=True)
       for s in (0.75, 0.90, 0.95)},
    "sparcl_derpp_f90": {**_sparcl(0.90, structured=True),
                         "sparsity.structured_target": "filters"},
}
ALL_PRESETS = {**METHOD_PRESETS, **SPARCL_PRESETS}

# The microcontroller path (tools.micro): int8 frozen edge-CNN backbone, SparCL-DER++ on a small
# sparse head over latent replay (batches of 16 keep the TFLM arena small).
MICRO_PRESETS = {
    "micro": {**_sparcl(0.5, paper=True), "model.width": 0.5, "batch_size": 16,
              "replay.batch_size": 16},
}


def base_config():
    config = ml_collections.ConfigDict()
    config.preset = ""
    config.seed = 0
    config.epochs_per_task = 1
    config.batch_size = 32

    config.optimizer = ml_collections.ConfigDict()
    config.optimizer.learning_rate = 0.03
    config.optimizer.momentum = 0.0
    config.optimizer.schedule = "constant"   # per task: constant | cosine | step
    config.optimizer.final_fraction = 0.0    # cosine: the task's last rate, share of learning_rate
    config.optimizer.milestones = (0.5, 0.75)  # step: task fractions where the rate is x gamma
    config.optimizer.gamma = 0.1

    config.method = ml_collections.ConfigDict()
    config.method.name = "derpp"
    config.method.alpha = 0.1
    config.method.beta = 0.5
    config.method.cl_mask = True  # current-batch loss over the current task's classes only
    config.method.shared_draw = False  # DER++: both replay terms on one draw (one fewer forward)
    config.method.masked_logits = "excluded"  # CL mask: other classes' logits excluded | constant

    config.replay = ml_collections.ConfigDict()
    config.replay.buffer_size = 500
    config.replay.batch_size = 32
    config.replay.from_task = 1  # 0-based: replay terms start with the second task

    config.data = ml_collections.ConfigDict()
    config.data.source = "fashion_mnist"
    config.data.dir = ""          # folder of the source; "" = its default
    config.data.path = ""         # file for source 'npz'
    config.data.tfds_download = False  # cifar10/cifar100: let TFDS download (needs network)
    config.data.num_classes = 0   # 'npz' only: 0 = infer from the labels
    config.data.scenario = "class_il"
    config.data.classes_per_task = 2
    config.data.num_tasks = 0     # 0 = all classes (class_il) or 5 (domain-IL)
    config.data.class_order = "natural"
    config.data.train_per_task = 0
    config.data.pad_to = 0        # zero-pad images to pad_to x pad_to (28 -> 32 as CIFAR); 0: no
    config.data.test_per_task = 0
    config.data.augment = "none"
    config.data.crop_padding = 4
    config.data.rotation_step = 45.0

    config.sparsity = ml_collections.ConfigDict()
    config.sparsity.schedule = "none"     # none | static | tdm | rigl
    # same | inverse_sqrt_density | inverse_density: a sparse layer of target density d learns at
    # lr * d ** -p (p 0, 1/2, 1): a sparse network's fewer weights each need larger steps
    config.sparsity.rate_scaling = "same"
    config.sparsity.granularity = "weight"  # weight | filter (compacted layers, structured)
    config.sparsity.structured_target = "weights"  # granularity filter: sparsity of weights|filters
    config.sparsity.weight_sparsity = 0.0
    config.sparsity.layer_sparsity = ml_collections.ConfigDict()  # layer name -> own target
    config.sparsity.distribution = "uniform"  # uniform | erk | erk_fc (schedule.layer_targets)
    config.sparsity.importance_lambda = 0.5
    config.sparsity.grow = "random"       # random (official code) | gradient (RigL-style)
    config.sparsity.updates_per_task = 10  # mask updates at every 10 % of a task
    config.sparsity.open_fraction = 0.01  # grown at a task's first update
    config.sparsity.swap_fraction = 0.01  # pruned and regrown at the middle updates
    config.sparsity.rigl_drop_fraction = 0.3
    config.sparsity.rigl_end_fraction = 0.75

    config.dgm = ml_collections.ConfigDict()
    config.dgm.enabled = False
    config.dgm.gradient_sparsity = 0.80   # total sparsity of the kernel update
    config.dgm.refresh_every = 30
    config.dgm.threshold = "topk"         # topk | bisection
    config.dgm.min_epochs = 0             # off for runs of fewer epochs a task (see dgm.active)

    config.ddr = ml_collections.ConfigDict()
    config.ddr.enabled = False
    config.ddr.total_fraction = 0.3       # of each task's training data
    config.ddr.stages = 4                 # at the task's mask updates 1..stages
    config.ddr.min_task_steps = 0         # off in tasks of fewer steps (SessionPlan.removal_stages)

    config.model = ml_collections.ConfigDict()
    config.model.name = "edge_cnn"
    config.model.width = 1.0

    config.micro = ml_collections.ConfigDict()
    config.micro.pretrain_tasks = 1      # the backbone trains on the first N tasks, then freezes
    config.micro.pretrain_epochs = 3
    config.micro.hidden_units = 64       # the head: F features -> H (sparse) -> classes
    config.micro.buffer_bytes = 0        # latent replay buffer in bytes; 0 = replay.buffer_size
    config.micro.memory_budget_bytes = 262144  # TFLM arena + buffer must fit (0 = no limit)
    config.micro.compare_steps = 5       # per task, the first steps also run in LiteRT

    config.distribute = ml_collections.ConfigDict()
    config.distribute.strategy = "none"  # none | mirrored | multi_worker (TF_CONFIG: the cluster)
    config.distribute.devices = 0        # replicas per worker: 0 = every GPU (else the CPU);
    #                                      N = the first N GPUs, or N logical CPU devices
    config.distribute.batch_norm = "sync"  # sync (global-batch statistics) | local (per replica)
    config.distribute.startup_timeout_s = 300.0  # multi_worker: the cluster forms within this

    config.checkpoint = ml_collections.ConfigDict()
    config.checkpoint.every_steps = 500  # also at every epoch and task end
    config.checkpoint.keep = 2

    config.log = ml_collections.ConfigDict()
    config.log.progress = True
    config.log.tensorboard = True
    config.log.scalars_every_steps = 20
    config.log.eval_batch_size = 256
    return config


def _get(config, path):
    for key in path.split("."):
        config = config[key]
    return config


def apply_overrides(config, overrides):
    """Sets each dotted path -> value of `overrides` in `config`; returns `config`. A value of
    another type than the field's is one ConfigError naming the field."""
    for path, value in overrides.items():
        parent, _, leaf = path.rpartition(".")
        node = _get(config, parent) if parent else config
        try:
            node[leaf] = value
        except TypeError:  # ml_collections keeps each field's type
            raise ConfigError(f"{path}={value!r} is invalid: must be a "
                              f"{type(node[leaf]).__name__}") from None
    return config


def apply_text_override(config, text):
    """Applies one `dotted.field=VALUE` (as a command line's --config.FIELD=VALUE) to `config`,
    VALUE read as the field's type; ConfigError naming the field when there is no such field or
    VALUE does not read as its type."""
    path, equals, value = text.partition("=")
    parent, _, leaf = path.rpartition(".")
    try:
        node = _get(config, parent) if parent else config
        current = node[leaf]
    except (KeyError, AttributeError, TypeError):
        raise ConfigError(f"unknown config field {path!r} in {text!r}") from None
    if not equals or isinstance(current, (dict, list, tuple)) or hasattr(current, "keys"):
        raise ConfigError(f"{text!r} is not FIELD=VALUE for a number, string or bool field")
    try:
        if isinstance(current, bool):
            parsed = {"true": True, "1": True, "false": False, "0": False}[value.lower()]
        else:
            parsed = value if current is None else type(current)(value)
    except (KeyError, ValueError):
        raise ConfigError(f"{path}={value} is invalid: must be a {type(current).__name__}") \
            from None
    node[leaf] = parsed
    return config


def apply_preset(config, presets, name):
    """Applies `presets[name]` (dotted path -> value) to `config` and records the preset's name."""
    if name not in presets:
        raise ConfigError(f"preset {name!r} is unknown; choose one of {sorted(presets)}")
    apply_overrides(config, presets[name])
    config.preset = name
    return config


def differing_fields(mine, theirs, ignored=()):
    """Dotted leaf fields whose values differ between two config trees (dicts, as in
    config.json), leaving out those that start with a prefix in `ignored`."""
    def flat(tree, prefix=""):
        items = {}
        for key, value in tree.items():
            if isinstance(value, dict):
                items.update(flat(value, f"{prefix}{key}."))
            else:
                items[f"{prefix}{key}"] = value
        return items
    mine, theirs = flat(mine), flat(theirs)
    return sorted(key for key in set(mine) | set(theirs)
                  if mine.get(key) != theirs.get(key) and not key.startswith(tuple(ignored)))


def _require(condition, field, value, allowed):
    if not condition:
        raise ConfigError(f"{field}={value!r} is invalid: must be {allowed}")


SEEDS = 2 ** 32      # seeds key numpy generators and the portable stream: [0, 2**32)
MAX_MODEL_WIDTH = 16.0


def _finite_numbers(config, prefix=""):
    """ConfigError for the first float field that is NaN or infinite (none is meaningful)."""
    for key, value in config.items():
        path = f"{prefix}{key}"
        if isinstance(value, ml_collections.ConfigDict):
            _finite_numbers(value, path + ".")
        elif isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{path}={value!r} is invalid: must be a finite number")


USER_MODEL = "user_model"   # model.name (and data.source "arrays") of a ContinualLearner run


def _complete(config, defaults):
    """Adds to `config` every field of `defaults` it lacks (a run config written before the
    field existed), so every reader finds each field with the one default `base_config` gives."""
    for key, value in defaults.items():
        if key not in config:
            with config.unlocked():
                config[key] = copy.deepcopy(value)
        elif isinstance(value, ml_collections.ConfigDict) and isinstance(
                config[key], ml_collections.ConfigDict):
            _complete(config[key], value)


def validate(config):
    """Raises `ConfigError` for the first field a run cannot use; completes a config an older
    version wrote with the fields it lacks (their defaults). A `ContinualLearner` run
    (model.name USER_MODEL) brings its own model, data and method object: no registry lookups."""
    # Imported here, not above, for time alone (they load TensorFlow, and a config file or a
    # binary refusing a flag should not wait for it); none of them imports this module.
    from sparcl_tf import distribute
    from sparcl_tf.data.augment import AUGMENTATIONS
    from sparcl_tf.data.sources import SOURCES
    from sparcl_tf.data.tasks import SCENARIOS
    from sparcl_tf.methods import METHODS
    from sparcl_tf.methods.base import MASKED_LOGITS
    from sparcl_tf.models import MODELS
    from sparcl_tf.session import learning_rate
    from sparcl_tf.sparsity import ddr, dgm, schedule
    _complete(config, base_config())
    def integer(field, minimum):
        value = _get(config, field)
        _require(isinstance(value, int) and not isinstance(value, bool) and value >= minimum,
                 field, value, f"an integer >= {minimum}")

    for field, minimum in (("seed", 0), ("epochs_per_task", 1), ("batch_size", 1),
                           ("replay.buffer_size", 0), ("replay.batch_size", 1),
                           ("replay.from_task", 0), ("data.num_classes", 0),
                           ("data.classes_per_task", 1), ("data.num_tasks", 0),
                           ("data.train_per_task", 0), ("data.test_per_task", 0),
                           ("data.crop_padding", 0), ("data.pad_to", 0),
                           ("checkpoint.every_steps", 0),
                           ("checkpoint.keep", 1), ("log.scalars_every_steps", 1),
                           ("log.eval_batch_size", 1), ("micro.pretrain_tasks", 1),
                           ("micro.pretrain_epochs", 1), ("micro.hidden_units", 1),
                           ("micro.buffer_bytes", 0), ("micro.memory_budget_bytes", 0),
                           ("micro.compare_steps", 0)):
        integer(field, minimum)
    _finite_numbers(config)
    _require(config.seed < SEEDS, "seed", config.seed, "< 2**32")
    optimizer, method, data = config.optimizer, config.method, config.data
    _require(optimizer.learning_rate > 0, "optimizer.learning_rate", optimizer.learning_rate,
             "> 0")
    _require(0 <= optimizer.momentum < 1, "optimizer.momentum", optimizer.momentum, "in [0, 1)")
    registry = config.model.name != USER_MODEL
    if registry:
        _require(method.name in METHODS, "method.name", method.name,
                 f"one of {sorted(METHODS)}")
    _require(method.alpha >= 0, "method.alpha", method.alpha, ">= 0")
    _require(method.beta >= 0, "method.beta", method.beta, ">= 0")
    _require(method.masked_logits in MASKED_LOGITS, "method.masked_logits",
             method.masked_logits, f"one of {list(MASKED_LOGITS)}")
    _require(isinstance(method.shared_draw, bool), "method.shared_draw", method.shared_draw,
             "true or false")
    if registry and method.shared_draw:
        _require(len(METHODS[method.name].REPLAY_TERMS) > 1, "method.shared_draw",
                 method.shared_draw, f"false for method {method.name!r} (one replay term)")
    if registry and METHODS[method.name].uses_buffer:
        _require(config.replay.buffer_size > 0, "replay.buffer_size", config.replay.buffer_size,
                 f"> 0 for method {method.name!r}")
    if registry:
        _require(data.source in SOURCES, "data.source", data.source, f"one of {list(SOURCES)}")
        _require(config.model.name in MODELS, "model.name", config.model.name,
                 f"one of {sorted(MODELS)}")
    _require(data.scenario in SCENARIOS, "data.scenario", data.scenario,
             f"one of {list(SCENARIOS)}")
    _require(data.class_order in ("natural", "shuffled"), "data.class_order", data.class_order,
             "'natural' or 'shuffled'")
    _require(data.augment in AUGMENTATIONS, "data.augment", data.augment,
             f"one of {list(AUGMENTATIONS)}")
    _require(0 < config.model.width <= MAX_MODEL_WIDTH, "model.width", config.model.width,
             f"in (0, {MAX_MODEL_WIDTH:g}]")
    learning_rate.validate(config.optimizer)
    schedule.validate(config.sparsity)
    ddr.validate(config.ddr, config.sparsity.updates_per_task)
    dgm.validate(config.dgm, config.sparsity)
    distribute.validate(config.distribute)
    return config
