"""Target assigners ``legacy`` and ``simota`` (docs/loss.md §1).

Both are called inside one ``tf.function`` on fixed-shape, zero-padded batches (see
``utod.hookspecs.register_assigners``) and return ``utod.components.Assignment``:
``pos_mask`` [B, A, H, W], ``box_targets`` [B, A, H, W, 4] (normalised cxcywh) and
``cls_targets`` [B, A, H, W, C], all float32 and without gradient. There is no Python loop
over images or boxes; duplicates are resolved with explicit max/min reductions, never with
the (unspecified) duplicate order of ``tensor_scatter_nd_update``.

Predictions inside one image are flattened as ``n = a*H*W + j*W + i`` (anchor, row, column).
"""

from __future__ import annotations

from typing import NamedTuple

from utod._keras import tf
from utod.sdk import Assignment, boxes

SIMOTA_IOU_EPS = 1e-6
"""The reference SimOTA's pairwise-IoU epsilon (the box losses use 1e-7)."""


def _first_argmax(x: tf.Tensor, axis: int = -1) -> tf.Tensor:
    """Index of the first maximum along ``axis`` (int32); ``tf.argmax`` leaves ties unspecified."""
    rank = len(x.shape)
    axis = axis % rank
    size = tf.shape(x)[axis]
    best = tf.reduce_max(x, axis=axis, keepdims=True)
    positions = tf.reshape(tf.range(size), [size if d == axis else 1 for d in range(rank)])
    idx = tf.where(x >= best, positions, size)
    return tf.minimum(tf.reduce_min(idx, axis=axis), size - 1)


def _first_argmin(x: tf.Tensor, axis: int = -1) -> tf.Tensor:
    return _first_argmax(-x, axis)


def _batch_index(batch: tf.Tensor, width: tf.Tensor) -> tf.Tensor:
    """[B, width] int32 holding the batch index in every column."""
    return tf.tile(tf.range(batch)[:, None], tf.stack([1, width]))


class LegacyAssigner:
    """Centre cell + single best anchor by shape IoU (docs/loss.md §1.1, the reference default).

    For each real GT ``(cx, cy, w, h)``: column ``i = floor(clip(cx*W, 0, W-0.001))``, row
    ``j`` likewise, anchor ``a* = first argmax_a  min(aw,w)*min(ah,h) / (aw*ah + w*h - inter
    + 1e-7)`` over the effective anchors. Exactly one positive per GT at ``(a*, j, i)``. When
    several GTs of an image land on the same slot, the GT with the highest index (the later
    one in label-file order) gives the box target and the class target is the union of their
    classes (still one positive).
    """

    def __call__(self, pred_boxes, cls_logits, obj_logits, gt_boxes, gt_labels, gt_mask, anchors,
                 num_classes: int, has_quality: bool) -> Assignment:
        shape = tf.shape(pred_boxes)
        batch, n_anchor, height, width = shape[0], shape[1], shape[2], shape[3]
        n_pred = n_anchor * height * width
        gt = tf.stop_gradient(tf.cast(gt_boxes, tf.float32))
        anchors = tf.stop_gradient(tf.cast(anchors, tf.float32))
        mask = tf.cast(gt_mask, tf.bool)
        n_gt = tf.shape(gt)[1]

        wf, hf = tf.cast(width, tf.float32), tf.cast(height, tf.float32)
        col = tf.cast(tf.floor(tf.clip_by_value(gt[..., 0] * wf, 0.0, wf - 0.001)), tf.int32)
        row = tf.cast(tf.floor(tf.clip_by_value(gt[..., 1] * hf, 0.0, hf - 0.001)), tf.int32)

        shape_iou = boxes.shape_iou(anchors[None, None, :, :], gt[:, :, None, 2:4], eps=1e-7)  # [B, M, A]
        best_anchor = _first_argmax(shape_iou)  # [B, M]

        slot = best_anchor * height * width + row * width + col
        slot = tf.where(mask, slot, n_pred)  # padding goes to a dummy slot that is dropped
        index = tf.reshape(tf.stack([_batch_index(batch, n_gt), slot], axis=-1), [-1, 2])

        # Float GT indices (exact below 2**24) keep the scatter on kernels every device has.
        gt_index = tf.reshape(tf.tile(tf.range(n_gt)[None, :], tf.stack([batch, 1])), [-1])
        owner = tf.tensor_scatter_nd_max(
            tf.fill(tf.stack([batch, n_pred + 1]), -1.0), index, tf.cast(gt_index, tf.float32)
        )[:, :n_pred]  # [B, N] index of the last GT on each slot, -1 if none
        positive = owner >= 0.0
        box_targets = tf.gather(gt, tf.cast(tf.maximum(owner, 0.0), tf.int32), batch_dims=1)
        box_targets = tf.where(positive[..., None], box_targets, 0.0)

        if num_classes > 0:
            one_hot = tf.one_hot(tf.cast(gt_labels, tf.int32), num_classes, dtype=tf.float32)
            one_hot = one_hot * tf.cast(mask, tf.float32)[..., None]
            cls_targets = tf.tensor_scatter_nd_max(
                tf.zeros(tf.stack([batch, n_pred + 1, num_classes])), index, tf.reshape(one_hot, [-1, num_classes])
            )[:, :n_pred]
        else:
            cls_targets = tf.zeros(tf.stack([batch, n_pred, 0]))

        grid = tf.stack([batch, n_anchor, height, width])
        return Assignment(
            pos_mask=tf.reshape(tf.cast(positive, tf.float32), grid),
            box_targets=tf.reshape(box_targets, tf.concat([grid, [4]], 0)),
            cls_targets=tf.reshape(cls_targets, tf.concat([grid, [num_classes]], 0)),
        )


