"""Training-time validation: the compiled eval step over the validation pipeline, scored
by the one evaluation path (:mod:`utod.evaluation`).

The pipeline serves the validation images un-augmented, in item order, in fixed-shape
batches (the last one padded, ``index`` -1), built ahead by its worker threads; the eval
step (forward, validation loss, decode, scores, batched class-aware NMS; traced once for
the whole run) runs on each; while it runs on batch ``i + 1``, a host thread turns batch
``i``'s padded detections into per-image arrays. Ground truth comes from the items
(:func:`utod.evaluation.ground_truth`, computed once per run), COCOeval runs once per
validation.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np

from utod.evaluation import ClassMap, DetectionScorer, ground_truth
from utod.infer.decode import split_detections
from utod.loss import LOSS_KEYS
from utod.metrics import paused_gc
from utod.train.callbacks import EvalResult


class Validator:
    """``run(epoch) -> EvalResult`` on every validation image with ``eval_step``
    (``batch -> (losses, detections [B, K, 6], num_valid [B])``, see
    :func:`utod.train.steps.make_eval_step`)."""

    def __init__(self, eval_step: Callable, data: Any, model_cfg: Any, log: Callable[[str], None] = print) -> None:
        self.step = eval_step
        self.data = data
        self.log = log
        self.scorer = DetectionScorer.of(model_cfg)
        classes = ClassMap.of(model_cfg)
        self.ground_truth = [ground_truth(it, classes) for it in data.items]
        self.image_paths = [str(it.image_path) for it in data.items]
        self._host: ThreadPoolExecutor | None = None

    def _collect(self, out: list, index: np.ndarray, dets, num) -> None:
        """Padded batch detections -> per-image (boxes, scores, labels) at ``out[index]``."""
        for i, image_dets in zip(index.tolist(), split_detections(dets.numpy(), num.numpy())):
            if i >= 0:
                out[i] = image_dets

    def _forward_all(self) -> tuple[dict[str, float], list, bool]:
        """Every validation batch through the step -> (mean losses, per-image detections,
        whether every raw output was finite)."""
        if self._host is None:
            self._host = ThreadPoolExecutor(max_workers=1, thread_name_prefix="utod-val-host")
        detections: list = [None] * len(self.image_paths)
        sums = dict.fromkeys(LOSS_KEYS, 0.0)
        batches = 0
        finite = True
        pending: Future | None = None
        for batch in self.data.numpy_batches(0):
            losses, dets, num = self.step(batch)
            if pending is not None:
                pending.result()
            pending = self._host.submit(self._collect, detections, batch["index"], dets, num)
            for k in LOSS_KEYS:
                sums[k] += float(losses[k].numpy())
            if "raw_finite" in losses and not bool(losses["raw_finite"].numpy()):
                finite = False
            batches += 1
        if pending is not None:
            pending.result()
        return {k: v / max(1, batches) for k, v in sums.items()}, detections, finite

    def run(self, epoch: int) -> EvalResult:
        t0 = time.perf_counter()
        with paused_gc():  # per-batch tensors and ~100 detections per image: no full collections meanwhile
            losses, detections, finite = self._forward_all()
        metrics: dict[str, float | None] = {f"val_{'loss' if k == 'total' else k}": v for k, v in losses.items()}
        coco: dict = {}
        if not finite or not all(math.isfinite(v) for v in losses.values()):
            # NaN/Inf outputs decode to arbitrary boxes (even full-image ones with score 1): no score
            metrics.update(map50_95=None, map50=None, precision=None, recall=None)
            self.log(f"  val: loss={metrics['val_loss']:.4f}: the model's outputs are non-finite, so this validation "
                     f"is not scored (mAP not available; no best checkpoint)")
        else:
            coco = self.scorer.score(self.ground_truth, detections, size_ranges=False)  # none reported
            metrics.update(map50_95=float(coco["map"]), map50=float(coco["map50"]),
                           precision=float(coco["precision"]), recall=float(coco["recall"]))
            self.log(f"  val: loss={metrics['val_loss']:.4f} mAP@0.5={metrics['map50']:.4f} "
                     f"mAP@0.5:0.95={metrics['map50_95']:.4f} P={metrics['precision']:.3f} R={metrics['recall']:.3f} "
                     f"({coco.get('num_images', '?')} images, {time.perf_counter() - t0:.2f}s)")
        return EvalResult(epoch=epoch, metrics=metrics, coco=coco, image_paths=self.image_paths,
                          ground_truth=self.ground_truth, detections=detections, img_size=self.scorer.img_size,
                          class_names=self.scorer.class_names, seconds=time.perf_counter() - t0)

    def close(self) -> None:
        if self._host is not None:
            self._host.shutdown(wait=True)
            self._host = None
