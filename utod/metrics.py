"""COCO-style detection metrics (mAP@0.5:0.95, mAP@0.5, mAP@0.75, per-class AP, P/R).

Why COCOeval and not a hand-written AP: the headline numbers must be comparable with
other detection toolkits, and home-grown mAP implementations are a recurring source of
disputed numbers (e.g. ultralytics issues #10326, #6865, #13363). pycocotools' ``COCOeval``
is the reference; it runs here as ``faster-coco-eval``'s ``COCOeval_faster``, the same
algorithm with its per-image matching in C++ (0.10 s instead of 0.30 s for 500 images x 100
detections, which is paid at every training validation). ``tests/test_metrics.py`` checks it
against pycocotools itself on random data, ties and empty images included: the precision
and recall arrays agree to 1e-12 (seen: 2e-16). ``map``/``map50``/``map75`` come from it unchanged. Only
the precision/recall at one confidence threshold (not an AP) is computed here.

Conventions:

* ground truth and detections use normalised ``(cx, cy, w, h)`` boxes relative to the
  network input; they are converted to pixel ``(x, y, w, h)`` at ``img_size`` (H, W) for
  COCO. Area ranges (small/medium/large) are therefore measured in model-input pixels.
* labels are contiguous class indices ``0..C-1``; COCO category ids are ``label + 1``.
* COCO uses 101-point interpolated precision, so its AP differs from VOC's all-point AP
  (docs/pipeline.md §4.2): a curve that reaches recall 0.5 at precision 1 and never more
  gives VOC 0.5 but COCO 51/101 = 0.50495 (points 0.00, 0.01, ..., 0.50).
* The mean over classes follows COCO: classes without any ground truth are left out of
  the mean (their per-class AP is reported as 0.0 with ``num_gt`` 0).
* Empty cases (no ground truth at all, no detection at all) give 0.0, never NaN.
"""

from __future__ import annotations

import contextlib
import gc
import io
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from utod.data.boxes_np import pairwise_iou

GroundTruth = tuple[np.ndarray, np.ndarray]  # boxes [N,4] normalised cxcywh, labels [N]
Detections = tuple[np.ndarray, np.ndarray, np.ndarray]  # boxes [K,4], scores [K], labels [K]

SIZE_STAT_NAMES: tuple[str, ...] = ("map_small", "map_medium", "map_large", "ar_small", "ar_medium", "ar_large")
COCO_STAT_NAMES: tuple[str, ...] = (
    "map", "map50", "map75", "map_small", "map_medium", "map_large",
    "ar1", "ar10", "ar100", "ar_small", "ar_medium", "ar_large",
)


def _as_boxes(boxes: Any) -> np.ndarray:
    arr = np.asarray(boxes, dtype=np.float64)
    if arr.size == 0:
        return np.zeros((0, 4), np.float64)
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise ValueError(f"boxes must have shape [N, 4], got {arr.shape}")
    return arr


def cxcywh_to_pixel_xywh(boxes: np.ndarray, img_size: tuple[int, int]) -> np.ndarray:
    """Normalised cxcywh [N,4] -> pixel top-left xywh [N,4] at ``img_size`` = (H, W)."""
    h, w = img_size
    b = _as_boxes(boxes)
    out = np.empty_like(b)
    out[:, 0] = (b[:, 0] - b[:, 2] / 2) * w
    out[:, 1] = (b[:, 1] - b[:, 3] / 2) * h
    out[:, 2] = b[:, 2] * w
    out[:, 3] = b[:, 3] * h
    return out


