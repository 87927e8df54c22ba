"""DIoU and EIoU box similarities (utod ``iou_loss`` contract).

Both map ``pred`` and ``target``, broadcast-compatible float tensors ``[..., 4]`` of
normalised ``(cx, cy, w, h)``, to the similarity ``X`` of shape ``[...]``: 1 for identical
boxes (up to ``eps``), lower is worse, negative for distant boxes. utod's loss is
``mean(1 - X)`` over positives. Differentiable w.r.t. ``pred``; safe inside ``tf.function``.

Formulas (``eps`` as in utod's built-in IoU family, so values are comparable)::

    IoU   = inter / (area_p + area_t - inter + eps)
    rho2  = (cx_p - cx_t)^2 + (cy_p - cy_t)^2        squared centre distance
    cw,ch = width, height of the smallest enclosing box
    DIoU  = IoU - rho2 / max(cw^2 + ch^2, eps)                       (Zheng et al., 2020)
    EIoU  = DIoU - (w_p - w_t)^2 / max(cw^2, eps) - (h_p - h_t)^2 / max(ch^2, eps)
                                                                      (Zhang et al., 2022)
"""

from __future__ import annotations

from typing import NamedTuple

from utod._keras import tf


class BoxGeometry(NamedTuple):
    """Pairwise quantities of two aligned box tensors, each of shape ``[...]``."""

    iou: tf.Tensor
    rho2: tf.Tensor  # squared distance between the centres
    cw: tf.Tensor  # enclosing box width
    ch: tf.Tensor  # enclosing box height
    dw: tf.Tensor  # w_p - w_t
    dh: tf.Tensor  # h_p - h_t


def box_geometry(pred: tf.Tensor, target: tf.Tensor, eps: float) -> BoxGeometry:
    """IoU, centre distance and enclosing box of ``pred`` vs ``target`` (cxcywh, ``[..., 4]``)."""
    pred = tf.convert_to_tensor(pred)
    target = tf.cast(target, pred.dtype)
    pcx, pcy, pw, ph = tf.unstack(pred, axis=-1)
    tcx, tcy, tw, th = tf.unstack(target, axis=-1)
    px1, px2, py1, py2 = pcx - pw / 2, pcx + pw / 2, pcy - ph / 2, pcy + ph / 2
    tx1, tx2, ty1, ty2 = tcx - tw / 2, tcx + tw / 2, tcy - th / 2, tcy + th / 2
    inter = tf.maximum(tf.minimum(px2, tx2) - tf.maximum(px1, tx1), 0.0) * \
        tf.maximum(tf.minimum(py2, ty2) - tf.maximum(py1, ty1), 0.0)
    area_p = tf.maximum(px2 - px1, 0.0) * tf.maximum(py2 - py1, 0.0)
    area_t = tf.maximum(tx2 - tx1, 0.0) * tf.maximum(ty2 - ty1, 0.0)
    iou = inter / (area_p + area_t - inter + eps)
    cw = tf.maximum(tf.maximum(px2, tx2) - tf.minimum(px1, tx1), 0.0)
    ch = tf.maximum(tf.maximum(py2, ty2) - tf.minimum(py1, ty1), 0.0)
    rho2 = tf.square(pcx - tcx) + tf.square(pcy - tcy)
    return BoxGeometry(iou, rho2, cw, ch, pw - tw, ph - th)


class DIoU:
    """Distance-IoU similarity: IoU minus the squared centre distance over the squared
    diagonal of the enclosing box. Range (-1, 1]."""

    def __init__(self, eps: float = 1e-7):
        if not eps > 0:
            raise ValueError(f"diou: eps must be > 0, got {eps}")
        self.eps = float(eps)

    def __call__(self, pred: tf.Tensor, target: tf.Tensor) -> tf.Tensor:
        g = box_geometry(pred, target, self.eps)
        return g.iou - g.rho2 / tf.maximum(tf.square(g.cw) + tf.square(g.ch), self.eps)


class EIoU(DIoU):
    """Efficient-IoU similarity: DIoU minus the squared width and height differences over
    the squared enclosing width and height. Range (-3, 1]."""

    def __call__(self, pred: tf.Tensor, target: tf.Tensor) -> tf.Tensor:
        g = box_geometry(pred, target, self.eps)
        diou = g.iou - g.rho2 / tf.maximum(tf.square(g.cw) + tf.square(g.ch), self.eps)
        return (diou - tf.square(g.dw) / tf.maximum(tf.square(g.cw), self.eps)
                - tf.square(g.dh) / tf.maximum(tf.square(g.ch), self.eps))
