"""Box maths for plugin authors and for utod itself: format conversions and the IoU family.

This is the one home of TensorFlow box geometry in utod (the built-in losses, assigners and
NMS use it, and so does the example plugin package). Every function takes boxes as float
tensors ``[..., 4]`` and broadcasts like any element-wise TensorFlow op; ``b`` is cast to
``a``'s dtype. Works inside ``tf.function`` and is differentiable where the maths is.

Formats (``fmt``):

* ``"cxcywh"`` -- ``(cx, cy, w, h)``, utod's format everywhere (normalised to the input);
* ``"xyxy"``   -- corners ``(x1, y1, x2, y2)``.

The IoU family (formulas in ``docs/loss.md §2``), all with an explicit ``eps`` because each
use has its own (1e-7 for the box losses, 1e-6 for SimOTA's pairwise IoU, ~0 for NMS):

    inter = overlap width * overlap height (each clamped at 0)
    U     = area_a + area_b - inter + eps          (areas of negative-size boxes count as 0)
    IoU   = inter / U
    GIoU  = IoU - (C - U) / C,  C = enclosing area + eps
    DIoU  = IoU - rho2 / max(cw^2 + ch^2, eps)    (rho2: squared centre distance)
    CIoU  = DIoU - alpha * v,  v = 4/pi^2 (atan(w_a/(h_a+eps)) - atan(w_b/(h_b+eps)))^2,
            alpha = v / (1 - IoU + v + eps) without gradient

Use :func:`pairwise_iou` for every-box-against-every-box ``[..., N, M]`` matrices and
:func:`shape_iou` for the size-only IoU of boxes sharing a centre (anchor matching).
"""

from __future__ import annotations

import math
from typing import NamedTuple

from utod._keras import tf

BOX_FORMATS: tuple[str, ...] = ("cxcywh", "xyxy")


def _check_format(fmt: str) -> None:
    if fmt not in BOX_FORMATS:
        raise ValueError(f"unknown box format '{fmt}'; use one of {', '.join(BOX_FORMATS)}")


# ---------------------------------------------------------------------------- conversions
def cxcywh_to_xyxy(boxes: tf.Tensor) -> tf.Tensor:
    """``[..., 4]`` (cx, cy, w, h) -> ``[..., 4]`` (x1, y1, x2, y2)."""
    cx, cy, w, h = tf.unstack(boxes, axis=-1)
    return tf.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=-1)


def xyxy_to_cxcywh(boxes: tf.Tensor) -> tf.Tensor:
    """``[..., 4]`` (x1, y1, x2, y2) -> ``[..., 4]`` (cx, cy, w, h)."""
    x1, y1, x2, y2 = tf.unstack(boxes, axis=-1)
    return tf.stack([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1], axis=-1)


def convert(boxes: tf.Tensor, source: str, target: str) -> tf.Tensor:
    """Convert ``[..., 4]`` boxes between ``"cxcywh"`` and ``"xyxy"``."""
    _check_format(source)
    _check_format(target)
    if source == target:
        return boxes
    return cxcywh_to_xyxy(boxes) if source == "cxcywh" else xyxy_to_cxcywh(boxes)


class _Corners(NamedTuple):
    x1: tf.Tensor
    y1: tf.Tensor
    x2: tf.Tensor
    y2: tf.Tensor
    cx: tf.Tensor
    cy: tf.Tensor


def _corners(boxes: tf.Tensor, fmt: str) -> _Corners:
    if fmt == "cxcywh":
        cx, cy, w, h = tf.unstack(boxes, 4, axis=-1)
        return _Corners(cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2, cx, cy)
    x1, y1, x2, y2 = tf.unstack(boxes, 4, axis=-1)
    return _Corners(x1, y1, x2, y2, (x1 + x2) / 2, (y1 + y2) / 2)


# ---------------------------------------------------------------------------- IoU family
class BoxGeometry(NamedTuple):
    """What the IoU family is made of, for boxes ``a`` and ``b`` (each field ``[...]``)."""

    iou: tf.Tensor  # inter / union
    inter: tf.Tensor  # overlap area (>= 0)
    union: tf.Tensor  # area_a + area_b - inter + eps
    enclose_w: tf.Tensor  # width of the smallest box enclosing both (>= 0)
    enclose_h: tf.Tensor  # height of the smallest box enclosing both (>= 0)
    centre_dist2: tf.Tensor  # squared distance between the two centres


def box_geometry(a: tf.Tensor, b: tf.Tensor, *, eps: float = 1e-7, fmt: str = "cxcywh") -> BoxGeometry:
    """Overlap, union, IoU, enclosing box and centre distance of ``a`` vs ``b`` (broadcast)."""
    _check_format(fmt)
    a = tf.convert_to_tensor(a)
    b = tf.cast(b, a.dtype)
    p, t = _corners(a, fmt), _corners(b, fmt)
    inter = tf.maximum(tf.minimum(p.x2, t.x2) - tf.maximum(p.x1, t.x1), 0.0) * tf.maximum(
        tf.minimum(p.y2, t.y2) - tf.maximum(p.y1, t.y1), 0.0
    )
    area_a = tf.maximum(p.x2 - p.x1, 0.0) * tf.maximum(p.y2 - p.y1, 0.0)
    area_b = tf.maximum(t.x2 - t.x1, 0.0) * tf.maximum(t.y2 - t.y1, 0.0)
    union = area_a + area_b - inter + eps
    enclose_w = tf.maximum(tf.maximum(p.x2, t.x2) - tf.minimum(p.x1, t.x1), 0.0)
    enclose_h = tf.maximum(tf.maximum(p.y2, t.y2) - tf.minimum(p.y1, t.y1), 0.0)
    centre_dist2 = tf.square(p.cx - t.cx) + tf.square(p.cy - t.cy)
    return BoxGeometry(inter / union, inter, union, enclose_w, enclose_h, centre_dist2)


