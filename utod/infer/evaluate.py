"""COCO mAP of a :class:`~utod.infer.detector.Detector` on a labelled folder (``utod eval``,
``utod export``'s check). The trainer's single evaluation module is meant to absorb this
module: the class mapping (``contiguous_labels``), the item loading and the scoring."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from utod.infer.detector import Detector
from utod.infer.modelinfo import ModelInfo


def contiguous_labels(labels: np.ndarray, info: ModelInfo) -> tuple[np.ndarray, np.ndarray]:
    """Raw dataset ids [N] -> (contiguous class index [N'], keep mask [N]): ids outside the
    model's classes (``class_ids`` or 0..C-1) are dropped."""
    labels = np.asarray(labels, np.int64).reshape(-1)
    ids = info.class_ids if info.class_ids is not None else list(range(info.num_classes))
    table = {raw: k for k, raw in enumerate(ids)}
    mapped = np.array([table.get(int(v), -1) for v in labels], np.int64)
    keep = mapped >= 0
    return mapped[keep], keep


def evaluate_detector(detector: Detector, items: Sequence[Any], *, conf_thresh: float | None = None,
                      iou_thresh: float | None = None, eval_conf_thresh: float = 0.15,
                      batch_size: int = 32) -> dict[str, Any]:
    """COCO mAP of ``detector`` on ``items`` (``DatasetItem``: image_path, boxes, raw labels).

    ``conf_thresh`` / ``iou_thresh``: decode thresholds (default: the model's);
    ``eval_conf_thresh``: the threshold of the reported precision/recall.

    A model with post-processing inside (``info.output == "detections"``) can only give what
    it outputs: its baked-in threshold (or a higher ``conf_thresh``), its NMS IoU and top-K.
    The mAP is then computed on those detections, which cuts the precision/recall curve at
    the baked threshold (a lower mAP than the checkpoint's at 0.001 when it was exported
    with a high ``--conf-thresh``). The result says which settings were used:
    ``effective_conf_thresh``, ``effective_nms_iou`` and ``baked_conf_thresh`` /
    ``baked_nms_iou`` / ``baked_max_detections`` (``None`` for raw-output models and Keras).
    ``detect_seconds`` / ``images_per_s``: wall time of reading, preprocessing and detecting
    (COCO scoring excluded) and the images per second it gives; ``first_batch_seconds``
    (compiling included) and ``steady_images_per_s`` (after the first batch; None for one
    batch).
    """
    from utod.metrics import evaluate_detections

    info = detector.info
    conf = info.conf_thresh if conf_thresh is None else float(conf_thresh)
    iou = info.nms_iou if iou_thresh is None else float(iou_thresh)
    if info.has_postprocess:  # what the file can give: nothing below its threshold, its own NMS
        conf = max(conf, info.conf_thresh)
    gts = []
    for it in items:
        labels, keep = contiguous_labels(it.labels, info)
        gts.append((np.asarray(it.boxes, np.float32).reshape(-1, 4)[keep], labels))
    dets = detector.detect_files([it.image_path for it in items], conf, iou, batch_size)
    timing = detector.last_run
    result = evaluate_detections(gts, dets, info.num_classes, img_size=info.img_size,
                                 conf_thresh=eval_conf_thresh, class_names=info.class_names,
                                 max_detections=max(100, info.max_detections))
    baked = info.has_postprocess
    result.update(
        effective_conf_thresh=conf,
        effective_nms_iou=info.nms_iou if baked else iou,
        baked_conf_thresh=info.conf_thresh if baked else None,
        baked_nms_iou=info.nms_iou if baked else None,
        baked_max_detections=info.max_detections if baked else None,
        detect_seconds=timing.seconds,
        images_per_s=timing.images_per_s,
        steady_images_per_s=timing.steady_images_per_s,
        first_batch_seconds=timing.first_batch_seconds,
    )
    return result


def load_eval_items(image_dir: str, info: ModelInfo, *, split: str = "all", train_split: float = 0.8,
                    val_split: float = 0.2, seed: int = 42, log: Callable[[str], None] | None = None) -> list[Any]:
    """Labelled images of ``image_dir`` (any dataset layout, see :mod:`utod.data.formats`) for
    evaluation: all of them (``split="all"``), the description's own ``"val"``/``"train"``/
    ``"test"`` set, or for a plain folder that part of the trainer's deterministic split
    (same ratios and seed give the same images as ``utod train``)."""
    from utod.data.loading import load_items

    items, _ = load_items(image_dir, class_ids=info.class_ids, model_names=list(info.class_names or []) or None,
                          split=split, train_split=train_split,
                          val_split=val_split, seed=seed, log=log)
    return items
