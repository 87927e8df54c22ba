"""Aligned box similarities IoU, GIoU and CIoU (docs/loss.md §2.1).

Every class maps ``pred`` and ``target`` float32 ``[..., 4]`` (normalised cx, cy, w, h,
broadcast-compatible) to the similarity ``X`` of shape ``[...]``. The box loss is
``1 - X``; the quality / objectness target is ``clip(stop_gradient(X), 0, 1)``.

The maths is :mod:`utod.sdk.boxes` (shared with the assigners, NMS and plugins). All three
use ``eps`` inside the union ``U = area_p + area_t - inter + eps`` and reuse that
``U`` in GIoU, exactly like the PyTorch reference (so identical boxes give 1 - O(eps/area)).
"""

from __future__ import annotations

from utod._keras import tf
from utod.sdk import boxes


def _as_float(pred: tf.Tensor, target: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    return tf.cast(pred, tf.float32), tf.cast(target, tf.float32)


class IoU:
    """Plain IoU ``inter / (area_p + area_t - inter + eps)``; loss ``1 - IoU``."""

    def __init__(self, eps: float = 1e-7) -> None:
        self.eps = float(eps)

    def __call__(self, pred: tf.Tensor, target: tf.Tensor) -> tf.Tensor:
        pred, target = _as_float(pred, target)
        return boxes.iou(pred, target, eps=self.eps)


class GIoU:
    """Generalised IoU ``IoU - (C - U) / C`` with ``C = enclosing area + eps``; in [-1, 1]."""

    def __init__(self, eps: float = 1e-7) -> None:
        self.eps = float(eps)

    def __call__(self, pred: tf.Tensor, target: tf.Tensor) -> tf.Tensor:
        pred, target = _as_float(pred, target)
        return boxes.giou(pred, target, eps=self.eps)


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
        return boxes.ciou(pred, target, eps=self.eps)