def iou(a: tf.Tensor, b: tf.Tensor, *, eps: float = 1e-7, fmt: str = "cxcywh") -> tf.Tensor:
    """``inter / (area_a + area_b - inter + eps)``, shape ``[...]``."""
    return box_geometry(a, b, eps=eps, fmt=fmt).iou


def giou(a: tf.Tensor, b: tf.Tensor, *, eps: float = 1e-7, fmt: str = "cxcywh") -> tf.Tensor:
    """Generalised IoU ``IoU - (C - U) / C`` with ``C`` the enclosing area + eps; in [-1, 1]."""
    g = box_geometry(a, b, eps=eps, fmt=fmt)
    enclose = g.enclose_w * g.enclose_h + eps
    return g.iou - (enclose - g.union) / enclose


def diou(a: tf.Tensor, b: tf.Tensor, *, eps: float = 1e-7, fmt: str = "cxcywh") -> tf.Tensor:
    """Distance-IoU ``IoU - rho2 / max(cw^2 + ch^2, eps)``; in (-1, 1]."""
    g = box_geometry(a, b, eps=eps, fmt=fmt)
    return g.iou - g.centre_dist2 / tf.maximum(tf.square(g.enclose_w) + tf.square(g.enclose_h), eps)


def ciou(a: tf.Tensor, b: tf.Tensor, *, eps: float = 1e-7, fmt: str = "cxcywh") -> tf.Tensor:
    """Complete IoU ``DIoU - alpha * v`` (aspect term ``v``; ``alpha`` constant in backward)."""
    a = tf.convert_to_tensor(a)
    b = tf.cast(b, a.dtype)
    g = box_geometry(a, b, eps=eps, fmt=fmt)
    wa, ha = _sizes(a, fmt)
    wb, hb = _sizes(b, fmt)
    c2 = tf.maximum(tf.square(g.enclose_w) + tf.square(g.enclose_h), eps)
    v = (4.0 / math.pi**2) * tf.square(tf.atan(wa / (ha + eps)) - tf.atan(wb / (hb + eps)))
    alpha = tf.stop_gradient(v / (1.0 - g.iou + v + eps))
    return g.iou - g.centre_dist2 / c2 - alpha * v


def _sizes(boxes: tf.Tensor, fmt: str) -> tuple[tf.Tensor, tf.Tensor]:
    if fmt == "cxcywh":
        _, _, w, h = tf.unstack(boxes, 4, axis=-1)
        return w, h
    x1, y1, x2, y2 = tf.unstack(boxes, 4, axis=-1)
    return x2 - x1, y2 - y1


def pairwise_iou(a: tf.Tensor, b: tf.Tensor, *, eps: float = 1e-7, fmt: str = "cxcywh") -> tf.Tensor:
    """IoU of every box of ``a`` ``[..., N, 4]`` with every box of ``b`` ``[..., M, 4]`` ->
    ``[..., N, M]`` (leading axes broadcast)."""
    return iou(tf.expand_dims(a, -2), tf.expand_dims(b, -3), eps=eps, fmt=fmt)


def shape_iou(wh_a: tf.Tensor, wh_b: tf.Tensor, *, eps: float = 1e-7) -> tf.Tensor:
    """IoU of two box *sizes* ``[..., 2]`` (w, h) placed on the same centre -> ``[...]``:
    ``min(w)·min(h) / (w_a·h_a + w_b·h_b − min(w)·min(h) + eps)`` (anchor matching)."""
    wh_a = tf.convert_to_tensor(wh_a)
    wh_b = tf.cast(wh_b, wh_a.dtype)
    aw, ah = wh_a[..., 0], wh_a[..., 1]
    bw, bh = wh_b[..., 0], wh_b[..., 1]
    inter = tf.minimum(aw, bw) * tf.minimum(ah, bh)
    return inter / (aw * ah + bw * bh - inter + eps)


# ---------------------------------------------------------------------------- the grid
def cell_centres(height, width, dtype=tf.float32) -> tuple[tf.Tensor, tf.Tensor]:
    """Normalised centres of the output grid's cells: ``(cx, cy)``, each ``[H, W]``
    (``cx = (col + 0.5) / W``, ``cy = (row + 0.5) / H``)."""
    cols = (tf.cast(tf.range(width), dtype) + 0.5) / tf.cast(width, dtype)
    rows = (tf.cast(tf.range(height), dtype) + 0.5) / tf.cast(height, dtype)
    return tf.meshgrid(cols, rows)
