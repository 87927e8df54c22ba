"""Distillation terms: raw-map MSE, feature MSE with resize and a trainable 1x1 adapter."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from utod._keras import tf
from utod.distill import DistillLoss, check_teacher_compatible
from utod.errors import ConfigError

RNG = np.random.default_rng(0)


def _t(*shape) -> tf.Tensor:
    return tf.constant(RNG.normal(size=shape).astype(np.float32))


def test_logit_term_is_weighted_mse_over_the_raw_map():
    s, t = _t(2, 4, 4, 12), _t(2, 4, 4, 12)
    out = DistillLoss(0.5, 0.0)(s, t)
    expected = 0.5 * np.mean((s.numpy() - t.numpy()) ** 2)
    assert float(out["distill_logit"]) == pytest.approx(expected, rel=1e-5)
    assert float(out["distill_feature"]) == 0.0
    assert float(out["distill"]) == pytest.approx(expected, rel=1e-5)


def test_teacher_gets_no_gradient_and_student_does():
    s, t = tf.Variable(_t(1, 2, 2, 12)), tf.Variable(_t(1, 2, 2, 12))
    sf, tfeat = tf.Variable(_t(1, 2, 2, 8)), tf.Variable(_t(1, 2, 2, 8))
    with tf.GradientTape() as tape:
        out = DistillLoss(1.0, 1.0)(s, t, sf, tfeat)
    gs, gt, gsf, gtf = tape.gradient(out["distill"], [s, t, sf, tfeat])
    assert gt is None and gtf is None
    np.testing.assert_allclose(gs.numpy(), 2 * (s.numpy() - t.numpy()) / s.numpy().size, rtol=1e-5)
    assert np.abs(gsf.numpy()).sum() > 0


def test_raw_maps_of_different_layout_are_rejected():
    with pytest.raises(ConfigError, match="share anchors and classes"):
        DistillLoss(1.0, 0.0)(_t(1, 2, 2, 12), _t(1, 2, 2, 14))


def test_teacher_grid_is_resized_bilinearly():
    s_raw, t_raw = _t(1, 4, 4, 6), _t(1, 8, 8, 6)
    s_feat, t_feat = _t(1, 4, 4, 8), _t(1, 8, 8, 8)
    out = DistillLoss(1.0, 2.0)(s_raw, t_raw, s_feat, t_feat)
    t_small = tf.image.resize(t_raw, [4, 4]).numpy()
    f_small = tf.image.resize(t_feat, [4, 4]).numpy()
    assert float(out["distill_logit"]) == pytest.approx(np.mean((s_raw.numpy() - t_small) ** 2), rel=1e-5)
    assert float(out["distill_feature"]) == pytest.approx(2 * np.mean((s_feat.numpy() - f_small) ** 2), rel=1e-5)


def test_adapter_for_different_channels_is_trainable():
    s_feat, t_feat = _t(2, 4, 4, 8), _t(2, 4, 4, 16)
    distill = DistillLoss(0.0, 1.0, student_channels=8, teacher_channels=16)
    assert len(distill.trainable_variables) == 2  # 1x1 kernel + bias
    assert distill.trainable_variables[0].shape == (1, 1, 8, 16)
    variables = distill.trainable_variables

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            value = distill(tf.zeros([2, 4, 4, 12]), tf.zeros([2, 4, 4, 12]), s_feat, t_feat)["distill"]
        grads = tape.gradient(value, variables)
        for v, g in zip(variables, grads):
            v.assign_sub(0.5 * g)
        return value

    first = float(step())
    for _ in range(20):
        last = float(step())
    assert last < 0.9 * first
    assert step.experimental_get_tracing_count() == 1


def test_unbuilt_adapter_inside_tf_function_is_an_error_and_eager_builds_it():
    s_feat, t_feat = _t(1, 2, 2, 4), _t(1, 2, 2, 6)
    distill = DistillLoss(0.0, 1.0)
    with pytest.raises(ConfigError, match=r"DistillLoss.build\(4, 6\)"):
        tf.function(lambda: distill(tf.zeros([1, 2, 2, 6]), tf.zeros([1, 2, 2, 6]), s_feat, t_feat))()
    eager = DistillLoss(0.0, 1.0)
    eager(tf.zeros([1, 2, 2, 6]), tf.zeros([1, 2, 2, 6]), s_feat, t_feat)
    assert len(eager.trainable_variables) == 2
    assert DistillLoss(0.0, 1.0, student_channels=4, teacher_channels=4).trainable_variables == []


def test_feature_term_needs_features():
    with pytest.raises(ConfigError, match="backbone features"):
        DistillLoss(0.0, 1.0)(_t(1, 2, 2, 6), _t(1, 2, 2, 6), None, None)
    with pytest.raises(ConfigError, match=">= 0"):
        DistillLoss(-1.0, 0.0)


def test_check_teacher_compatible():
    def model(**kw):
        base = dict(num_anchors=2, num_classes=1, has_quality=True, anchors=np.array([[0.1, 0.2], [0.3, 0.4]]))
        return SimpleNamespace(**{**base, **kw})

    check_teacher_compatible(model(), model())
    with pytest.raises(ConfigError, match="num_classes: student 1, teacher 2"):
        check_teacher_compatible(model(), model(num_classes=2))
    with pytest.raises(ConfigError, match="anchors"):
        check_teacher_compatible(model(), model(anchors=np.array([[0.1, 0.2], [0.3, 0.5]])))
    with pytest.raises(ConfigError, match="has_quality"):
        check_teacher_compatible(model(), model(has_quality=False))