def pairwise_iou(a: tf.Tensor, b: tf.Tensor) -> tf.Tensor:
    """IoU of broadcast cxcywh boxes ``[..., 4]`` with the SimOTA convention (docs/loss.md §2.2):
    ``utod.sdk.boxes.iou`` with ``eps = 1e-6``."""
    return boxes.iou(a, b, eps=SIMOTA_IOU_EPS)


def _finite(x: tf.Tensor, posinf: float) -> tf.Tensor:
    """NaN -> 0, +inf -> ``posinf``, -inf -> 0 (the reference's sanitising of SimOTA inputs)."""
    x = tf.where(tf.math.is_nan(x), tf.zeros_like(x), x)
    x = tf.where(tf.math.is_inf(x) & (x > 0), tf.fill(tf.shape(x), posinf), x)
    return tf.where(tf.math.is_inf(x), tf.zeros_like(x), x)


class SimOTAMatch(NamedTuple):
    """Intermediate SimOTA results (predictions flattened to ``n = a*H*W + j*W + i``).

    candidate:  bool    [B, M, N] prediction n lies in GT m's candidate region (real GTs only).
    iou:        float32 [B, M, N] pairwise IoU (docs/loss.md §2.2).
    cost:       float32 [B, M, N] matching cost (penalty included).
    dynamic_k:  int32   [B, M]    number of predictions each GT asks for.
    claimed:    bool    [B, M, N] GT m took prediction n (before conflict resolution).
    owner:      int32   [B, N]    GT that finally owns prediction n, -1 for negatives.
    """

    candidate: tf.Tensor
    iou: tf.Tensor
    cost: tf.Tensor
    dynamic_k: tf.Tensor
    claimed: tf.Tensor
    owner: tf.Tensor


