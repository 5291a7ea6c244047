"""The training module converts to a builtins-only .tflite matching TF before and after a step."""

import numpy as np
import pytest
import tensorflow as tf

from sparcl_tf.export.module import TrainingModule, convert
from sparcl_tf.layers import sparsifiable_layers
from sparcl_tf.models import build_model

SHAPE, CLASSES, BATCH, REPLAY = (12, 12, 1), 4, 8, 8


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    import keras
    keras.utils.set_random_seed(0)
    network = build_model("edge_cnn", SHAPE, CLASSES, width=0.25)
    for index, layer in enumerate(sparsifiable_layers(network)):
        mask = (np.random.default_rng(index).random(layer.kernel.shape) > 0.7).astype(np.float32)
        layer.mask.assign(mask)
        layer.apply_mask_to_kernel()
    module = TrainingModule(network, BATCH, REPLAY, learning_rate=0.05)
    model = convert(module, str(tmp_path_factory.mktemp("saved")))
    from ai_edge_litert.interpreter import Interpreter
    return module, network, Interpreter(model_content=model)


def _inputs(seed):
    rng = np.random.default_rng(seed)
    return dict(images=rng.normal(size=(BATCH,) + SHAPE).astype(np.float32),
                labels=rng.integers(2, 4, BATCH).astype(np.int32),
                class_mask=np.array([0, 0, 1, 1], np.float32),
                replay_images=rng.normal(size=(REPLAY,) + SHAPE).astype(np.float32),
                replay_labels=rng.integers(0, 2, REPLAY).astype(np.int32),
                replay_logits=rng.normal(size=(REPLAY, CLASSES)).astype(np.float32),
                replay_weight=np.float32(1.0))


def test_tflite_has_every_signature_and_infers_like_tf(converted):
    module, _, interpreter = converted
    assert set(interpreter.get_signature_list()) == {"infer", "train", "get_state", "set_state"}
    images = _inputs(0)["images"]
    lite = interpreter.get_signature_runner("infer")(images=images)["logits"]
    np.testing.assert_allclose(lite, module.infer(images)["logits"], rtol=1e-5, atol=1e-5)


def test_one_train_step_matches_tf_and_keeps_masked_weights_zero(converted):
    module, network, interpreter = converted
    state = {k: v.numpy() for k, v in module.get_state().items()}
    inputs = _inputs(1)
    lite = interpreter.get_signature_runner("train")(**inputs)
    lite_state = interpreter.get_signature_runner("get_state")()
    interpreter.get_signature_runner("set_state")(**state)  # leave the interpreter as found
    reference = module.train(**{k: tf.constant(v) for k, v in inputs.items()})
    tf_state = {k: v.numpy() for k, v in module.get_state().items()}
    module.set_state(state)
    np.testing.assert_allclose(lite["loss"], reference["loss"], rtol=1e-5)
    for name, value in tf_state.items():
        np.testing.assert_allclose(lite_state[name], value, rtol=1e-4, atol=1e-5, err_msg=name)
    for layer in sparsifiable_layers(network):
        name = layer.kernel.path.replace("/", "__")
        mask = state[layer.mask.path.replace("/", "__")]
        assert np.all(lite_state[name][mask == 0] == 0.0)
        assert not np.allclose(lite_state[name], state[name])  # the step did train


def test_state_round_trips_through_set_and_get(converted):
    module, _, interpreter = converted
    state = {k: v.numpy() for k, v in module.get_state().items()}
    changed = {k: (v + 1.0).astype(v.dtype) for k, v in state.items()}
    interpreter.get_signature_runner("set_state")(**changed)
    back = interpreter.get_signature_runner("get_state")()
    for name, value in changed.items():
        np.testing.assert_array_equal(back[name], value)
    interpreter.get_signature_runner("set_state")(**state)