def precision_recall_at(
    ground_truth: Sequence[GroundTruth],
    detections: Sequence[Detections],
    img_size: tuple[int, int],
    conf_thresh: float,
    iou_thresh: float = 0.5,
) -> tuple[float, float, int, int]:
    """Precision and recall of the detections with score >= ``conf_thresh``.

    Greedy matching per image and class: detections in descending score order each take
    the unmatched GT of the same class with the highest IoU, if that IoU >= ``iou_thresh``.
    Returns ``(precision, recall, true_positives, num_detections_kept)``; 0.0 when a
    denominator is zero.
    """
    tp = kept = npos = 0
    for (gt_boxes, gt_labels), (dt_boxes, dt_scores, dt_labels) in zip(ground_truth, detections):
        g = cxcywh_to_pixel_xywh(gt_boxes, img_size)
        gl = np.asarray(gt_labels, np.int64).reshape(-1)
        npos += len(gl)
        d = cxcywh_to_pixel_xywh(dt_boxes, img_size)
        ds = np.asarray(dt_scores, np.float64).reshape(-1)
        dl = np.asarray(dt_labels, np.int64).reshape(-1)
        keep = ds >= conf_thresh
        d, ds, dl = d[keep], ds[keep], dl[keep]
        kept += len(ds)
        for cls in np.unique(dl):
            dsel = np.where(dl == cls)[0]
            gsel = np.where(gl == cls)[0]
            if len(gsel) == 0:
                continue
            order = dsel[np.argsort(-ds[dsel], kind="stable")]
            ious = pairwise_iou(d[order], g[gsel], "xywh")  # COCO's formula, no eps
            matched = np.zeros(len(gsel), bool)
            for r in np.flatnonzero((ious >= iou_thresh).any(axis=1)):  # the others match nothing
                row = np.where(matched, -1.0, ious[r])
                j = int(np.argmax(row))
                if row[j] >= iou_thresh:
                    matched[j] = True
                    tp += 1
                    if matched.all():
                        break
    precision = tp / kept if kept else 0.0
    recall = tp / npos if npos else 0.0
    return float(precision), float(recall), tp, kept


