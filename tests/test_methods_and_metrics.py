import ml_collections
import numpy as np
import pytest
import tensorflow as tf

from sparcl_tf.reporting import metrics
from sparcl_tf.errors import ConfigError
from sparcl_tf.methods import build_method
from sparcl_tf.methods.base import cross_entropy


def _method(name, alpha=0.1, beta=0.5, cl_mask=True, shared_draw=False,
            masked_logits="excluded"):
    return build_method(ml_collections.ConfigDict(dict(
        name=name, alpha=alpha, beta=beta, cl_mask=cl_mask, shared_draw=shared_draw,
        masked_logits=masked_logits)))


LOGITS = tf.constant([[2.0, 1.0, -1.0, 3.0], [0.5, 0.2, 4.0, -2.0]])
LABELS = tf.constant([1, 0])
CLASS_MASK = tf.constant([True, True, False, False])


def test_cl_mask_restricts_the_current_loss_to_the_task_classes():
    method = _method("derpp")
    expected = cross_entropy(LABELS, LOGITS[:, :2])
    np.testing.assert_allclose(method.current_loss(LABELS, LOGITS, CLASS_MASK), expected,
                               rtol=1e-6)
    shifted = LOGITS + tf.constant([[0.0, 0.0, 50.0, -50.0]])  # other tasks' logits change
    np.testing.assert_allclose(method.current_loss(LABELS, shifted, CLASS_MASK), expected,
                               rtol=1e-6)
    unmasked = _method("derpp", cl_mask=False)
    np.testing.assert_allclose(unmasked.current_loss(LABELS, LOGITS, CLASS_MASK),
                               cross_entropy(LABELS, LOGITS), rtol=1e-6)


def test_cl_mask_with_constant_other_logits_moves_only_the_task_classes():
    method = _method("derpp", masked_logits="constant")
    logits = tf.Variable(LOGITS)
    with tf.GradientTape() as tape:
        loss = method.current_loss(LABELS, logits, CLASS_MASK)
    gradient = tape.gradient(loss, logits).numpy()
    np.testing.assert_allclose(loss, cross_entropy(LABELS, LOGITS), rtol=1e-6)
    assert np.all(gradient[:, 2:] == 0) and np.all(gradient[:, :2] != 0)
    with pytest.raises(ConfigError, match="masked_logits='soft' is invalid"):
        _method("derpp", masked_logits="soft")


def _draw(seed, labels=(0, 3)):
    rng = np.random.default_rng(seed)
    images = tf.constant(rng.normal(size=(2, 4)).astype(np.float32))
    stored = tf.constant(rng.normal(size=(2, 4)).astype(np.float32))
    return images, tf.constant(labels), stored


def _forward(images):
    return images * 2.0  # a stand-in network: logits are a fixed function of the input


def test_er_replay_term_is_cross_entropy_on_the_replay_batch():
    images, labels, _ = draw = _draw(0)
    np.testing.assert_allclose(_method("er").replay_loss(_forward, [draw]),
                               cross_entropy(labels, _forward(images)), rtol=1e-6)


def test_der_replay_term_is_alpha_times_logit_mse():
    images, _, stored = draw = _draw(1)
    expected = 0.3 * np.mean((_forward(images).numpy() - stored.numpy()) ** 2)
    np.testing.assert_allclose(_method("der", alpha=0.3).replay_loss(_forward, [draw]), expected,
                               rtol=1e-6)


def test_derpp_combines_mse_on_draw_a_and_ce_on_independent_draw_b():
    draw_a, draw_b = _draw(2), _draw(3, labels=(2, 1))
    mse = np.mean((_forward(draw_a[0]).numpy() - draw_a[2].numpy()) ** 2)
    ce = cross_entropy(draw_b[1], _forward(draw_b[0])).numpy()
    np.testing.assert_allclose(_method("derpp", 0.1, 0.5).replay_loss(_forward, [draw_a, draw_b]),
                               0.1 * mse + 0.5 * ce, rtol=1e-6)


def test_derpp_with_a_shared_draw_forwards_one_draw_once_for_both_terms():
    images, labels, stored = draw = _draw(4, labels=(2, 1))
    calls = []

    def forward(x):
        calls.append(x)
        return _forward(x)

    method = _method("derpp", 0.1, 0.5, shared_draw=True)
    assert (method.replay_draws, method.term_draws) == (1, (0, 0))
    mse = np.mean((_forward(images).numpy() - stored.numpy()) ** 2)
    ce = cross_entropy(labels, _forward(images)).numpy()
    np.testing.assert_allclose(method.replay_loss(forward, [draw]), 0.1 * mse + 0.5 * ce,
                               rtol=1e-6)
    assert len(calls) == 1
    assert _method("derpp").replay_draws == 2
    with pytest.raises(ConfigError, match="shared_draw=True is invalid: der has 1"):
        _method("der", shared_draw=True)


def test_joint_trains_on_the_union_of_seen_tasks_without_cl_mask(idx_folder, make_config):
    from sparcl_tf.data import build_tasks, load_source
    config = make_config("joint")
    tasks = build_tasks(load_source(config.data), config.data, 0)
    method = _method("joint")
    x, y, ids = method.task_training_data(tasks, 2)
    assert len(x) == len(y) == len(ids) == 3 * 64 and set(np.unique(y)) == set(range(6))
    np.testing.assert_allclose(method.current_loss(LABELS, LOGITS, CLASS_MASK),
                               cross_entropy(LABELS, LOGITS), rtol=1e-6)
    assert _method("finetune").task_training_data(tasks, 2)[0].shape[0] == 64


def test_unknown_method_is_a_config_error():
    with pytest.raises(ConfigError, match="method.name"):
        _method("ewc")


NAN = np.nan
MATRIX = [[90, NAN, NAN], [70, 80, NAN], [60, 75, 95]]


def test_accuracy_matrix_summaries_match_hand_computation():
    assert metrics.average_accuracy(MATRIX) == pytest.approx((60 + 75 + 95) / 3)
    assert metrics.average_accuracy(MATRIX, after_task=1) == pytest.approx(75)
    assert metrics.forgetting(MATRIX) == pytest.approx(((90 - 60) + (80 - 75)) / 2)
    assert metrics.backward_transfer(MATRIX) == pytest.approx(((60 - 90) + (75 - 80)) / 2)
    assert metrics.learning_accuracy(MATRIX) == pytest.approx((90 + 80 + 95) / 3)
    assert metrics.forgetting([[50.0]]) == 0.0 and metrics.backward_transfer([[50.0]]) == 0.0


def test_forgetting_uses_the_best_past_accuracy_not_the_first():
    matrix = [[40, NAN, NAN], [70, 80, NAN], [50, 80, 90]]
    assert metrics.forgetting(matrix) == pytest.approx(((70 - 50) + (80 - 80)) / 2)
