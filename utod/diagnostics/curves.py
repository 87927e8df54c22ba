"""Precision / recall / F1 against confidence, PR curves, AP@0.5 and the F1-optimal
confidence, from matched detections (:class:`~utod.diagnostics.matching.MatchedDetections`).

Definitions (per class ``c``, IoU 0.5, class-aware matching):

* at a confidence ``t``: ``n(t)`` detections of class ``c`` with score >= ``t``, ``tp(t)`` of
  them matched; ``P = tp/n`` (0 when ``n = 0``), ``R = tp/num_gt``, ``F1 = 2PR/(P+R)`` (0 when
  ``P + R = 0``). ``t`` runs over :data:`CONF_GRID` (0, 0.001, ..., 1).
* the "all classes" curves are the mean over the classes that have ground truth (as in
  Ultralytics); the F1-optimal confidence maximises the mean F1 curve. Where the maximum is
  a plateau (no detection scores between two grid points), the middle of the first maximal
  plateau is taken, the threshold least sensitive to small score shifts.
* the PR curve and AP@0.5 follow COCO: precision made monotone (max over higher recall),
  sampled at 101 recall points 0, 0.01, ..., 1 (0 beyond the highest recall); AP = their
  mean. On the same detections this equals pycocotools' AP@0.5 per class.

Nothing here is ever NaN: empty denominators give 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from utod.diagnostics.matching import MatchedDetections

CONF_GRID = np.linspace(0.0, 1.0, 1001)
RECALL_POINTS = np.linspace(0.0, 1.0, 101)


@dataclass
class Curves:
    """Per-class curves (C classes, T = len(conf) thresholds).

    conf [T]; precision, recall, f1 [C, T]; pr_precision [C, 101] (COCO-interpolated
    precision at ``RECALL_POINTS``); ap50 [C]; num_gt [C]; num_det [C]; valid [C] (class has
    ground truth: it takes part in the means). ``best_conf`` is None when no threshold gives
    a single correct detection (mean F1 is 0 everywhere).
    """

    conf: np.ndarray
    precision: np.ndarray
    recall: np.ndarray
    f1: np.ndarray
    pr_precision: np.ndarray
    ap50: np.ndarray
    num_gt: np.ndarray
    num_det: np.ndarray
    valid: np.ndarray
    best_conf: float | None
    max_score: float

    def mean(self, values: np.ndarray) -> np.ndarray:
        """Mean over the valid classes of a [C, ...] array (zeros when no class is valid)."""
        if not self.valid.any():
            return np.zeros(values.shape[1:], np.float64)
        return values[self.valid].mean(axis=0)

    @property
    def mean_f1(self) -> np.ndarray:
        return self.mean(self.f1)

    def at(self, conf: float) -> dict[str, np.ndarray | float]:
        """P, R, F1 per class ([C]) and their means at score threshold ``conf`` (exact, not
        read off the grid)."""
        p, r, f = _prf_at(self._scores, self._tp, self.num_gt, np.array([float(conf)]))
        p, r, f = p[:, 0], r[:, 0], f[:, 0]
        return {"precision": p, "recall": r, "f1": f, "mean_precision": float(self.mean(p)),
                "mean_recall": float(self.mean(r)), "mean_f1": float(self.mean(f))}

    # sorted per-class scores / tp flags, kept for exact evaluation at any threshold
    _scores: list[np.ndarray] | None = None
    _tp: list[np.ndarray] | None = None


def _prf_at(scores: list[np.ndarray], tps: list[np.ndarray], num_gt: np.ndarray,
            thresholds: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """P, R, F1 [C, T] of per-class descending-sorted ``scores`` with ``tps`` flags."""
    c, t = len(scores), len(thresholds)
    p, r = np.zeros((c, t)), np.zeros((c, t))
    for k in range(c):
        s, tp = scores[k], tps[k]
        if not len(s):
            continue
        # n(t) = number of scores >= t (s descending, so -s ascending)
        n = np.searchsorted(-s, -thresholds, side="right")
        cum = np.concatenate([[0], np.cumsum(tp)])
        hits = cum[n]
        p[k] = np.where(n > 0, hits / np.maximum(n, 1), 0.0)
        r[k] = hits / num_gt[k] if num_gt[k] > 0 else 0.0
    f = np.where(p + r > 0, 2 * p * r / np.maximum(p + r, 1e-12), 0.0)
    return p, r, f


def _coco_pr(tp_sorted: np.ndarray, num_gt: int) -> np.ndarray:
    """COCO's 101-point interpolated precision for one class (detections sorted by score)."""
    out = np.zeros(len(RECALL_POINTS))
    if num_gt <= 0 or not len(tp_sorted):
        return out
    cum = np.cumsum(tp_sorted)
    recall = cum / num_gt
    precision = cum / np.arange(1, len(cum) + 1)
    envelope = np.maximum.accumulate(precision[::-1])[::-1]
    idx = np.searchsorted(recall, RECALL_POINTS, side="left")
    ok = idx < len(recall)
    out[ok] = envelope[idx[ok]]
    return out


def _best_threshold(conf: np.ndarray, mean_f1: np.ndarray) -> float | None:
    top = float(mean_f1.max()) if len(mean_f1) else 0.0
    if top <= 0:
        return None
    at_top = np.isclose(mean_f1, top, rtol=0, atol=1e-12)
    first = int(np.argmax(at_top))
    last = first
    while last + 1 < len(at_top) and at_top[last + 1]:
        last += 1
    return float(np.round(conf[(first + last) // 2], 6))


def compute_curves(matched: MatchedDetections, conf: np.ndarray = CONF_GRID) -> Curves:
    """All curves of one evaluation (see the module docstring for the definitions)."""
    num_classes = len(matched.num_gt)
    scores, tps = [], []
    for k in range(num_classes):
        sel = matched.labels == k
        order = np.argsort(-matched.scores[sel], kind="stable")
        scores.append(matched.scores[sel][order])
        tps.append(matched.tp[sel][order])
    p, r, f = _prf_at(scores, tps, matched.num_gt, conf)
    pr = np.stack([_coco_pr(tps[k], int(matched.num_gt[k])) for k in range(num_classes)]) if num_classes \
        else np.zeros((0, len(RECALL_POINTS)))
    valid = matched.num_gt > 0
    curves = Curves(
        conf=conf, precision=p, recall=r, f1=f, pr_precision=pr, ap50=pr.mean(axis=1) if num_classes else pr[:, 0],
        num_gt=matched.num_gt.copy(), num_det=np.array([len(s) for s in scores], np.int64), valid=valid,
        best_conf=None, max_score=float(matched.scores.max()) if len(matched.scores) else 0.0,
        _scores=scores, _tp=tps,
    )
    curves.best_conf = _best_threshold(conf, curves.mean_f1)
    return curves