class SimOTAAssigner:
    """SimOTA dynamic-k matching as in YOLOX, on the single UltraTinyOD grid.

    Per image, for the ``N = A*H*W`` predictions and ``M`` (padded) GTs, as one batched
    [B, M, N] computation (GT-major):

    1. Candidate region (centre prior): the cell centre ``((i+0.5)/W, (j+0.5)/H)`` of a
       prediction lies strictly inside the GT box, **or** within ``center_radius`` cells of the
       GT centre along both axes (YOLOX's ``in_boxes | in_centers``; stride = one cell).
    2. Pairwise IoU (docs/loss.md §2.2) between the decoded (stop-gradient) predictions and the GTs.
    3. Cost = ``BCE(cls_logit[n, c_g], 1)`` (0 without classes)
       ``+ iou_weight * (-log(IoU + 1e-8))`` (YOLOX's IoU cost) ``+ 1e5`` outside the region.
    4. ``dynamic_k = max(floor(sum of the top-min(topk, N) candidate IoUs), 1)``; each GT takes
       its ``dynamic_k`` lowest-cost predictions (ties: lower ``n`` first), keeping only
       predictions inside its candidate region.
    5. A prediction claimed by several GTs goes to the GT with the lowest cost (ties: lower
       GT index).

    Targets: the owning GT's box; class target ``1.0`` with a quality head, otherwise the
    pairwise IoU of the prediction with its GT **under stop_gradient**. This is a deliberate
    deviation from the PyTorch reference, whose IoU class target is not detached and so leaks
    class-loss gradient into the box branch.

    Differences from the seed's "simota" (docs/loss.md §1.2): the seed has no centre prior (its
    candidates are simply the ``dynamic_k`` highest-IoU predictions anywhere in the image), its
    cost is computed but never changes the selection, and conflicts go to the first GT in
    label order. Here the candidate region restricts the choice, the cost decides which
    predictions are taken, and conflicts are resolved by cost. YOLOX's cls cost uses
    ``sqrt(sigmoid(cls) * sigmoid(obj))``; here only the class logit is used (objectness is
    trained separately).
    """

    PENALTY = 1e5

    def __init__(self, topk: int = 10, center_radius: float = 2.5, iou_weight: float = 3.0) -> None:
        if int(topk) < 1:
            raise ValueError(f"simota topk must be >= 1, got {topk}")
        self.topk = int(topk)
        self.center_radius = float(center_radius)
        self.iou_weight = float(iou_weight)

    def match(self, pred_boxes, cls_logits, gt_boxes, gt_labels, gt_mask, num_classes: int) -> SimOTAMatch:
        """The matching itself, on predictions flattened to ``n = a*H*W + j*W + i``.

        ``pred_boxes`` [B, A, H, W, 4] decoded cxcywh, ``cls_logits`` [B, A, H, W, C];
        GT tensors as in the hook contract. See :class:`SimOTAMatch` for the outputs (GT-major).
        """
        shape = tf.shape(pred_boxes)
        batch, n_anchor, height, width = shape[0], shape[1], shape[2], shape[3]
        n_pred = n_anchor * height * width
        n_gt = tf.shape(gt_boxes)[1]
        preds = tf.reshape(tf.stop_gradient(tf.cast(pred_boxes, tf.float32)), tf.stack([batch, n_pred, 4]))
        preds = _finite(preds, 1e4)
        gt = _finite(tf.stop_gradient(tf.cast(gt_boxes, tf.float32)), 1.0)
        mask = tf.cast(gt_mask, tf.bool)
        labels = tf.cast(gt_labels, tf.int32)

        # Everything is GT-major [B, M, N]: no transposes (grappler would turn a transpose of a
        # cast bool into a bool transpose, which oneDNN logs an error about on CPU).
        iou = pairwise_iou(gt[:, :, None, :], preds[:, None, :, :])  # [B, M, N]
        iou = tf.where(tf.math.is_finite(iou), iou, 0.0)

        # Cell centres of every prediction, [N] in flattened (a, j, i) order.
        centre_x, centre_y = boxes.cell_centres(height, width)
        wf, hf = tf.cast(width, tf.float32), tf.cast(height, tf.float32)
        px = tf.tile(tf.reshape(centre_x, [-1]), [n_anchor])[None, None, :]
        py = tf.tile(tf.reshape(centre_y, [-1]), [n_anchor])[None, None, :]
        gcx, gcy = gt[:, :, None, 0], gt[:, :, None, 1]
        gw, gh = gt[:, :, None, 2], gt[:, :, None, 3]
        in_box = (px > gcx - gw / 2) & (px < gcx + gw / 2) & (py > gcy - gh / 2) & (py < gcy + gh / 2)
        in_centre = (tf.abs(px - gcx) < self.center_radius / wf) & (tf.abs(py - gcy) < self.center_radius / hf)
        candidate = (in_box | in_centre) & mask[:, :, None]  # [B, M, N]
        candidate_f = tf.cast(candidate, tf.float32)

        cost = self.iou_weight * -tf.math.log(iou + 1e-8)
        if num_classes > 0:
            cls = tf.stop_gradient(tf.cast(cls_logits, tf.float32))
            cls = tf.reshape(cls, tf.stack([batch, n_pred, num_classes]))
            one_hot = tf.one_hot(labels, num_classes, dtype=tf.float32)  # [B, M, C]
            cost += tf.einsum("bnc,bmc->bmn", tf.nn.softplus(-cls), one_hot)  # BCE(x, 1) = softplus(-x)
        cost += self.PENALTY * (1.0 - candidate_f)

        k = tf.minimum(self.topk, n_pred)
        top_iou = tf.math.top_k(iou * candidate_f, k=k, sorted=True).values  # [B, M, k]
        dynamic_k = tf.clip_by_value(tf.cast(tf.floor(tf.reduce_sum(top_iou, axis=-1)), tf.int32), 1, k)

        lowest = tf.math.top_k(-cost, k=k, sorted=True).indices  # [B, M, k], stable: lower n first
        take = tf.cast(tf.range(k)[None, None, :] < dynamic_k[..., None], tf.float32)
        bm = tf.stack([_batch_index(batch, n_gt), tf.tile(tf.range(n_gt)[None, :], tf.stack([batch, 1]))], -1)
        index = tf.concat([tf.tile(bm[:, :, None, :], tf.stack([1, 1, k, 1])), lowest[..., None]], axis=-1)
        chosen = tf.tensor_scatter_nd_max(
            tf.zeros(tf.stack([batch, n_gt, n_pred])), tf.reshape(index, [-1, 3]), tf.reshape(take, [-1])
        )
        claimed = (chosen > 0.5) & candidate  # [B, M, N]

        positive = tf.reduce_any(claimed, axis=1)  # [B, N]
        owner = tf.where(positive, _first_argmin(tf.where(claimed, cost, float("inf")), axis=1), -1)
        return SimOTAMatch(candidate, iou, cost, dynamic_k, claimed, owner)

    def __call__(self, pred_boxes, cls_logits, obj_logits, gt_boxes, gt_labels, gt_mask, anchors,
                 num_classes: int, has_quality: bool) -> Assignment:
        shape = tf.shape(pred_boxes)
        batch, n_anchor, height, width = shape[0], shape[1], shape[2], shape[3]
        n_pred = n_anchor * height * width
        m = self.match(pred_boxes, cls_logits, gt_boxes, gt_labels, gt_mask, num_classes)
        positive = m.owner >= 0
        owner = tf.maximum(m.owner, 0)
        pos_f = tf.cast(positive, tf.float32)

        gt = _finite(tf.stop_gradient(tf.cast(gt_boxes, tf.float32)), 1.0)
        box_targets = tf.where(positive[..., None], tf.gather(gt, owner, batch_dims=1), 0.0)
        if num_classes > 0:
            owner_label = tf.gather(tf.cast(gt_labels, tf.int32), owner, batch_dims=1)
            if has_quality:
                value = pos_f
            else:
                owner_one_hot = tf.one_hot(owner, tf.shape(gt_boxes)[1], dtype=tf.float32)  # [B, N, M]
                value = tf.einsum("bmn,bnm->bn", m.iou, owner_one_hot) * pos_f
            cls_targets = tf.one_hot(owner_label, num_classes, dtype=tf.float32) * value[..., None]
        else:
            cls_targets = tf.zeros(tf.stack([batch, n_pred, 0]))

        grid = tf.stack([batch, n_anchor, height, width])
        return Assignment(
            pos_mask=tf.stop_gradient(tf.reshape(pos_f, grid)),
            box_targets=tf.stop_gradient(tf.reshape(box_targets, tf.concat([grid, [4]], 0))),
            cls_targets=tf.stop_gradient(tf.reshape(cls_targets, tf.concat([grid, [num_classes]], 0))),
        )