def _coco_inputs(
    ground_truth: Sequence[GroundTruth],
    detections: Sequence[Detections],
    num_classes: int,
    img_size: tuple[int, int],
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    h, w = img_size
    images, annotations = [], []
    for img_id, (gt_boxes, gt_labels) in enumerate(ground_truth, start=1):
        images.append({"id": img_id, "width": int(w), "height": int(h)})
        labels = np.asarray(gt_labels, np.int64).reshape(-1)
        for box, label in zip(cxcywh_to_pixel_xywh(gt_boxes, img_size), labels):
            if not 0 <= label < num_classes:
                raise ValueError(f"ground-truth label {label} outside 0..{num_classes - 1}")
            annotations.append({
                "id": len(annotations) + 1, "image_id": img_id, "category_id": int(label) + 1,
                "bbox": [float(v) for v in box], "area": float(box[2] * box[3]), "iscrowd": 0,
            })
    results = _coco_results(detections, num_classes, img_size)
    dataset = {
        "info": {"description": "utod evaluation"},
        "images": images,
        "annotations": annotations,
        "categories": [{"id": c + 1, "name": str(c)} for c in range(num_classes)],
    }
    return dataset, results


def _coco_results(detections: Sequence[Detections], num_classes: int,
                  img_size: tuple[int, int]) -> list[dict[str, Any]]:
    """Every image's detections as the annotation records of a COCO result set, complete as
    pycocotools' ``COCO.loadRes`` would make them for bboxes (``id`` 1.., ``area`` = w * h
    in pixels, ``iscrowd`` 0), so the result index is built once, without ``loadRes``
    walking 10^4-10^5 records a second time (the same numbers: a test compares). Detections
    of an unknown class are left out (they cannot match anything)."""
    counts = [int(np.asarray(d[1]).size) for d in detections]
    if not sum(counts):
        return []
    boxes = np.concatenate([_as_boxes(d[0]) for d in detections])
    scores = np.concatenate([np.asarray(d[1], np.float64).reshape(-1) for d in detections])
    labels = np.concatenate([np.asarray(d[2], np.int64).reshape(-1) for d in detections])
    image_ids = np.repeat(np.arange(1, len(detections) + 1), counts)
    known = (labels >= 0) & (labels < num_classes)  # an unknown class cannot match anything
    pixel = cxcywh_to_pixel_xywh(boxes[known], img_size)
    area = pixel[:, 2] * pixel[:, 3]  # float64, as loadRes computes bb[2] * bb[3]
    return [{"id": i, "image_id": img, "category_id": c + 1, "bbox": b, "score": sc, "area": a, "iscrowd": 0}
            for i, (img, c, b, sc, a) in enumerate(zip(image_ids[known].tolist(), labels[known].tolist(),
                                                       pixel.tolist(), scores[known].tolist(), area.tolist()),
                                                   start=1)]


def _mean_or_minus_one(values: np.ndarray) -> float:
    """COCOeval's convention: the mean of the entries > -1, or -1.0 when there are none."""
    valid = values[values > -1]
    return float(valid.mean()) if valid.size else -1.0


def _mean_valid(values: np.ndarray) -> float:
    """The mean of the entries > -1 (precisions and recalls, so >= 0), or 0.0 when there are none."""
    return max(_mean_or_minus_one(values), 0.0)


@contextlib.contextmanager
def paused_gc() -> Iterator[None]:
    """Python's cyclic garbage collector off for the block (back to its previous state after).

    Scoring builds ~50k small dicts for 500 images x 100 detections; in a training process,
    whose heap holds the whole TensorFlow/Keras object graph, that many allocations set off
    full collections over that heap: +0.08 s on every other 0.16 s scoring, measured. The
    objects made here hold no reference cycles, so nothing is left for the collector."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


@paused_gc()
def evaluate_detections(
    ground_truth: Sequence[GroundTruth],
    detections: Sequence[Detections],
    num_classes: int,
    *,
    img_size: tuple[int, int] = (64, 64),
    conf_thresh: float = 0.15,
    class_names: Sequence[str] | None = None,
    max_detections: int = 100,
    size_ranges: bool = True,
) -> dict[str, Any]:
    """COCO bbox evaluation of one detection list per image.

    ``ground_truth[i]`` = ``(boxes [N,4] normalised cxcywh, labels [N] contiguous ints)``;
    ``detections[i]`` = ``(boxes [K,4] normalised cxcywh, scores [K], labels [K])``.
    ``img_size`` = (H, W) of the model input, used to express boxes in pixels.
    ``max_detections`` is COCO's ``maxDets`` for the headline numbers (per image).
    ``size_ranges=False`` evaluates COCO's 'all' area range only: every number below except
    ``map_small/medium/large`` and ``ar_small/medium/large`` (left out) is the same, for a
    quarter of COCOeval's matching work (training-time validation reports no sizes).

    Returns a JSON-serialisable dict: ``map`` (AP@0.5:0.95), ``map50``, ``map75``,
    ``map_small/medium/large``, ``ar1/ar10/ar100`` (from COCOeval.stats, -1 mapped to 0),
    ``per_class`` {name: {"ap", "ap50", "num_gt"}}, ``precision``/``recall`` at
    ``conf_thresh`` (IoU 0.5, greedy), ``num_images``, ``num_gt``, ``num_detections``,
    ``conf_thresh`` and ``summary`` (COCOeval's printed table, or a one-line reason).
    """
    if len(ground_truth) != len(detections):
        raise ValueError(f"{len(ground_truth)} ground-truth entries but {len(detections)} detection entries")
    names = [str(n) for n in class_names] if class_names is not None else [str(c) for c in range(num_classes)]
    if len(names) != num_classes:
        raise ValueError(f"{len(names)} class names for {num_classes} classes")

    dataset, results = _coco_inputs(ground_truth, detections, num_classes, img_size)
    num_gt = len(dataset["annotations"])
    precision, recall, _, _ = precision_recall_at(ground_truth, detections, img_size, conf_thresh)
    gt_per_class = np.bincount([a["category_id"] - 1 for a in dataset["annotations"]],
                               minlength=num_classes) if num_gt else np.zeros(num_classes, int)

    out: dict[str, Any] = {name: 0.0 for name in COCO_STAT_NAMES}
    out["per_class"] = {
        names[c]: {"ap": 0.0, "ap50": 0.0, "num_gt": int(gt_per_class[c])} for c in range(num_classes)
    }
    out.update(precision=precision, recall=recall, num_images=len(ground_truth), num_gt=num_gt,
               num_detections=len(results), conf_thresh=float(conf_thresh))
    if num_gt == 0:
        out["summary"] = "no ground-truth boxes: every AP is 0.0"
        return out
    if not results:
        out["summary"] = "no detections: every AP is 0.0"
        return out

    evaluator = coco_evaluator(dataset, results, max_detections, size_ranges)
    stats = _stats(evaluator, size_ranges)
    out.update({k: max(v, 0.0) for k, v in stats.items()})
    if not size_ranges:
        for key in SIZE_STAT_NAMES:
            out.pop(key, None)

    # precision: [T iou thresholds, R recall points, K classes, A area ranges, M maxDets]
    prec = evaluator.eval["precision"]
    cat_ids = evaluator.params.catIds
    for k, cat_id in enumerate(cat_ids):
        c = cat_id - 1
        out["per_class"][names[c]]["ap"] = _mean_valid(prec[:, :, k, 0, -1])
        out["per_class"][names[c]]["ap50"] = _mean_valid(prec[0, :, k, 0, -1])
    out["summary"] = (_summary_table(stats, max_detections) if size_ranges
                      else "COCOeval over the 'all' area range only (no small/medium/large)")
    return out


def coco_evaluator(dataset: dict[str, Any], results: list[dict[str, Any]], max_detections: int,
                   size_ranges: bool, *, implementation: str = "faster_coco_eval") -> Any:
    """COCOeval (bbox) on the inputs of :func:`_coco_inputs`, evaluated and accumulated
    (``eval["precision"]`` [T, R, K, A, M], ``eval["recall"]`` [T, K, A, M], ``params``).
    ``implementation``: ``"faster_coco_eval"`` (used) or ``"pycocotools"`` (the reference
    it is tested against)."""
    if implementation == "pycocotools":
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
    else:
        from faster_coco_eval import COCO
        from faster_coco_eval import COCOeval_faster as COCOeval

    with contextlib.redirect_stdout(io.StringIO()):  # both print progress
        coco_gt = COCO()
        coco_gt.dataset = dataset
        coco_gt.createIndex()
        coco_dt = COCO()  # the result set, complete already (_coco_results): no loadRes pass
        coco_dt.dataset = {"images": dataset["images"], "categories": dataset["categories"], "annotations": results}
        coco_dt.createIndex()
        evaluator = COCOeval(coco_gt, coco_dt, iouType="bbox")
        evaluator.params.maxDets = [1, 10, max(max_detections, 1)]
        if not size_ranges:  # the 'all' range only: same numbers for it, a quarter of the matching work
            evaluator.params.areaRng, evaluator.params.areaRngLbl = [[0, 1e10]], ["all"]
        evaluator.evaluate()
        evaluator.accumulate()
    return evaluator


def _stats(evaluator: Any, size_ranges: bool) -> dict[str, float]:
    """What ``COCOeval.summarize`` reports (COCO_STAT_NAMES; -1.0: no data), read from
    the accumulated arrays: precision [T, R, K, A, M], recall [T, K, A, M]. Areas are the
    evaluator's ``areaRngLbl`` (all, small, medium, large, or all only); maxDets index 2 is
    the headline limit."""
    prec, rec = evaluator.eval["precision"], evaluator.eval["recall"]
    thrs = evaluator.params.iouThrs
    at = {t: int(np.argmin(np.abs(thrs - t))) for t in (0.5, 0.75)}
    out = {
        "map": _mean_or_minus_one(prec[:, :, :, 0, -1]), "map50": _mean_or_minus_one(prec[at[0.5], :, :, 0, -1]),
        "map75": _mean_or_minus_one(prec[at[0.75], :, :, 0, -1]), "ar1": _mean_or_minus_one(rec[:, :, 0, 0]),
        "ar10": _mean_or_minus_one(rec[:, :, 0, 1]), "ar100": _mean_or_minus_one(rec[:, :, 0, 2]),
    }
    if size_ranges:
        for a, size in enumerate(("small", "medium", "large"), start=1):
            out[f"map_{size}"] = _mean_or_minus_one(prec[:, :, :, a, -1])
            out[f"ar_{size}"] = _mean_or_minus_one(rec[:, :, a, -1])
    return out


def _summary_table(stats: dict[str, float], max_detections: int) -> str:
    """The 12 lines of COCOeval's summary, in its layout (AP/AR by IoU, area and maxDets)."""
    m = max(max_detections, 1)
    rows = [("AP", "0.50:0.95", "all", m, "map"), ("AP", "0.50", "all", m, "map50"),
            ("AP", "0.75", "all", m, "map75"), ("AP", "0.50:0.95", "small", m, "map_small"),
            ("AP", "0.50:0.95", "medium", m, "map_medium"), ("AP", "0.50:0.95", "large", m, "map_large"),
            ("AR", "0.50:0.95", "all", 1, "ar1"), ("AR", "0.50:0.95", "all", 10, "ar10"),
            ("AR", "0.50:0.95", "all", m, "ar100"), ("AR", "0.50:0.95", "small", m, "ar_small"),
            ("AR", "0.50:0.95", "medium", m, "ar_medium"), ("AR", "0.50:0.95", "large", m, "ar_large")]
    title = {"AP": "Average Precision", "AR": "Average Recall"}
    return "\n".join(f" {title[kind]:<18} ({kind}) @[ IoU={iou:<9} | area={area:>6s} | maxDets={dets:>3d} ] = "
                     f"{stats[key]:0.3f}" for kind, iou, area, dets, key in rows)


class Accumulator:
    """Collects padded numpy batches and evaluates them once with :func:`evaluate_detections`.

    ``add`` takes one batch as the data pipeline and the model post-processing give it:

    * ``gt_boxes`` float [B, M, 4] normalised cxcywh, ``gt_labels`` int [B, M] contiguous
      (padding -1), ``gt_mask`` bool [B, M] (True = real box; ``None``: labels >= 0);
    * ``detections`` float [B, K, 6] rows ``(score, class_id, cx, cy, w, h)``, zero padded,
      and ``num_valid`` int [B] (``None``: rows with score > 0);
    * ``image_index`` int [B] (optional): -1 marks a padded image that is skipped.
    """

    def __init__(self, num_classes: int, *, img_size: tuple[int, int] = (64, 64),
                 conf_thresh: float = 0.15, class_names: Sequence[str] | None = None,
                 max_detections: int = 100) -> None:
        self.num_classes = num_classes
        self.img_size = img_size
        self.conf_thresh = conf_thresh
        self.class_names = class_names
        self.max_detections = max_detections
        self.ground_truth: list[GroundTruth] = []
        self.detections: list[Detections] = []

    def __len__(self) -> int:
        return len(self.ground_truth)

    def reset(self) -> None:
        self.ground_truth.clear()
        self.detections.clear()

    def add_image(self, gt_boxes: np.ndarray, gt_labels: np.ndarray, det_boxes: np.ndarray,
                  det_scores: np.ndarray, det_labels: np.ndarray) -> None:
        """Add one image: GT (boxes [N,4], labels [N]) and detections (boxes [K,4], scores, labels)."""
        self.ground_truth.append((_as_boxes(gt_boxes), np.asarray(gt_labels, np.int64).reshape(-1)))
        self.detections.append((_as_boxes(det_boxes), np.asarray(det_scores, np.float64).reshape(-1),
                                np.asarray(det_labels, np.int64).reshape(-1)))

    def add(self, gt_boxes: Any, gt_labels: Any, gt_mask: Any, detections: Any,
            num_valid: Any = None, image_index: Any = None) -> None:
        gt_boxes = np.asarray(gt_boxes, np.float64)
        gt_labels = np.asarray(gt_labels, np.int64)
        mask = np.asarray(gt_mask, bool) if gt_mask is not None else gt_labels >= 0
        dets = np.asarray(detections, np.float64)
        batch = gt_boxes.shape[0]
        if dets.shape[0] != batch:
            raise ValueError(f"detections batch {dets.shape[0]} != ground-truth batch {batch}")
        if num_valid is None:
            valid_counts = (dets[..., 0] > 0).sum(axis=1)
        else:
            valid_counts = np.asarray(num_valid, np.int64).reshape(-1)
        index = np.asarray(image_index).reshape(-1) if image_index is not None else np.zeros(batch, int)
        for i in range(batch):
            if index[i] < 0:
                continue
            m = mask[i] & (gt_labels[i] >= 0)
            rows = dets[i, : int(valid_counts[i])]
            self.add_image(gt_boxes[i][m], gt_labels[i][m], rows[:, 2:6], rows[:, 0], rows[:, 1].round())

    def compute(self) -> dict[str, Any]:
        return evaluate_detections(self.ground_truth, self.detections, self.num_classes,
                                   img_size=self.img_size, conf_thresh=self.conf_thresh,
                                   class_names=self.class_names, max_detections=self.max_detections)


def format_report(result: dict[str, Any]) -> str:
    """Human-readable table: headline numbers, P/R, then per-class AP."""
    lines = [
        f"images {result['num_images']}  gt boxes {result['num_gt']}  detections {result['num_detections']}",
        f"mAP@0.5:0.95 {result['map']:.4f}   mAP@0.5 {result['map50']:.4f}   mAP@0.75 {result['map75']:.4f}"
        "   (COCOeval: faster-coco-eval, equal to pycocotools)",
        f"precision {result['precision']:.4f}   recall {result['recall']:.4f}   "
        f"(conf >= {result['conf_thresh']:g}, IoU 0.5)",
        "",
        f"{'class':<20} {'gt':>6} {'AP@.5:.95':>10} {'AP@.5':>8}",
    ]
    for name, row in result["per_class"].items():
        lines.append(f"{name:<20} {row['num_gt']:>6} {row['ap']:>10.4f} {row['ap50']:>8.4f}")
    return "\n".join(lines)
