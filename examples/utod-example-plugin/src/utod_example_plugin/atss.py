"""ATSS-style assigner for utod's single-level anchor grid (utod ``assigner`` contract).

Adaptive Training Sample Selection (Zhang et al., 2020), adapted to one feature map with
``A`` anchors per cell. For every real GT box of every image, all at once on fixed shapes:

1. candidates: the ``topk`` grid cells whose centres are nearest to the GT centre (cells
   tied with the k-th distance are included), times all ``A`` anchors of those cells;
2. the *prior* box of a candidate is its cell centre with the anchor's size; the IoU of
   every prior with the GT is computed, and the GT's threshold is ``mean + std`` of its
   candidates' IoUs;
3. positives: candidates with ``IoU >= threshold`` (and, with ``center_in_gt``, whose cell
   centre lies inside the GT box);
4. every GT keeps at least its best candidate (tiny boxes that contain no cell centre
   would otherwise get no positive);
5. a location claimed by several GTs goes to the GT with the highest prior IoU.

Box maths (prior IoUs, cell centres) comes from utod's SDK, :mod:`utod.sdk.boxes`.

The assignment depends on the GT boxes and anchors only (not on the predictions), except
with ``iou_cls_target=True`` on a head without quality branch: the class target is then the
(no-gradient) IoU of the prediction with its assigned box instead of 1.
"""

from __future__ import annotations

from utod._keras import tf
from utod.sdk import Assignment
from utod.sdk import boxes as box_ops


class ATSSAssigner:
    """ATSS: top-k nearest cells, IoU >= mean + std of the candidates, centre inside the box."""

    def __init__(self, topk: int = 9, center_in_gt: bool = True, iou_cls_target: bool = False):
        if int(topk) < 1:
            raise ValueError(f"atss: topk must be >= 1, got {topk}")
        self.topk = int(topk)
        self.center_in_gt = bool(center_in_gt)
        self.iou_cls_target = bool(iou_cls_target)

    def __call__(self, pred_boxes, cls_logits, obj_logits, gt_boxes, gt_labels, gt_mask, anchors,
                 num_classes: int, has_quality: bool) -> Assignment:
        """Shapes: pred_boxes [B, A, H, W, 4], gt_boxes [B, M, 4], gt_labels/gt_mask [B, M],
        anchors [A, 2] (normalised w, h). Returns float32 [B, A, H, W] / [..., 4] / [..., C]."""
        pred_boxes = tf.cast(pred_boxes, tf.float32)
        shape = tf.shape(pred_boxes)
        b, a, h, w = shape[0], shape[1], shape[2], shape[3]
        hw = h * w

        # One extra, masked-out GT per image: M = 0 batches work and argmax over M is defined.
        gt_boxes = tf.concat([tf.cast(gt_boxes, tf.float32), tf.zeros([b, 1, 4])], axis=1)
        gt_boxes = tf.where(tf.math.is_finite(gt_boxes), gt_boxes, 0.0)
        gt_labels = tf.concat([tf.cast(gt_labels, tf.int32), -tf.ones([b, 1], tf.int32)], axis=1)
        valid = tf.concat([tf.cast(gt_mask, tf.bool), tf.zeros([b, 1], tf.bool)], axis=1)  # [B, M]

        centre_x, centre_y = box_ops.cell_centres(h, w)
        cell_x = tf.reshape(centre_x, [1, 1, 1, -1])  # [1, 1, 1, HW]
        cell_y = tf.reshape(centre_y, [1, 1, 1, -1])
        g = gt_boxes[:, :, None, None, :]  # [B, M, 1, 1, 4]
        gcx, gcy, gw, gh = g[..., 0], g[..., 1], g[..., 2], g[..., 3]  # [B, M, 1, 1]

        # 1. the top-k nearest cells per GT (ties with the k-th distance included).
        d2 = tf.square(cell_x - gcx) + tf.square(cell_y - gcy)  # [B, M, 1, HW]
        k = tf.minimum(self.topk, hw)
        kth = -tf.math.top_k(-d2[:, :, 0, :], k=k).values[..., -1]  # [B, M]
        near = d2 <= kth[:, :, None, None]  # [B, M, 1, HW]
        cand = near & valid[:, :, None, None]  # [B, M, 1, HW] -> broadcast over anchors below

        # 2. IoU of every prior (cell centre, anchor size) with every GT.
        anchors = tf.cast(anchors, tf.float32)
        n_anchor = tf.shape(anchors)[0]
        centres = tf.stack([tf.reshape(centre_x, [-1]), tf.reshape(centre_y, [-1])], axis=-1)  # [HW, 2]
        grid = tf.stack([n_anchor, hw, 2])
        priors = tf.concat([tf.broadcast_to(centres[None], grid), tf.broadcast_to(anchors[:, None, :], grid)],
                           axis=-1)[None, None]  # [1, 1, A, HW, 4] cxcywh
        iou = box_ops.iou(priors, g, eps=1e-7)  # [B, M, A, HW]
        cand = tf.broadcast_to(cand, tf.shape(iou))
        cand_f = tf.cast(cand, tf.float32)
        n_cand = tf.maximum(tf.reduce_sum(cand_f, axis=[2, 3], keepdims=True), 1.0)
        mean = tf.reduce_sum(iou * cand_f, axis=[2, 3], keepdims=True) / n_cand
        std = tf.sqrt(tf.reduce_sum(tf.square(iou - mean) * cand_f, axis=[2, 3], keepdims=True) / n_cand)

        # 3. positives per GT.
        pos = cand & (iou >= mean + std)
        if self.center_in_gt:
            inside = (tf.abs(cell_x - gcx) < gw / 2) & (tf.abs(cell_y - gcy) < gh / 2)  # [B, M, 1, HW]
            pos = pos & inside
        n = a * hw
        pos = tf.reshape(pos, [b, -1, n])  # [B, M, N], n = a*HW + row*W + col
        flat_iou = tf.reshape(iou, [b, -1, n])

        # 4. each real GT keeps its best candidate.
        best = tf.argmax(tf.where(tf.reshape(cand, [b, -1, n]), flat_iou, -1.0), axis=-1)  # [B, M]
        pos = pos | (tf.one_hot(best, n, on_value=True, off_value=False) & valid[:, :, None])

        # 5. one GT per location: the highest prior IoU among the GTs claiming it.
        owner = tf.argmax(tf.where(pos, flat_iou, -1.0), axis=1, output_type=tf.int32)  # [B, N]
        pos_mask = tf.cast(tf.reduce_any(pos, axis=1), tf.float32)  # [B, N]
        box_targets = tf.gather(gt_boxes, owner, batch_dims=1)  # [B, N, 4]
        labels = tf.gather(gt_labels, owner, batch_dims=1)  # [B, N]
        cls_targets = tf.one_hot(labels, num_classes, dtype=tf.float32) * pos_mask[..., None]  # [B, N, C]

        out_shape = tf.stack([b, a, h, w])
        pos_mask = tf.reshape(pos_mask, out_shape)
        box_targets = tf.reshape(box_targets, tf.concat([out_shape, [4]], 0))
        cls_targets = tf.reshape(cls_targets, tf.concat([out_shape, [num_classes]], 0))
        if self.iou_cls_target and not has_quality and num_classes > 0:
            quality = tf.clip_by_value(box_ops.iou(pred_boxes, box_targets, eps=1e-7), 0.0, 1.0)
            cls_targets = cls_targets * quality[..., None]
        return Assignment(tf.stop_gradient(pos_mask), tf.stop_gradient(box_targets),
                          tf.stop_gradient(cls_targets))
