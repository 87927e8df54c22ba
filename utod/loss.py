"""The detection loss: assigner + IoU similarity + classification loss (plugins), composed
with objectness and the IoU-aware quality term (docs/loss.md §2-§6).

``DetectionLoss.__call__`` runs inside one ``tf.function`` on fixed shapes: ``raw``
float32/float16 [B, Hg, Wg, A*D] (NHWC raw map), ``gt_boxes`` float32 [B, M, 4] normalised
cxcywh (zero padded), ``gt_labels`` int32 [B, M] (padding -1), ``gt_mask`` bool [B, M],
``anchors_eff`` float32 [A, 2] = anchors * wh_scale. Everything is computed in float32.

Reductions (docs/loss.md §6): box = mean over positives of ``1 - X``; obj and quality = mean over all
``B*A*H*W`` locations; cls = whatever the cls plugin returns. box, cls and quality are 0 when
the batch has no positive; obj is always computed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from utod._keras import tf
from utod.boxes import decode_boxes, split_raw
from utod.defaults import (
    DEFAULT_ASSIGNER,
    DEFAULT_CLS_LOSS,
    DEFAULT_IOU_LOSS,
    OBJ_LOSS_BCE,
    OBJ_LOSSES,
    OBJ_TARGET_AUTO,
    OBJ_TARGET_IOU,
    OBJ_TARGETS,
)
from utod.errors import ConfigError

LOSS_KEYS = ("total", "box", "obj", "cls", "quality")


@dataclass
class LossWeights:
    """Multipliers of the four terms in ``total`` (README recipes use obj = quality = 16)."""

    box: float = 1.0
    obj: float = 1.0
    cls: float = 1.0
    quality: float = 1.0


def _bce(logits: tf.Tensor, targets: tf.Tensor) -> tf.Tensor:
    return tf.nn.sigmoid_cross_entropy_with_logits(labels=targets, logits=logits)


def _smooth_l1(diff: tf.Tensor) -> tf.Tensor:
    """SmoothL1 with beta = 1: 0.5 d^2 if |d| < 1 else |d| - 0.5."""
    ad = tf.abs(diff)
    return tf.where(ad < 1.0, 0.5 * tf.square(diff), ad - 0.5)


# A harmless box written at negative locations before the IoU call, so no plugin ever sees the
# zero-size padding target there (whose gradients could be NaN and leak through tf.where).
_NEUTRAL_BOX = (0.5, 0.5, 0.5, 0.5)


class DetectionLoss:
    """Composed UltraTinyOD training objective.

    ``assigner``, ``iou_fn`` and ``cls_loss`` are already-built plugin objects (see
    ``utod.hookspecs``). ``obj_loss``: ``bce`` (mean BCE over all locations) or ``smoothl1``
    (mean SmoothL1 of ``sigmoid(obj) - target``). ``obj_target``: ``binary`` (1 at positives),
    ``iou`` (``clip(stop_gradient(X), 0, 1)`` at positives) or ``auto`` (``iou`` with a quality
    head, else ``binary``).
    """

    def __init__(self, assigner: Any, iou_fn: Any, cls_loss: Any, *, num_anchors: int, num_classes: int,
                 has_quality: bool, weights: LossWeights | None = None, obj_loss: str = OBJ_LOSS_BCE,
                 obj_target: str = OBJ_TARGET_AUTO) -> None:
        if obj_loss not in OBJ_LOSSES:
            raise ConfigError(f"unknown objectness loss '{obj_loss}'; choose one of {', '.join(OBJ_LOSSES)}")
        if obj_target not in OBJ_TARGETS:
            raise ConfigError(f"unknown objectness target '{obj_target}'; choose one of {', '.join(OBJ_TARGETS)}")
        if int(num_anchors) < 1:
            raise ConfigError(f"num_anchors must be >= 1, got {num_anchors}")
        if int(num_classes) < 0:
            raise ConfigError(f"num_classes must be >= 0, got {num_classes}")
        self.assigner = assigner
        self.iou_fn = iou_fn
        self.cls_loss = cls_loss
        self.num_anchors = int(num_anchors)
        self.num_classes = int(num_classes)
        self.has_quality = bool(has_quality)
        self.weights = weights if weights is not None else LossWeights()
        self.obj_loss = obj_loss
        self.obj_target = obj_target

    @property
    def soft_obj_target(self) -> bool:
        return self.obj_target == OBJ_TARGET_IOU or (self.obj_target == OBJ_TARGET_AUTO and self.has_quality)

    def __call__(self, raw: tf.Tensor, gt_boxes: tf.Tensor, gt_labels: tf.Tensor, gt_mask: tf.Tensor,
                 anchors_eff: tf.Tensor) -> dict[str, tf.Tensor]:
        """Return ``{total, box, obj, cls, quality}``, float32 scalars (total = weighted sum)."""
        raw = tf.cast(raw, tf.float32)
        anchors_eff = tf.cast(anchors_eff, tf.float32)
        gt_boxes = tf.cast(gt_boxes, tf.float32)
        gt_labels = tf.cast(gt_labels, tf.int32)
        gt_mask = tf.cast(gt_mask, tf.bool)
        if gt_boxes.shape.rank == 3 and gt_boxes.shape[1] == 0:  # no box slots at all: one padding slot
            gt_boxes = tf.zeros(tf.stack([tf.shape(gt_boxes)[0], 1, 4]), tf.float32)
            gt_labels = -tf.ones(tf.stack([tf.shape(gt_labels)[0], 1]), tf.int32)
            gt_mask = tf.zeros(tf.stack([tf.shape(gt_mask)[0], 1]), tf.bool)
        parts = split_raw(raw, self.num_anchors, self.num_classes, self.has_quality)
        pred_boxes = decode_boxes(parts.box, anchors_eff)  # [B, A, H, W, 4], differentiable

        assignment = self.assigner(
            tf.stop_gradient(pred_boxes), tf.stop_gradient(parts.cls), tf.stop_gradient(parts.obj),
            gt_boxes, gt_labels, gt_mask, tf.stop_gradient(anchors_eff), self.num_classes, self.has_quality,
        )
        pos = tf.stop_gradient(tf.cast(assignment.pos_mask, tf.float32))  # [B, A, H, W]
        is_pos = pos > 0.5
        n_pos = tf.reduce_sum(pos)
        has_pos = n_pos > 0.0
        box_targets = tf.where(is_pos[..., None], tf.stop_gradient(tf.cast(assignment.box_targets, tf.float32)),
                               tf.constant(_NEUTRAL_BOX, tf.float32))

        similarity = tf.cast(self.iou_fn(pred_boxes, box_targets), tf.float32)  # [B, A, H, W]
        box = tf.reduce_sum(tf.where(is_pos, 1.0 - similarity, 0.0)) / tf.maximum(n_pos, 1.0)
        iou_target = tf.where(is_pos, tf.clip_by_value(tf.stop_gradient(similarity), 0.0, 1.0), 0.0)

        obj_target = iou_target if self.soft_obj_target else pos
        if self.obj_loss == OBJ_LOSS_BCE:
            obj = tf.reduce_mean(_bce(parts.obj, obj_target))
        else:
            obj = tf.reduce_mean(_smooth_l1(tf.sigmoid(parts.obj) - obj_target))

        zero = tf.constant(0.0, tf.float32)
        if self.has_quality:
            quality = tf.where(has_pos, tf.reduce_mean(_bce(parts.quality, iou_target)), zero)
        else:
            quality = zero
        if self.num_classes > 0:
            cls_targets = tf.stop_gradient(tf.cast(assignment.cls_targets, tf.float32))
            cls = tf.where(has_pos, tf.cast(self.cls_loss(parts.cls, cls_targets, pos), tf.float32), zero)
        else:
            cls = zero

        w = self.weights
        total = w.box * box + w.obj * obj + w.cls * cls + w.quality * quality
        return {"total": total, "box": box, "obj": obj, "cls": cls, "quality": quality}


def build_loss(registry: Any, *, assigner: str = DEFAULT_ASSIGNER, assigner_options: dict[str, Any] | None = None,
               iou_loss: str = DEFAULT_IOU_LOSS, iou_options: dict[str, Any] | None = None,
               cls_loss: str = DEFAULT_CLS_LOSS,
               cls_options: dict[str, Any] | None = None, num_anchors: int, num_classes: int, has_quality: bool,
               weights: LossWeights | None = None, obj_loss: str = OBJ_LOSS_BCE,
               obj_target: str = OBJ_TARGET_AUTO) -> DetectionLoss:
    """Build the three plugins by name from ``registry`` (a ``utod.registry.Registry``) and compose them."""
    return DetectionLoss(
        registry.create("assigner", assigner, assigner_options or {}),
        registry.create("iou_loss", iou_loss, iou_options or {}),
        registry.create("cls_loss", cls_loss, cls_options or {}),
        num_anchors=num_anchors,
        num_classes=num_classes,
        has_quality=has_quality,
        weights=weights,
        obj_loss=obj_loss,
        obj_target=obj_target,
    )
