"""The training-time diagnostics, as a callback on the trainer's protocol
(:mod:`utod.train.callbacks`).

* ``on_train_start``: ``labels.png`` (training boxes per class, centres, w/h with the
  anchors) -- once per run folder;
* ``on_eval_end`` (every validation): matches, curves and the F1-optimal confidence; one
  console line with it (and a hint when ``--conf-thresh`` hides what the model finds);
  ``per_class_ap.csv`` rows; the F1-optimal confidence for the checkpoints of this epoch
  (``run.extras["checkpoint_extra"]["diagnostics"]``, stored by the checkpoint writer);
* ``on_epoch_end`` with a new best: the figures (PR / F1 / P / R curves, confusion
  matrices, ``val_batch*.jpg`` mosaics, ``diagnostics.json``) of that best evaluation are due.
  Drawing takes a few seconds on 2 cores, so it happens at most every
  ``min_draw_interval_s`` seconds; the last pending best is always drawn when training
  stops, so the files always describe ``best.keras``;
* ``on_stop``: the pending figures, the per-class table and the threshold line of the best.

A plotting failure is reported and never stops training.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from utod.diagnostics import report
from utod.diagnostics.threshold import META_KEY

CHECKPOINT_EXTRA = "checkpoint_extra"  # run.extras key whose dict the checkpoint writer merges into ``extra``


def contiguous_labels(items, class_ids) -> tuple[np.ndarray, np.ndarray]:
    """Boxes [N, 4] and contiguous labels [N] of dataset items whose raw ids are trained."""
    lut = {int(c): i for i, c in enumerate(class_ids)}
    boxes, labels = [], []
    for it in items:
        lab = np.asarray(it.labels).reshape(-1)
        keep = np.array([int(v) in lut for v in lab], bool)
        if keep.any():
            boxes.append(np.asarray(it.boxes, np.float64).reshape(-1, 4)[keep])
            labels.append(np.array([lut[int(v)] for v in lab[keep]], np.int64))
    if not boxes:
        return np.zeros((0, 4)), np.zeros(0, np.int64)
    return np.concatenate(boxes), np.concatenate(labels)


class DiagnosticsCallback:
    """See the module docstring. ``mosaics`` files of ``mosaic_images`` validation images each."""

    def __init__(self, *, mosaics: int = 3, mosaic_images: int = 16, min_draw_interval_s: float = 60.0,
                 registry: Any = None):
        self.mosaics = int(mosaics)
        self.mosaic_images = int(mosaic_images)
        self.min_draw_interval_s = float(min_draw_interval_s)
        self.registry = registry
        self._latest: tuple[Any, report.Analysis, dict] | None = None
        self._best: tuple[Any, report.Analysis, dict] | None = None
        self._pending = False
        self._last_draw = float("-inf")
        self._images: list[np.ndarray] | None = None
        self._hinted = False

    # ------------------------------------------------------------------ hooks
    def on_train_start(self, run, start) -> None:
        path = Path(run.run_dir) / "labels.png"
        if path.exists():
            return
        try:
            from utod.diagnostics.plots import plot_labels

            plan = run.plan
            boxes, labels = contiguous_labels(plan.train_items, plan.class_ids)
            anchors = np.asarray(run.eval_model.effective_anchors(), np.float64)
            plot_labels(boxes, labels, list(plan.class_names), path, anchors=anchors)
        except Exception as exc:  # a drawing problem must never stop training
            run.log(f"  (could not draw labels.png: {exc})")

    def on_eval_end(self, run, result) -> None:
        cfg = run.cfg
        a = report.analyse(result.ground_truth, result.detections, result.class_names, img_size=result.img_size,
                           fallback_conf=float(cfg.conf_thresh), coco_per_class=(result.coco or {}).get("per_class"))
        s = report.summary(a, float(cfg.conf_thresh))
        run.log(report.f1_line(s))
        hint = report.threshold_advice(s)
        if hint and not self._hinted:  # once during training, again in the final summary
            run.log(hint)
            self._hinted = True
        report.write_per_class_csv(run.run_dir, result.epoch, s)
        run.extras.setdefault(CHECKPOINT_EXTRA, {})[META_KEY] = {
            "f1_conf": s["f1_conf"], "f1": s["f1"], "precision": s["precision"], "recall": s["recall"],
            "epoch": int(result.epoch), "iou": 0.5, "averaging": "mean over classes",
        }
        self._latest = (result, a, s)

    def on_epoch_end(self, run, epoch) -> None:
        if not (epoch.is_best and self._latest is not None and self._latest[0].epoch == epoch.epoch):
            return
        self._best = self._latest
        self._pending = True
        if time.perf_counter() - self._last_draw >= self.min_draw_interval_s:
            self._draw(run)

    def on_stop(self, run, end) -> None:
        if self._pending:
            self._draw(run)
        if self._best is None:
            return
        result, _, s = self._best
        run.log(f"Best epoch {result.epoch} per class (diagnostics in {run.run_dir}):")
        run.log(report.format_per_class(s))
        run.log(report.f1_line(s).replace("  F1-optimal", "  best checkpoint: F1-optimal"))
        hint = report.threshold_advice(s)
        if hint:
            run.log(hint)

    # ------------------------------------------------------------------ drawing
    def _mosaic_images(self, run, result) -> list[np.ndarray]:
        """The first validation images as the network sees them (cached: they never change)."""
        n = min(len(result.image_paths), self.mosaics * self.mosaic_images)
        if self._images is None or len(self._images) != n:
            from utod.infer.preprocess import Preprocessor

            mc = run.plan.model_cfg
            pre = Preprocessor(tuple(mc.img_size), mc.resize_mode, self.registry)
            self._images = list(pre.load(result.image_paths[:n]))
        return self._images

    def _draw(self, run) -> None:
        self._pending = False
        self._last_draw = time.perf_counter()
        if self._best is None:
            return
        result, a, s = self._best
        d = Path(run.run_dir)
        try:
            report.write_figures(d, a)
            from utod.diagnostics.mosaic import write_mosaic

            images = self._mosaic_images(run, result)
            for b in range(self.mosaics):
                sl = slice(b * self.mosaic_images, (b + 1) * self.mosaic_images)
                if not images[sl]:
                    break
                write_mosaic(d / f"val_batch{b}.jpg", images[sl], result.ground_truth[sl], result.detections[sl],
                             a.class_names, a.conf)
            report.write_summary_json(d, s, epoch=int(result.epoch), map50=report._finite(result.metrics.get("map50")),
                                      map50_95=report._finite(result.metrics.get("map50_95")))
        except Exception as exc:  # a drawing problem must never stop training
            run.log(f"  (could not write the diagnostics figures: {exc})")
        self._last_draw = time.perf_counter()
