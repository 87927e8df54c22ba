"""Aligned box similarities IoU, GIoU and CIoU (docs/loss.md §2.1).

Every class maps ``pred`` and ``target`` float32 ``[..., 4]`` (normalised cx, cy, w, h,
broadcast-compatible) to the similarity ``X`` of shape ``[...]``. The box loss is
``1 - X``; the quality / objectness target is ``clip(stop_gradient(X), 0, 1)``.

All three use ``eps`` inside the union ``U = area_p + area_t - inter + eps`` and reuse that
``U`` in GIoU, exactly like the PyTorch reference (so identical boxes give 1 - O(eps/area)).
"""

from __future__ import annotations

import math
from typing import NamedTuple

from utod._keras import tf


class _Geometry(NamedTuple):
    iou: tf.Tensor  # [...] inter / U
    union: tf.Tensor  # [...] U (eps included)
    enclose_w: tf.Tensor  # [...] width of the smallest enclosing box (>= 0)
    enclose_h: tf.Tensor  # [...] height of the smallest enclosing box (>= 0)


def _geometry(pred: tf.Tensor, target: tf.Tensor, eps: float) -> _Geometry:
    pcx, pcy, pw, ph = tf.unstack(pred, 4, axis=-1)
    tcx, tcy, tw, th = tf.unstack(target, 4, axis=-1)
    px1, px2 = pcx - pw / 2, pcx + pw / 2
    py1, py2 = pcy - ph / 2, pcy + ph / 2
    tx1, tx2 = tcx - tw / 2, tcx + tw / 2
    ty1, ty2 = tcy - th / 2, tcy + th / 2
    inter = tf.maximum(tf.minimum(px2, tx2) - tf.maximum(px1, tx1), 0.0) * tf.maximum(
        tf.minimum(py2, ty2) - tf.maximum(py1, ty1), 0.0
    )
    area_p = tf.maximum(px2 - px1, 0.0) * tf.maximum(py2 - py1, 0.0)
    area_t = tf.maximum(tx2 - tx1, 0.0) * tf.maximum(ty2 - ty1, 0.0)
    union = area_p + area_t - inter + eps
    enclose_w = tf.maximum(tf.maximum(px2, tx2) - tf.minimum(px1, tx1), 0.0)
    enclose_h = tf.maximum(tf.maximum(py2, ty2) - tf.minimum(py1, ty1), 0.0)
    return _Geometry(inter / union, union, enclose_w, enclose_h)


def _as_float(pred: tf.Tensor, target: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    return tf.cast(pred, tf.float32), tf.cast(target, tf.float32)


class IoU:
    """Plain IoU ``inter / (area_p + area_t - inter + eps)``; loss ``1 - IoU``."""

    def __init__(self, eps: float = 1e-7) -> None:
        self.eps = float(eps)

    def __call__(self, pred: tf.Tensor, target: tf.Tensor) -> tf.Tensor:
        pred, target = _as_float(pred, target)
        return _geometry(pred, target, self.eps).iou


class GIoU:
    """Generalised IoU ``IoU - (C - U) / C`` with ``C = enclosing area + eps``; in [-1, 1]."""

    def __init__(self, eps: float = 1e-7) -> None:
        self.eps = float(eps)

    def __call__(self, pred: tf.Tensor, target: tf.Tensor) -> tf.Tensor:
        pred, target = _as_float(pred, target)
        g = _geometry(pred, target, self.eps)
        enclose = g.enclose_w * g.enclose_h + self.eps
        return g.iou - (enclose - g.union) / enclose


class CIoU:
    """Complete IoU ``IoU - rho^2 / c^2 - alpha * v``.

    ``rho^2`` is the squared centre distance, ``c^2 = max(cw^2 + ch^2, eps)`` the squared
    diagonal of the enclosing box, ``v = 4/pi^2 (atan(w_p/(h_p+eps)) - atan(w_t/(h_t+eps)))^2``
    and ``alpha = v / (1 - IoU + v + eps)`` is treated as a constant in backward
    (``tf.stop_gradient``), as in the PyTorch reference.
    """

    def __init__(self, eps: float = 1e-7) -> None:
        self.eps = float(eps)

    def __call__(self, pred: tf.Tensor, target: tf.Tensor) -> tf.Tensor:
        pred, target = _as_float(pred, target)
        eps = self.eps
        g = _geometry(pred, target, eps)
        pcx, pcy, pw, ph = tf.unstack(pred, 4, axis=-1)
        tcx, tcy, tw, th = tf.unstack(target, 4, axis=-1)
        rho2 = tf.square(pcx - tcx) + tf.square(pcy - tcy)
        c2 = tf.maximum(tf.square(g.enclose_w) + tf.square(g.enclose_h), eps)
        v = (4.0 / math.pi**2) * tf.square(tf.atan(pw / (ph + eps)) - tf.atan(tw / (th + eps)))
        alpha = tf.stop_gradient(v / (1.0 - g.iou + v + eps))
        return g.iou - rho2 / c2 - alpha * v
