"""The run folder's diagnostic figures, drawn with matplotlib's object API on an Agg canvas
(no pyplot state, no display needed); matplotlib is imported only when a figure is drawn.
Every file is written atomically (temporary file + rename).

* ``PR_curve.png``: precision vs recall per class (COCO-interpolated) and the mean, AP@0.5 in
  the legend;
* ``F1_curve.png``, ``P_curve.png``, ``R_curve.png``: F1 / precision / recall vs confidence
  per class and the mean over classes; the F1-optimal confidence is marked;
* ``confusion_matrix.png`` (counts) and ``confusion_matrix_normalized.png`` (rows sum to 1),
  with the background row and column;
* ``labels.png``: boxes per class, box centres, box widths/heights with the anchors.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from utod.diagnostics._atomic import save_figure_atomic
from utod.diagnostics.curves import RECALL_POINTS, Curves

_MAX_LEGEND = 12  # classes named in a legend; with more, per-class lines are drawn thin and grey


def _figure(w: float, h: float, ncols: int = 1):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w, h))
    axes = fig.subplots(1, ncols) if ncols > 1 else fig.subplots()
    return fig, axes


def _class_lines(ax, x: np.ndarray, ys: np.ndarray, curves: Curves, names: Sequence[str], fmt) -> None:
    many = int(curves.valid.sum()) > _MAX_LEGEND
    for k in np.where(curves.valid)[0]:
        if many:
            ax.plot(x, ys[k], color="grey", lw=0.5, alpha=0.6)
        else:
            ax.plot(x, ys[k], lw=1, label=fmt(k, names[k]))


def plot_pr_curve(curves: Curves, names: Sequence[str], path: str | Path) -> Path:
    fig, ax = _figure(6.4, 5.2)
    _class_lines(ax, RECALL_POINTS, curves.pr_precision, curves, names,
                 lambda k, n: f"{n} {curves.ap50[k]:.3f}")
    mean_ap = float(curves.mean(curves.ap50))
    ax.plot(RECALL_POINTS, curves.mean(curves.pr_precision), color="blue", lw=2.5,
            label=f"all classes {mean_ap:.3f} mAP@0.5")
    ax.set(xlabel="Recall", ylabel="Precision", xlim=(0, 1), ylim=(0, 1.01), title="Precision-Recall (IoU 0.5)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    return save_figure_atomic(fig, path)


def plot_metric_curve(curves: Curves, names: Sequence[str], which: str, path: str | Path) -> Path:
    """``which`` in {"f1", "precision", "recall"}: that metric against the confidence threshold."""
    ys = {"f1": curves.f1, "precision": curves.precision, "recall": curves.recall}[which]
    label = {"f1": "F1", "precision": "Precision", "recall": "Recall"}[which]
    fig, ax = _figure(6.4, 5.2)
    _class_lines(ax, curves.conf, ys, curves, names, lambda k, n: n)
    mean = curves.mean(ys)
    if curves.best_conf is not None:
        at = curves.at(curves.best_conf)
        value = at[f"mean_{which}"]
        ax.plot(curves.conf, mean, color="blue", lw=2.5, label=f"all classes {value:.2f} at {curves.best_conf:.3f}")
        ax.axvline(curves.best_conf, color="red", ls="--", lw=1, label=f"F1-optimal conf {curves.best_conf:.3f}")
    else:
        ax.plot(curves.conf, mean, color="blue", lw=2.5, label="all classes (no correct detection)")
    ax.set(xlabel="Confidence", ylabel=label, xlim=(0, 1), ylim=(0, 1.01), title=f"{label}-Confidence (IoU 0.5)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    return save_figure_atomic(fig, path)


def plot_confusion(matrix: np.ndarray, names: Sequence[str], path: str | Path, *, normalised: bool,
                   conf: float) -> Path:
    """``matrix`` [C+1, C+1] (rows true, columns predicted; last = background)."""
    labels = [*map(str, names), "background"]
    n = len(labels)
    size = min(4.0 + 0.45 * n, 24.0)
    fig, ax = _figure(size, size * 0.85)
    shown = matrix.astype(np.float64)
    im = ax.imshow(shown, cmap="Blues", vmin=0, vmax=1 if normalised else max(1.0, float(shown.max())))
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    if n <= 30:  # cell values are readable up to ~30 classes
        hi = (1.0 if normalised else max(1.0, float(shown.max()))) * 0.5
        for i in range(n):
            for j in range(n):
                v = shown[i, j]
                if v:
                    ax.text(j, i, f"{v:.2f}" if normalised else str(int(v)), ha="center", va="center",
                            fontsize=7, color="white" if v > hi else "black")
    ticks = np.arange(n)
    ax.set_xticks(ticks, labels if n <= 60 else [""] * n, rotation=90, fontsize=7)
    ax.set_yticks(ticks, labels if n <= 60 else [""] * n, fontsize=7)
    ax.set_xlabel("Predicted")
    ax.set_ylabel("True")
    what = "normalised by true class" if normalised else "counts"
    ax.set_title(f"Confusion matrix ({what}; conf >= {conf:.3f}, IoU 0.5)", fontsize=9)
    fig.tight_layout()
    return save_figure_atomic(fig, path)


def plot_labels(boxes: np.ndarray, labels: np.ndarray, names: Sequence[str], path: str | Path,
                anchors: np.ndarray | None = None) -> Path:
    """``boxes`` [N, 4] normalised cxcywh, ``labels`` [N] contiguous class indices,
    ``anchors`` [A, 2] normalised (w, h)."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    labels = np.asarray(labels, np.int64).reshape(-1)
    fig, (a0, a1, a2) = _figure(15, 4.6, ncols=3)
    counts = np.bincount(labels[(labels >= 0) & (labels < len(names))], minlength=len(names))
    a0.bar(np.arange(len(names)), counts, color="steelblue")
    a0.set_xticks(np.arange(len(names)), [str(n) for n in names] if len(names) <= 40 else [""] * len(names),
                  rotation=90 if len(names) > 6 else 0, fontsize=7)
    a0.set(ylabel="boxes", title=f"boxes per class ({len(labels)} boxes)")
    if len(boxes):
        a1.hist2d(boxes[:, 0], boxes[:, 1], bins=32, range=[[0, 1], [0, 1]], cmap="Blues")
        a2.hist2d(boxes[:, 2], boxes[:, 3], bins=32, range=[[0, 1], [0, 1]], cmap="Blues")
    a1.set(xlim=(0, 1), ylim=(1, 0), xlabel="x (centre)", ylabel="y (centre)", title="box centres")
    a2.set(xlim=(0, 1), ylim=(0, 1), xlabel="width", ylabel="height", title="box width / height and anchors")
    if anchors is not None and len(anchors):
        an = np.asarray(anchors, np.float64).reshape(-1, 2)
        a2.scatter(an[:, 0], an[:, 1], marker="x", s=60, color="red", label=f"{len(an)} anchors")
        a2.legend(fontsize=7, loc="upper left")
    for ax in (a1, a2):
        ax.set_aspect("equal")
    fig.tight_layout()
    return save_figure_atomic(fig, path)
