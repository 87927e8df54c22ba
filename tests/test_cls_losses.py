"""BCE and varifocal classification losses (docs/loss.md §4, §12.2)."""

from __future__ import annotations

import numpy as np
import pytest
from utod_plugins.impl.cls_losses import BCE, VFL

from utod._keras import tf
from utod.registry import build_registry


def _bce_np(x, t):
    return np.maximum(x, 0) - x * t + np.log1p(np.exp(-np.abs(x)))


def test_vfl_reference_vector():
    # [B, A, H, W, C] = [1, 1, 1, 4, 1]; the first two locations are positives.
    logits = tf.reshape(tf.constant([1.5, -0.5, 0.0, -2.0]), [1, 1, 1, 4, 1])
    targets = tf.reshape(tf.constant([1.0, 0.6, 0.0, 0.0]), [1, 1, 1, 4, 1])
    pos = tf.constant([[[[1.0, 1.0, 0.0, 0.0]]]])
    assert float(VFL()(logits, targets, pos)) == pytest.approx(0.1611247835, rel=1e-5)


def test_vfl_ignores_targets_at_negatives_and_trains_through_the_weight():
    logits = tf.Variable(tf.reshape(tf.constant([1.5, -0.5, 0.0, -2.0]), [1, 1, 1, 4, 1]))
    targets = tf.reshape(tf.constant([1.0, 0.6, 0.7, 0.0]), [1, 1, 1, 4, 1])  # 0.7 sits at a negative
    pos = tf.constant([[[[1.0, 1.0, 0.0, 0.0]]]])
    with tf.GradientTape() as tape:
        value = VFL()(logits, targets, pos)
    assert float(value) == pytest.approx(0.1611247835, rel=1e-5)
    grad = tape.gradient(value, logits).numpy().ravel()
    # At a negative, d/dx [BCE(x,0) * 0.75 sigmoid(x)^2] differs from the detached-weight gradient.
    x = 0.0
    p = 0.5
    detached = 0.75 * p**2 * p / 4
    full = detached + _bce_np(x, 0.0) * 0.75 * 2 * p * p * (1 - p) / 4
    assert grad[2] == pytest.approx(full, rel=1e-5)


def test_vfl_options():
    logits = tf.reshape(tf.constant([0.3, -1.0]), [1, 1, 1, 2, 1])
    targets = tf.zeros([1, 1, 1, 2, 1])
    pos = tf.zeros([1, 1, 1, 2])
    x = np.array([0.3, -1.0])
    p = 1 / (1 + np.exp(-x))
    expected = np.mean(_bce_np(x, 0.0) * 0.5 * p**3)
    assert float(VFL(alpha=0.5, gamma=3.0)(logits, targets, pos)) == pytest.approx(expected, rel=1e-5)


def test_bce_sums_over_positives_and_classes_divided_by_positive_count():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2, 2, 3, 3, 3)).astype(np.float32)
    targets = np.zeros_like(logits)
    pos = np.zeros((2, 2, 3, 3), np.float32)
    pos[0, 1, 2, 0] = pos[1, 0, 0, 1] = pos[1, 1, 1, 1] = 1
    targets[0, 1, 2, 0, 2] = 1
    targets[1, 0, 0, 1, 0] = 1
    targets[1, 1, 1, 1, [0, 1]] = 1  # multi-hot after a legacy collision
    expected = (_bce_np(logits, targets).sum(-1) * pos).sum() / 3
    got = float(BCE()(tf.constant(logits), tf.constant(targets), tf.constant(pos)))
    assert got == pytest.approx(expected, rel=1e-5)


def test_registered_with_params():
    reg = build_registry()
    assert isinstance(reg.create("cls_loss", "bce"), BCE)
    vfl = reg.create("cls_loss", "vfl", {"alpha": 0.5})
    assert isinstance(vfl, VFL) and vfl.alpha == 0.5 and vfl.gamma == 2.0
