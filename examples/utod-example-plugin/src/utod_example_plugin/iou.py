"""DIoU and EIoU box similarities (utod ``iou_loss`` contract).

Both map ``pred`` and ``target``, broadcast-compatible float tensors ``[..., 4]`` of
normalised ``(cx, cy, w, h)``, to the similarity ``X`` of shape ``[...]``: 1 for identical
boxes (up to ``eps``), lower is worse, negative for distant boxes. utod's loss is
``mean(1 - X)`` over positives. Differentiable w.r.t. ``pred``; safe inside ``tf.function``.

The shared geometry (overlap, union, enclosing box, centre distance) comes from utod's SDK,
:func:`utod.sdk.boxes.box_geometry`, the same code as the built-in IoU family, so values are
directly comparable. Formulas (``eps`` as in the built-ins)::

    IoU   = inter / (area_p + area_t - inter + eps)
    rho2  = (cx_p - cx_t)^2 + (cy_p - cy_t)^2        squared centre distance
    cw,ch = width, height of the smallest enclosing box
    DIoU  = IoU - rho2 / max(cw^2 + ch^2, eps)                       (Zheng et al., 2020)
    EIoU  = DIoU - (w_p - w_t)^2 / max(cw^2, eps) - (h_p - h_t)^2 / max(ch^2, eps)
                                                                      (Zhang et al., 2022)
"""

from __future__ import annotations

from utod._keras import tf
from utod.sdk.boxes import box_geometry


class DIoU:
    """Distance-IoU similarity: IoU minus the squared centre distance over the squared
    diagonal of the enclosing box. Range (-1, 1]."""

    def __init__(self, eps: float = 1e-7):
        if not eps > 0:
            raise ValueError(f"diou: eps must be > 0, got {eps}")
        self.eps = float(eps)

    def __call__(self, pred: tf.Tensor, target: tf.Tensor) -> tf.Tensor:
        g = box_geometry(pred, target, eps=self.eps)
        return g.iou - g.centre_dist2 / tf.maximum(tf.square(g.enclose_w) + tf.square(g.enclose_h), self.eps)


class EIoU(DIoU):
    """Efficient-IoU similarity: DIoU minus the squared width and height differences over
    the squared enclosing width and height. Range (-3, 1]."""

    def __call__(self, pred: tf.Tensor, target: tf.Tensor) -> tf.Tensor:
        pred = tf.convert_to_tensor(pred)
        target = tf.cast(target, pred.dtype)
        g = box_geometry(pred, target, eps=self.eps)
        cw2, ch2 = tf.square(g.enclose_w), tf.square(g.enclose_h)
        diou = g.iou - g.centre_dist2 / tf.maximum(cw2 + ch2, self.eps)
        dw = pred[..., 2] - target[..., 2]
        dh = pred[..., 3] - target[..., 3]
        return diou - tf.square(dw) / tf.maximum(cw2, self.eps) - tf.square(dh) / tf.maximum(ch2, self.eps)
