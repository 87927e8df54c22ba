"""One evaluation -> numbers and files: curves, F1-optimal confidence, confusion matrix,
per-class table, and the threshold advice printed when P/R at ``--conf-thresh`` look dead.

Pure functions of numpy ground truth / detections (the lists of
:class:`utod.metrics.Accumulator`, or the trainer's ``EvalResult``); no TensorFlow.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from utod.diagnostics._atomic import write_text_atomic
from utod.diagnostics.confusion import confusion_matrix, normalise_rows
from utod.diagnostics.curves import Curves, compute_curves
from utod.diagnostics.matching import Detections, GroundTruth, match_all

PER_CLASS_CSV = "per_class_ap.csv"
SUMMARY_JSON = "diagnostics.json"
CONFUSION_CSV = "confusion_matrix.csv"
PER_CLASS_COLUMNS = ["epoch", "class", "gt", "detections", "ap50_95", "ap50", "conf", "precision", "recall", "f1"]
CURVE_FILES = ("PR_curve.png", "F1_curve.png", "P_curve.png", "R_curve.png")
CONFUSION_FILES = ("confusion_matrix.png", "confusion_matrix_normalized.png", CONFUSION_CSV)


def _finite(v: Any, default: float = 0.0) -> float:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return default
    return f if math.isfinite(f) else default


@dataclass
class Analysis:
    """What one evaluation says beyond mAP. ``conf`` is the threshold the confusion matrix,
    the per-class P/R/F1 and the mosaics use: the F1-optimal one, else ``fallback_conf``."""

    curves: Curves
    class_names: list[str]
    conf: float
    conf_is_f1_optimal: bool
    fallback_conf: float
    coco_per_class: dict[str, dict[str, Any]] | None
    ground_truth: Sequence[GroundTruth]
    detections: Sequence[Detections]
    img_size: tuple[int, int]
    iou_thresh: float = 0.5
    _confusion: np.ndarray | None = None

    @property
    def best_conf(self) -> float | None:
        return self.curves.best_conf

    @property
    def confusion(self) -> np.ndarray:
        """[C+1, C+1] counts at ``conf`` (computed on first use: only drawing needs it)."""
        if self._confusion is None:
            self._confusion = confusion_matrix(self.ground_truth, self.detections, len(self.class_names), self.conf,
                                               iou_thresh=self.iou_thresh, img_size=self.img_size)
        return self._confusion


def analyse(ground_truth: Sequence[GroundTruth], detections: Sequence[Detections], class_names: Sequence[str], *,
            img_size: tuple[int, int], fallback_conf: float, coco_per_class: dict | None = None,
            iou_thresh: float = 0.5) -> Analysis:
    """Match (class-aware, IoU ``iou_thresh``), build the curves and pick the F1-optimal
    confidence; the confusion matrix (``Analysis.confusion``) is taken at it, or at
    ``fallback_conf`` when no threshold gives a correct detection."""
    names = [str(n) for n in class_names]
    matched = match_all(ground_truth, detections, len(names), iou_thresh=iou_thresh, img_size=img_size)
    curves = compute_curves(matched)
    conf = curves.best_conf if curves.best_conf is not None else float(fallback_conf)
    return Analysis(curves, names, float(conf), curves.best_conf is not None, float(fallback_conf),
                    coco_per_class, ground_truth, detections, tuple(img_size), iou_thresh)


def summary(a: Analysis, conf_thresh: float) -> dict[str, Any]:
    """JSON-safe numbers: the F1-optimal confidence with mean P/R/F1 there, the same at the
    configured ``conf_thresh``, the highest score, and per class (at the F1-optimal conf)."""
    at_best = a.curves.at(a.conf)
    at_cfg = a.curves.at(conf_thresh)
    per_class = {}
    for k, name in enumerate(a.class_names):
        coco = (a.coco_per_class or {}).get(name, {})
        per_class[name] = {
            "gt": int(a.curves.num_gt[k]), "detections": int(a.curves.num_det[k]),
            "ap50_95": _finite(coco.get("ap")) if coco else None,
            "ap50": _finite(coco.get("ap50", a.curves.ap50[k])) if coco else _finite(a.curves.ap50[k]),
            "precision": _finite(at_best["precision"][k]), "recall": _finite(at_best["recall"][k]),
            "f1": _finite(at_best["f1"][k]),
        }
    return {
        "f1_conf": a.best_conf,
        "f1": _finite(at_best["mean_f1"]) if a.conf_is_f1_optimal else 0.0,
        "precision": _finite(at_best["mean_precision"]) if a.conf_is_f1_optimal else 0.0,
        "recall": _finite(at_best["mean_recall"]) if a.conf_is_f1_optimal else 0.0,
        "conf_thresh": float(conf_thresh),
        "at_conf_thresh": {"precision": _finite(at_cfg["mean_precision"]), "recall": _finite(at_cfg["mean_recall"]),
                           "f1": _finite(at_cfg["mean_f1"])},
        "max_score": _finite(a.curves.max_score),
        "matrix_conf": a.conf,
        "per_class": per_class,
        "averaging": "mean over classes with ground truth; IoU 0.5, class-aware matching",
    }


def f1_line(s: dict[str, Any], flag: str = "--conf-thresh") -> str:
    """One console line: the F1-optimal threshold and what it gives."""
    if s["f1_conf"] is None:
        return (f"  F1-optimal conf: none (no detection matches a ground-truth box at IoU 0.5; "
                f"highest score {s['max_score']:.3f})")
    return (f"  F1-optimal conf {s['f1_conf']:.3f}: P={s['precision']:.3f} R={s['recall']:.3f} F1={s['f1']:.3f} "
            f"(at {flag} {s['conf_thresh']:g}: P={s['at_conf_thresh']['precision']:.3f} "
            f"R={s['at_conf_thresh']['recall']:.3f})")


def threshold_advice(s: dict[str, Any], flag: str = "--conf-thresh") -> str | None:
    """A hint when the configured threshold (``flag``) hides what the model finds: P and R
    there are 0 (or F1 there is under half the best) while another threshold works."""
    best = s["f1_conf"]
    if best is None:
        return None
    at = s["at_conf_thresh"]
    dead = at["precision"] == 0.0 and at["recall"] == 0.0
    weak = at["f1"] < 0.5 * s["f1"]
    if not (dead or weak):
        return None
    why = (f"no detection scores reach {flag} {s['conf_thresh']:g} (highest score {s['max_score']:.3f})"
           if s["max_score"] < s["conf_thresh"] else
           f"at {flag} {s['conf_thresh']:g} F1 is {at['f1']:.3f}, at {best:.3f} it is {s['f1']:.3f}")
    return (f"  hint: {why}. Use {flag} {best:.3f}; `utod predict` / `utod export` with --conf-thresh best "
            f"use the F1-optimal value stored in the checkpoint")


def format_per_class(s: dict[str, Any]) -> str:
    """Per-class table: gt, detections, AP@0.5:0.95, AP@0.5, P/R/F1 at the F1-optimal confidence."""
    conf = s["matrix_conf"]
    lines = [f"  {'class':<20} {'gt':>6} {'dets':>6} {'AP@.5:.95':>10} {'AP@.5':>7} "
             f"{'P':>6} {'R':>6} {'F1':>6}   (P/R/F1 at conf {conf:.3f})"]
    for name, r in s["per_class"].items():
        ap = "-" if r["ap50_95"] is None else f"{r['ap50_95']:.4f}"
        lines.append(f"  {name[:20]:<20} {r['gt']:>6} {r['detections']:>6} {ap:>10} {r['ap50']:>7.4f} "
                     f"{r['precision']:>6.3f} {r['recall']:>6.3f} {r['f1']:>6.3f}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------- files
def write_per_class_csv(run_dir: str | Path, epoch: int, s: dict[str, Any]) -> Path:
    """Append this evaluation's per-class rows to ``per_class_ap.csv`` (long format: one row
    per epoch and class). Rows of this epoch or later are replaced, so a resumed run that
    redoes an epoch does not duplicate it. The whole file is rewritten atomically."""
    path = Path(run_dir) / PER_CLASS_CSV
    rows: list[dict[str, str]] = []
    if path.exists():
        with path.open(newline="", encoding="utf-8") as fh:
            rows = [r for r in csv.DictReader(fh) if _finite(r.get("epoch"), -1) < epoch]
    conf = s["matrix_conf"]
    for name, r in s["per_class"].items():
        rows.append({
            "epoch": str(epoch), "class": name, "gt": str(r["gt"]), "detections": str(r["detections"]),
            "ap50_95": "" if r["ap50_95"] is None else f"{r['ap50_95']:.6g}", "ap50": f"{r['ap50']:.6g}",
            "conf": f"{conf:.6g}", "precision": f"{r['precision']:.6g}", "recall": f"{r['recall']:.6g}",
            "f1": f"{r['f1']:.6g}",
        })
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=PER_CLASS_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return write_text_atomic(path, buf.getvalue())


def write_summary_json(run_dir: str | Path, s: dict[str, Any], **extra: Any) -> Path:
    return write_text_atomic(Path(run_dir) / SUMMARY_JSON, json.dumps({**extra, **s}, indent=2, allow_nan=False))


def write_confusion_csv(path: str | Path, matrix: np.ndarray, names: Sequence[str]) -> Path:
    labels = [*map(str, names), "background"]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["true\\predicted", *labels])
    for lab, row in zip(labels, matrix):
        w.writerow([lab, *(int(v) for v in row)])
    return write_text_atomic(path, buf.getvalue())


def write_figures(run_dir: str | Path, a: Analysis) -> list[Path]:
    """PR / F1 / P / R curves and both confusion matrices (PNG) plus the matrix as CSV."""
    from utod.diagnostics import plots

    d = Path(run_dir)
    out = [
        plots.plot_pr_curve(a.curves, a.class_names, d / "PR_curve.png"),
        plots.plot_metric_curve(a.curves, a.class_names, "f1", d / "F1_curve.png"),
        plots.plot_metric_curve(a.curves, a.class_names, "precision", d / "P_curve.png"),
        plots.plot_metric_curve(a.curves, a.class_names, "recall", d / "R_curve.png"),
        plots.plot_confusion(a.confusion, a.class_names, d / "confusion_matrix.png", normalised=False, conf=a.conf),
        plots.plot_confusion(normalise_rows(a.confusion), a.class_names, d / "confusion_matrix_normalized.png",
                             normalised=True, conf=a.conf),
        write_confusion_csv(d / CONFUSION_CSV, a.confusion, a.class_names),
    ]
    return out
