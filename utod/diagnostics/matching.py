"""Matching detections to ground truth at an IoU threshold (numpy, no TensorFlow).

Boxes everywhere here are normalised ``(cx, cy, w, h)`` in [0, 1] relative to the network
input; IoU is scale-free for a common scale in x and y, but the input need not be square,
so :func:`box_iou` takes ``img_size`` (H, W) and measures in pixels like ``utod.metrics``.

Per image, ``gt`` is ``(boxes [N, 4], labels [N] int)`` and ``dets`` is
``(boxes [K, 4], scores [K], labels [K] int)`` -- the lists ``utod.metrics.Accumulator``
collects (``Accumulator.ground_truth`` / ``Accumulator.detections``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from utod.data.boxes_np import pairwise_iou

GroundTruth = tuple[np.ndarray, np.ndarray]
Detections = tuple[np.ndarray, np.ndarray, np.ndarray]


def _boxes(a) -> np.ndarray:
    arr = np.asarray(a, np.float64)
    return arr.reshape(-1, 4) if arr.size else np.zeros((0, 4), np.float64)


def box_iou(a, b, img_size: tuple[int, int] = (1, 1)) -> np.ndarray:
    """IoU matrix [len(a), len(b)] of normalised cxcywh boxes, measured at ``img_size`` (H, W)."""
    a, b = _boxes(a), _boxes(b)
    h, w = img_size
    scale = np.array([w, h, w, h], np.float64)
    return pairwise_iou(a * scale, b * scale, "cxcywh")


def match_image(gt: GroundTruth, dets: Detections, *, iou_thresh: float = 0.5,
                img_size: tuple[int, int] = (1, 1)) -> np.ndarray:
    """Class-aware greedy matching of one image -> ``gt_index`` int [K] (-1: unmatched).

    Detections are taken in descending score order (stable); each takes the still unmatched
    ground-truth box of its own class with the highest IoU, if that IoU >= ``iou_thresh``.
    This is COCO's rule at one IoU threshold (and ``utod.metrics.precision_recall_at``'s),
    so the matches of the detections above any score cut are the matches a run restricted
    to those detections would make.
    """
    gb, gl = _boxes(gt[0]), np.asarray(gt[1], np.int64).reshape(-1)
    db, ds, dl = _boxes(dets[0]), np.asarray(dets[1], np.float64).reshape(-1), np.asarray(dets[2], np.int64).reshape(-1)
    out = np.full(len(ds), -1, np.int64)
    if not len(ds) or not len(gl):
        return out
    ious = box_iou(db, gb, img_size)
    ious[dl[:, None] != gl[None, :]] = -1.0  # other classes never match
    taken = np.zeros(len(gl), bool)
    order = np.argsort(-ds, kind="stable")
    for k in order[ious[order].max(axis=1) >= iou_thresh]:  # the others can never match
        row = np.where(taken, -1.0, ious[k])
        j = int(np.argmax(row))
        if row[j] >= iou_thresh:
            taken[j] = True
            out[k] = j
    return out


@dataclass
class MatchedDetections:
    """Every detection of an evaluation, flattened over images.

    scores float64 [D], labels int64 [D] (predicted class), tp bool [D] (matched a ground-truth
    box of its class), image int64 [D] (index into the image list); num_gt int64 [C]
    (ground-truth boxes per class); num_images.
    """

    scores: np.ndarray
    labels: np.ndarray
    tp: np.ndarray
    image: np.ndarray
    num_gt: np.ndarray
    num_images: int


def match_all(ground_truth: Sequence[GroundTruth], detections: Sequence[Detections], num_classes: int, *,
              iou_thresh: float = 0.5, img_size: tuple[int, int] = (1, 1)) -> MatchedDetections:
    """:func:`match_image` on every image. Ground truth and detections of classes outside
    0..num_classes-1 are ignored (they cannot be scored per class)."""
    if len(ground_truth) != len(detections):
        raise ValueError(f"{len(ground_truth)} ground-truth entries but {len(detections)} detection entries")
    scores, labels, tps, images = [], [], [], []
    num_gt = np.zeros(num_classes, np.int64)
    for i, (gt, det) in enumerate(zip(ground_truth, detections)):
        gl = np.asarray(gt[1], np.int64).reshape(-1)
        gt_keep = (gl >= 0) & (gl < num_classes)
        gt = (_boxes(gt[0])[gt_keep], gl[gt_keep])
        num_gt += np.bincount(gt[1], minlength=num_classes)
        ds, dl = np.asarray(det[1], np.float64).reshape(-1), np.asarray(det[2], np.int64).reshape(-1)
        db = _boxes(det[0])
        keep = (dl >= 0) & (dl < num_classes) & np.isfinite(ds) & np.isfinite(db).all(axis=1)  # never score NaN
        det = (db[keep], ds[keep], dl[keep])
        m = match_image(gt, det, iou_thresh=iou_thresh, img_size=img_size)
        scores.append(det[1])
        labels.append(det[2])
        tps.append(m >= 0)
        images.append(np.full(len(m), i, np.int64))

    def cat(xs: list[np.ndarray], dt) -> np.ndarray:
        return np.concatenate(xs).astype(dt) if xs else np.zeros(0, dt)

    return MatchedDetections(cat(scores, np.float64), cat(labels, np.int64), cat(tps, bool),
                             cat(images, np.int64), num_gt, len(ground_truth))
