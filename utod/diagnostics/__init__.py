"""Run-folder diagnostics: what the model detects and misses, beyond one mAP number.

From numpy ground truth and detections (normalised cxcywh boxes, contiguous class indices)
this package computes class-aware matches at IoU 0.5, precision / recall / F1 against the
confidence threshold, PR curves with AP@0.5, the F1-optimal confidence and a confusion
matrix with a background row and column, and draws them (matplotlib, Agg, imported only
when drawing) next to validation mosaics and a labels plot. Every file is written
atomically. :class:`~utod.diagnostics.callback.DiagnosticsCallback` does all of it during
``utod train``; see docs/diagnostics.md for the files and their definitions.

Modules: ``matching`` (IoU, greedy matching), ``curves`` (P/R/F1 vs confidence, PR, AP),
``confusion`` (the matrix), ``plots`` / ``mosaic`` (figures), ``report`` (numbers -> files and
console lines), ``threshold`` (``--conf-thresh best`` for predict/export), ``callback``.
"""

from utod.diagnostics.confusion import confusion_matrix, normalise_rows
from utod.diagnostics.curves import Curves, compute_curves
from utod.diagnostics.matching import MatchedDetections, box_iou, match_all, match_image
from utod.diagnostics.report import Analysis, analyse, summary

__all__ = [
    "Analysis", "Curves", "MatchedDetections", "analyse", "box_iou", "compute_curves", "confusion_matrix",
    "match_all", "match_image", "normalise_rows", "summary",
]
