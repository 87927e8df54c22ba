"""IoU / GIoU / CIoU similarities against the reference values of docs/loss.md §12.1."""

from __future__ import annotations

import math

import numpy as np
import pytest
from utod_plugins.impl.assigners import pairwise_iou
from utod_plugins.impl.iou_losses import CIoU, GIoU, IoU

from utod._keras import tf
from utod.registry import build_registry

P = [0.50, 0.50, 0.20, 0.30]
T = [0.55, 0.45, 0.25, 0.20]
RTOL = 1e-5


def _x(fn, p, t) -> float:
    return float(fn(tf.constant(p, tf.float32), tf.constant(t, tf.float32)))


@pytest.mark.parametrize(
    ("cls", "expected"),
    [(IoU, 0.46666604444527393), (GIoU, 0.37575706372888684), (CIoU, 0.43389045819124544)],
)
def test_reference_pair(cls, expected):
    assert _x(cls(), P, T) == pytest.approx(expected, rel=RTOL)


def test_identical_boxes_keep_eps_in_union():
    assert _x(CIoU(), P, P) == pytest.approx(0.9999983333361111, rel=RTOL)
    assert _x(IoU(), P, P) < 1.0


@pytest.mark.parametrize(
    ("cls", "expected"), [(IoU, 0.0), (GIoU, -0.933333125925972), (CIoU, -0.6629360752235667)]
)
def test_disjoint_boxes(cls, expected):
    value = _x(cls(), [0.2, 0.2, 0.1, 0.1], [0.8, 0.7, 0.2, 0.1])
    assert value == pytest.approx(expected, rel=RTOL, abs=1e-7)


def test_pairwise_iou_uses_its_own_eps():
    value = float(pairwise_iou(tf.constant(P), tf.constant(T)))
    assert value == pytest.approx(0.4666604445274062, rel=RTOL)


def test_broadcasting_and_shape():
    pred = tf.random.uniform([2, 3, 4, 4, 4], 0.1, 0.9, seed=1)
    target = tf.constant(T)
    for fn in (IoU(), GIoU(), CIoU()):
        out = fn(pred, target)
        assert out.shape == (2, 3, 4, 4)
        assert np.all(np.isfinite(out.numpy()))


def test_ciou_alpha_is_constant_in_backward():
    """d CIoU / d pred equals the derivative of IoU - rho^2/c^2 - alpha0 * v with alpha0 a number."""
    eps = 1e-7
    pred = tf.Variable(P, dtype=tf.float64)
    target = tf.constant(T, tf.float64)
    ciou = CIoU(eps)
    with tf.GradientTape() as tape:
        value = ciou(pred, target)
    # CIoU casts to float32; build the reference in float32 too.
    g = tape.gradient(value, pred).numpy()

    p32 = tf.Variable(P, dtype=tf.float32)
    t32 = tf.constant(T, tf.float32)
    alpha0 = 0.0672621209679186
    with tf.GradientTape() as tape:
        iou = IoU(eps)(p32, t32)
        pcx, pcy, pw, ph = tf.unstack(p32)
        tcx, tcy, tw, th = tf.unstack(t32)
        cw = tf.maximum(pcx + pw / 2, tcx + tw / 2) - tf.minimum(pcx - pw / 2, tcx - tw / 2)
        ch = tf.maximum(pcy + ph / 2, tcy + th / 2) - tf.minimum(pcy - ph / 2, tcy - th / 2)
        rho2 = (pcx - tcx) ** 2 + (pcy - tcy) ** 2
        v = 4 / math.pi**2 * (tf.atan(pw / (ph + eps)) - tf.atan(tw / (th + eps))) ** 2
        ref = iou - rho2 / (cw**2 + ch**2) - alpha0 * v
    g_ref = tape.gradient(ref, p32).numpy()
    np.testing.assert_allclose(g, g_ref, rtol=1e-4, atol=1e-6)


def test_gradients_are_finite_for_identical_boxes():
    pred = tf.Variable([P])
    for fn in (IoU(), GIoU(), CIoU()):
        with tf.GradientTape() as tape:
            value = tf.reduce_sum(1.0 - fn(pred, tf.constant([P])))
        assert np.all(np.isfinite(tape.gradient(value, pred).numpy()))


def test_registered_under_their_names():
    reg = build_registry()
    for name, cls in (("iou", IoU), ("giou", GIoU), ("ciou", CIoU)):
        obj = reg.create("iou_loss", name, {"eps": 1e-6})
        assert isinstance(obj, cls) and obj.eps == 1e-6
