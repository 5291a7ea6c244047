r"""Converts a run's network into a builtins-only .tflite with on-device training signatures.

  python -m tools.convert --workdir=W [--config=configs/split_fmnist.py:sparcl_derpp_90]
      [--state=checkpoint|initial] [--flex] [--output_dir=DIR]

Takes W/config.json and W's latest checkpoint (or, for a workdir without a run, a fresh model
from --config) and writes W/model.tflite, W/signatures.json (every signature's inputs and outputs:
name, shape, dtype, meaning; the sparse layers in update_masks' order) and W/op_audit.json (ops
per signature, Flex ops listed). --state=initial embeds the run's starting state instead (seeded
weights and initial masks: the state the Keras trainer starts from), for an on-device session
that repeats the run. --flex adds save/restore signatures that need the Select-TF runtime. A
graph that would need a Flex op without --flex fails with one line naming the op.
"""

import json
import os
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import flags  # noqa: E402

from tools import cli  # noqa: E402

_WORKDIR = flags.DEFINE_string("workdir", None, "Run folder; receives the .tflite.", required=True)
_CONFIG = cli.define_config_flag()
_STATE = flags.DEFINE_enum("state", "checkpoint", ["checkpoint", "initial"],
                           "State embedded in the model: the run's latest checkpoint or its start.")
_OUTPUT_DIR = flags.DEFINE_string("output_dir", None,
                                  "Where the model and its descriptions go (default: --workdir).")
_FLEX = flags.DEFINE_bool("flex", False, "Add save/restore signatures (Select-TF ops).")

MEANINGS = {
    "images": "current batch, normalised like training (per-channel mean/std of the run)",
    "labels": "current batch labels (class ids after the run's class order)",
    "class_mask": "1.0 for the current task's classes, 0.0 elsewhere (the CL mask)",
    "replay_images": "replay draws from the host's reservoir buffer, one row per draw the "
                     "method takes (DER++: [0] for logit matching, [1] for labels)",
    "replay_labels": "labels of the replay draws",
    "replay_logits": "logits stored with the replayed examples (the train step's logits when "
                     "they entered the buffer)",
    "replay_weight": "1.0 to add the method's replay terms, 0.0 while the buffer is empty",
    "refresh_gradient_masks": "1.0 to recompute the DGM gradient masks from this step's "
                              "gradients (every refresh_every steps, epoch start, after "
                              "update_masks), else 0.0",
    "prune_to": "per sparse layer: active weights kept after pruning",
    "grow_to": "per sparse layer: active weights after growing",
    "seed": "seed of the random growth",
    "active": "per sparse layer: active weights after the update",
    "logits": "network outputs for the batch",
    "loss": "total loss of the step",
    "correct": "1.0 where argmax(logits) == label (feeds data removal)",
    "gradient_density": "per sparse layer: fraction of kernel entries updated by the step",
    "variables": "number of variables assigned",
    "checkpoint_path": "TF checkpoint file (Flex Save/Restore ops: needs the Select-TF runtime)",
}


def _config_for(workdir):
    import ml_collections
    path = os.path.join(workdir, "config.json")
    if os.path.exists(path):
        with open(path) as handle:
            return ml_collections.ConfigDict(json.load(handle))
    if flags.FLAGS["config"].present:
        return _CONFIG.value
    cli.fail(f"{workdir} holds no run (no config.json): pass --config=FILE:PRESET for a fresh "
             f"model")


def _describe(interpreter, sparse_layers, plan):
    described = {"sparse_layers": sparse_layers, "session_plan": plan}
    for key in interpreter.get_signature_list():
        runner = interpreter.get_signature_runner(key)

        def entries(details):
            return {name: {"shape": [int(d) for d in detail["shape"]],
                           "dtype": detail["dtype"].__name__,
                           "meaning": MEANINGS.get(name, "variable (state)")}
                    for name, detail in sorted(details.items())}

        described[key] = {"inputs": entries(runner.get_input_details()),
                          "outputs": entries(runner.get_output_details())}
    return described


def main(argv):
    del argv
    from ai_edge_litert.interpreter import Interpreter

    from sparcl_tf.experiment import Experiment
    from sparcl_tf.export.audit import flex_ops_by_layer, op_audit
    from sparcl_tf.export.module import convert, training_module

    workdir = _WORKDIR.value
    config = _config_for(workdir)
    run_dir = tempfile.mkdtemp(prefix="sparcl_initial_") if _STATE.value == "initial" else workdir
    run = cli.run_or_exit(lambda: Experiment(config, run_dir, verbose=0))
    module = training_module(config, run.network, flex=_FLEX.value)
    try:
        model = convert(module, tempfile.mkdtemp(prefix="sparcl_saved_model_"))
    except Exception as error:  # the converter raises its own types
        needs = flex_ops_by_layer(error, [layer.name for layer in run.network.layers])
        cli.fail("the training graph needs ops outside the TFLite builtins: " + "; ".join(
            f"{op} (layers {', '.join(layers)})" for op, layers in needs.items())
            if needs else f"conversion failed: {cli.one_line(error)}")
    output_dir = _OUTPUT_DIR.value or workdir
    os.makedirs(output_dir, exist_ok=True)
    path = os.path.join(output_dir, "model.tflite")
    with open(path, "wb") as handle:
        handle.write(model)
    audit = op_audit(model)
    with open(os.path.join(output_dir, "op_audit.json"), "w") as handle:
        json.dump(audit, handle, indent=2)
    with open(os.path.join(output_dir, "signatures.json"), "w") as handle:
        json.dump(_describe(Interpreter(model_content=model), module.sparse_layer_names,
                            run.plan.to_json()), handle, indent=2)
    print(f"{path}: {len(model):,} bytes")
    for key, entry in audit.items():
        print(f"  {key}: {sum(entry['ops'].values())} ops, Flex ops: {entry['flex_ops'] or 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(cli.run_app(main))
