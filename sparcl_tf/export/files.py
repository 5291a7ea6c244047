"""What tools.convert writes beside a training .tflite: the model, its op audit and
signatures.json (every signature's inputs and outputs with shapes, dtypes and meanings, the sparse
layers in update_masks' order, and the session plan an app follows)."""

import json
import os
import tempfile

from sparcl_tf.errors import ExportError, import_extra
from sparcl_tf.export import model_file
from sparcl_tf.export.audit import flex_ops_by_layer, op_audit
from sparcl_tf.export.conversion import convert
from sparcl_tf.export.module import training_module

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
    "learning_rate": "SGD learning rate of this step: the session plan's learning_rate schedule "
                     "at the task's progress (sparcl_tf/session/learning_rate.py)",
    "prune_to": "per sparse layer: active weights kept after pruning",
    "grow_to": "per sparse layer: active weights after growing",
    "seed": "seed of the random growth",
    "active": "per sparse layer: active weights after the update",
    "logits": "network outputs for the batch",
    "loss": "total loss of the step",
    "correct": "1.0 where argmax(logits) == label (feeds data removal)",
    "gradient_density": "per sparse layer: fraction of kernel entries updated by the step",
    "variables": "number of variables assigned",
    "dummy": "ignored int32 scalar (LiteRT's Java runSignature refuses a signature without "
             "inputs)",
    "checkpoint_path": "TF checkpoint file (Flex Save/Restore ops: needs the Select-TF runtime)",
}



def describe(model, sparse_layers, plan):
    """signatures.json's content for the .tflite bytes `model`."""
    Interpreter = import_extra("ai_edge_litert.interpreter", "litert").Interpreter
    interpreter = Interpreter(model_content=model)
    described = {"sparse_layers": sparse_layers, "session_plan": plan.to_json(),
                 "model_sha256": model_file.checksum(model)}
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


def write_model_files(model, module, plan, output_dir):
    """model.tflite, op_audit.json and signatures.json in `output_dir`: (model path, audit)."""
    os.makedirs(output_dir, exist_ok=True)
    path = os.path.join(output_dir, "model.tflite")
    with open(path, "wb") as handle:
        handle.write(model)
    audit = op_audit(model)
    with open(os.path.join(output_dir, "op_audit.json"), "w") as handle:
        json.dump(audit, handle, indent=2)
    with open(os.path.join(output_dir, "signatures.json"), "w") as handle:
        json.dump(describe(model, module.sparse_layer_names, plan), handle, indent=2)
    return path, audit


def export_training_files(config, network, kind, plan, output_dir, method=None, flex=False):
    """A run's trained `network` (of sparsity `kind`) as model.tflite with its files in
    `output_dir` (what tools.convert and `ContinualLearner.export` write): (model path, op
    audit). A graph that needs ops outside the TFLite builtins is one ExportError naming the ops
    and their layers."""
    module = training_module(config, network, kind, flex=flex, method=method)
    with tempfile.TemporaryDirectory(prefix="sparcl_saved_model_") as saved_model:
        try:
            model = convert(module, saved_model)
        except Exception as error:  # the converter raises its own types
            needs = flex_ops_by_layer(error, [layer.name for layer in network.layers])
            one_line = " ".join(str(error).split())[:300]
            raise ExportError("the training graph needs ops outside the TFLite builtins: "
                              + "; ".join(f"{op} (layers {', '.join(layers)})"
                                          for op, layers in needs.items())
                if needs else f"conversion failed: {one_line}") from None
    return write_model_files(model, module, plan, output_dir)
