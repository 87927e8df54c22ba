"""Confusion matrix with a background row and column (numpy).

Layout: ``matrix[true, predicted]`` of shape [C+1, C+1]; index ``C`` is *background*.

* ``matrix[g, p]`` (g, p < C): a ground-truth box of class g matched by a detection of class p;
  the diagonal holds the correct detections;
* ``matrix[g, C]``: ground-truth boxes of class g that no detection found (missed);
* ``matrix[C, p]``: detections of class p that match no ground-truth box (false positives);
* ``matrix[C, C]`` is always 0 (background that nothing detected is not counted).

Only detections with score >= ``conf`` take part. Matching per image, at IoU >= 0.5:
first class-aware (the same greedy rule as the curves, so the diagonal equals the true
positives behind P/R at that threshold), then the remaining detections and boxes
class-agnostically, highest IoU first -- those pairs are the class confusions.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from utod.diagnostics.matching import Detections, GroundTruth, _boxes, box_iou, match_image


def confusion_matrix(ground_truth: Sequence[GroundTruth], detections: Sequence[Detections], num_classes: int,
                     conf: float, *, iou_thresh: float = 0.5, img_size: tuple[int, int] = (1, 1)) -> np.ndarray:
    """Counts int64 [C+1, C+1] (rows: true class, columns: predicted class; index C = background)."""
    c = num_classes
    m = np.zeros((c + 1, c + 1), np.int64)
    for gt, det in zip(ground_truth, detections):
        gb, gl = _boxes(gt[0]), np.asarray(gt[1], np.int64).reshape(-1)
        keep_g = (gl >= 0) & (gl < c)
        gb, gl = gb[keep_g], gl[keep_g]
        db, ds, dl = _boxes(det[0]), np.asarray(det[1], np.float64).reshape(-1), np.asarray(det[2], np.int64).reshape(-1)
        keep = (ds >= conf) & (dl >= 0) & (dl < c) & np.isfinite(db).all(axis=1)  # NaN scores fail ">="
        db, ds, dl = db[keep], ds[keep], dl[keep]
        g_used = np.zeros(len(gl), bool)
        d_used = np.zeros(len(dl), bool)
        first = match_image((gb, gl), (db, ds, dl), iou_thresh=iou_thresh, img_size=img_size)
        for k, j in enumerate(first):
            if j >= 0:
                m[gl[j], dl[k]] += 1
                g_used[j] = d_used[k] = True
        gi, di = np.where(~g_used)[0], np.where(~d_used)[0]
        if len(gi) and len(di):
            ious = box_iou(db[di], gb[gi], img_size)  # [len(di), len(gi)]
            pairs = np.argwhere(ious >= iou_thresh)
            order = np.argsort(-ious[pairs[:, 0], pairs[:, 1]], kind="stable")
            for a, b in pairs[order]:
                k, j = di[a], gi[b]
                if not d_used[k] and not g_used[j]:
                    m[gl[j], dl[k]] += 1
                    d_used[k] = g_used[j] = True
        for j in np.where(~g_used)[0]:
            m[gl[j], c] += 1
        for k in np.where(~d_used)[0]:
            m[c, dl[k]] += 1
    return m


def normalise_rows(matrix: np.ndarray) -> np.ndarray:
    """Each row divided by its sum (rows of zeros stay 0): for a true class, the share of its
    boxes found as each class or missed; for the background row, how the false positives
    split over the predicted classes."""
    sums = matrix.sum(axis=1, keepdims=True).astype(np.float64)
    return np.where(sums > 0, matrix / np.maximum(sums, 1), 0.0)
