"""The one evaluation path: training-time validation and ``utod eval`` (and ``utod export``'s
int8 check) score detections here, the same way.

* :class:`DecodeSettings` — how a raw map becomes detections (score mode, quality power,
  conf threshold, NMS IoU, top-K); one object instead of positional arguments.
  :meth:`DecodeSettings.for_map` is the mAP setting: conf ``MAP_CONF_THRESH`` (0.001,
  defined once in :mod:`utod.infer.modelinfo`), so (nearly) the whole PR curve is kept.
* :class:`ClassMap` — raw dataset class ids -> the model's contiguous indices 0..C-1
  (ids outside the model's classes are dropped).
* :func:`ground_truth` — a labelled item's boxes as scored: cut to the image (xyxy
  clip, empty boxes dropped, as the training pipeline does) and class-mapped; never capped
  at ``--max-boxes``.
* :class:`DetectionScorer` — collects per-image ground truth and detections and runs
  COCOeval once (:func:`utod.metrics.evaluate_detections`) with one COCO setup:
  boxes in model-input pixels, ``maxDets = [1, 10, max(100, max_detections)]``,
  precision/recall at the model's ``conf_thresh``.
* :func:`evaluate_detector` — COCO mAP of any :class:`~utod.infer.detector.Detector`
  (``.keras``, ``.onnx``, ``.tflite``) on labelled items; :func:`load_eval_items` — the
  items of a folder, all or the trainer's deterministic train/val split.

The trainer's validation (:mod:`utod.train.validate`) feeds the same :class:`DetectionScorer`
from its compiled eval step, so a run's final validation mAP equals
``utod eval best.keras --split val`` on the same data (a test checks it). Importing this
module never imports TensorFlow.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from utod.data.boxes_np import clip_and_filter
from utod.infer.modelinfo import MAP_CONF_THRESH

__all__ = ["MAP_CONF_THRESH", "ClassMap", "DecodeSettings", "DetectionScorer", "coco_max_dets",
           "evaluate_detector", "ground_truth", "load_eval_items"]


# ---------------------------------------------------------------------- decoding
@dataclass(frozen=True)
class DecodeSettings:
    """Raw map [B, Hg, Wg, A*(5+Q+C)] -> detections: the layout (anchors, ``num_classes`` = C
    the classes in the raw map, i.e. the head's, 0 for a class-less model; quality branch) and
    the decode choices. ``conf_thresh``: minimum score kept; ``iou_thresh``: NMS
    IoU; ``max_detections``: K rows per image."""

    num_anchors: int
    num_classes: int
    has_quality: bool
    score_mode: str
    quality_power: float
    conf_thresh: float
    iou_thresh: float
    max_detections: int

    @classmethod
    def of_model(cls, model: Any) -> DecodeSettings:
        """The settings of a Keras ``UltraTinyOD`` (config defaults, the head's score mode)."""
        from utod.model.postprocess import score_mode_for

        cfg = model.config
        return cls(int(model.num_anchors), int(model.num_classes), bool(model.has_quality), score_mode_for(model),
                   float(cfg.quality_power), float(cfg.conf_thresh), float(cfg.nms_iou), int(cfg.max_detections))

    @classmethod
    def of_info(cls, info: Any) -> DecodeSettings:
        """The settings a :class:`~utod.infer.modelinfo.ModelInfo` describes."""
        return cls(int(info.num_anchors), int(getattr(info, "head_classes", info.num_classes)),
                   bool(info.has_quality), str(info.score_mode),
                   float(info.quality_power), float(info.conf_thresh), float(info.nms_iou),
                   int(info.max_detections))

    def with_thresholds(self, conf_thresh: float | None = None, iou_thresh: float | None = None,
                        max_detections: int | None = None) -> DecodeSettings:
        """A copy with the given thresholds replaced (None keeps the current one). The values
        are kept as given, so a compiled decode may pass scalar tensors (no retracing when they
        change); ``max_detections`` is a shape and stays a Python int."""
        return dataclasses.replace(
            self, conf_thresh=self.conf_thresh if conf_thresh is None else conf_thresh,
            iou_thresh=self.iou_thresh if iou_thresh is None else iou_thresh,
            max_detections=self.max_detections if max_detections is None else int(max_detections))

    def for_map(self) -> DecodeSettings:
        """The mAP decode: conf ``MAP_CONF_THRESH``, the same NMS IoU and K."""
        return self.with_thresholds(conf_thresh=MAP_CONF_THRESH)


def coco_max_dets(max_detections: int) -> int:
    """COCO ``maxDets`` for the headline numbers: at least COCO's 100, more when the model keeps more."""
    return max(100, int(max_detections))


# ---------------------------------------------------------------------- ground truth
class ClassMap:
    """Raw dataset class id -> contiguous class index (``class_ids[k]`` -> ``k``; None:
    identity over 0..num_classes-1)."""

    def __init__(self, class_ids: Sequence[int] | None, num_classes: int) -> None:
        ids = list(class_ids) if class_ids is not None else list(range(num_classes))
        self.class_ids = [int(i) for i in ids]
        self._table = {raw: k for k, raw in enumerate(self.class_ids)}

    @classmethod
    def of(cls, info_or_config: Any) -> ClassMap:
        """From a ModelInfo or ModelConfig (``class_ids``, ``num_classes``)."""
        return cls(info_or_config.class_ids, int(info_or_config.num_classes))

    def to_contiguous(self, labels: Any) -> tuple[np.ndarray, np.ndarray]:
        """Raw ids [N] -> (contiguous indices [N'] int64, keep mask [N] bool)."""
        labels = np.asarray(labels, np.int64).reshape(-1)
        mapped = np.array([self._table.get(int(v), -1) for v in labels], np.int64)
        keep = mapped >= 0
        return mapped[keep], keep


def ground_truth(item: Any, classes: ClassMap) -> tuple[np.ndarray, np.ndarray]:
    """A ``DatasetItem`` as scored -> (boxes [N, 4] normalised cxcywh float32, labels [N] int64):
    boxes cut to the image and empty ones dropped (as the training pipeline does), classes
    mapped by ``classes``."""
    boxes, raw = clip_and_filter(np.asarray(item.boxes, np.float32).reshape(-1, 4),
                                 np.asarray(item.labels).reshape(-1), 0.0)
    labels, keep = classes.to_contiguous(raw)
    return boxes[keep], labels


# ---------------------------------------------------------------------- scoring
class DetectionScorer:
    """Per-image ground truth + detections -> one COCOeval evaluation (see the module
    docstring). ``img_size`` (H, W): the model input the normalised boxes refer to;
    ``pr_conf_thresh``: threshold of the reported precision/recall."""

    def __init__(self, num_classes: int, class_names: Sequence[str], img_size: tuple[int, int], *,
                 pr_conf_thresh: float, max_detections: int) -> None:
        self.num_classes = int(num_classes)
        self.class_names = [str(n) for n in class_names]
        self.img_size = (int(img_size[0]), int(img_size[1]))
        self.pr_conf_thresh = float(pr_conf_thresh)
        self.max_dets = coco_max_dets(max_detections)

    @classmethod
    def of(cls, info_or_config: Any, pr_conf_thresh: float | None = None) -> DetectionScorer:
        """For a ModelInfo / ModelConfig (P/R at its conf_thresh unless given)."""
        c = info_or_config
        names = list(c.class_names) if c.class_names else [f"class{i}" for i in range(int(c.num_classes))]
        return cls(int(c.num_classes), names, tuple(c.img_size),
                   pr_conf_thresh=c.conf_thresh if pr_conf_thresh is None else pr_conf_thresh,
                   max_detections=int(c.max_detections))

    def score(self, gts: Sequence[tuple[np.ndarray, np.ndarray]],
              dets: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]], *,
              size_ranges: bool = True) -> dict[str, Any]:
        """COCO result of :func:`utod.metrics.evaluate_detections` (map, map50, per_class, P/R, ...).
        ``size_ranges=False`` (training validation): COCO's 'all' area range only — the same
        numbers, without map_small/medium/large, for a quarter of the matching work."""
        from utod.metrics import evaluate_detections

        return evaluate_detections(gts, dets, self.num_classes, img_size=self.img_size,
                                   conf_thresh=self.pr_conf_thresh, class_names=self.class_names,
                                   max_detections=self.max_dets, size_ranges=size_ranges)


# ---------------------------------------------------------------------- a Detector on items
def evaluate_detector(detector: Any, items: Sequence[Any], *, conf_thresh: float | None = None,
                      iou_thresh: float | None = None, eval_conf_thresh: float | None = None,
                      batch_size: int = 32) -> dict[str, Any]:
    """COCO mAP of ``detector`` on ``items`` (``DatasetItem``: image_path, boxes, raw labels).

    ``conf_thresh`` / ``iou_thresh``: decode thresholds (default: the model's);
    ``eval_conf_thresh``: the threshold of the reported precision/recall (default: the
    model's conf_thresh, as in training).

    A model with post-processing inside (``info.output == "detections"``) can only give what
    it outputs: its baked-in threshold (or a higher ``conf_thresh``), its NMS IoU and top-K.
    The mAP is then computed on those detections, which cuts the precision/recall curve at
    the baked threshold (a lower mAP than the checkpoint's at 0.001 when it was exported
    with a high ``--conf-thresh``). The result says which settings were used:
    ``effective_conf_thresh``, ``effective_nms_iou`` and ``baked_conf_thresh`` /
    ``baked_nms_iou`` / ``baked_max_detections`` (``None`` for raw-output models and Keras).
    ``detect_seconds`` / ``images_per_s``: wall time of reading, preprocessing and detecting
    (COCO scoring excluded) and the images per second it gives.
    """
    info = detector.info
    conf = info.conf_thresh if conf_thresh is None else float(conf_thresh)
    iou = info.nms_iou if iou_thresh is None else float(iou_thresh)
    if info.has_postprocess:  # what the file can give: nothing below its threshold, its own NMS
        conf = max(conf, info.conf_thresh)
    classes = ClassMap.of(info)
    gts = [ground_truth(it, classes) for it in items]
    t0 = time.perf_counter()
    dets = detector.detect_files([it.image_path for it in items], conf, iou, batch_size)
    detect_s = time.perf_counter() - t0
    scorer = DetectionScorer.of(info, eval_conf_thresh)
    result = scorer.score(gts, dets)
    from utod.diagnostics.report import analyse, summary  # the F1-optimal confidence, as in training

    result["diagnostics"] = summary(analyse(gts, dets, scorer.class_names, img_size=scorer.img_size,
                                            fallback_conf=scorer.pr_conf_thresh), scorer.pr_conf_thresh)
    baked = info.has_postprocess
    result.update(
        effective_conf_thresh=conf,
        effective_nms_iou=info.nms_iou if baked else iou,
        baked_conf_thresh=info.conf_thresh if baked else None,
        baked_nms_iou=info.nms_iou if baked else None,
        baked_max_detections=info.max_detections if baked else None,
        detect_seconds=detect_s,
        images_per_s=len(items) / detect_s if detect_s > 0 else 0.0,
    )
    return result


def load_eval_items(image_dir: str, info: Any, *, split: str = "all", train_split: float = 0.8,
                    val_split: float = 0.2, seed: int = 42, log: Callable[[str], None] | None = None) -> list[Any]:
    """Labelled images of ``image_dir`` (any dataset layout, see :mod:`utod.data.formats`) for
    evaluation: all of them (``split="all"``), the description's own ``"val"``/``"train"``/
    ``"test"`` set, or for a plain folder that part of the trainer's deterministic split
    (same ratios and seed give the same images as ``utod train``)."""
    from utod.data.loading import load_items

    items, _ = load_items(image_dir, class_ids=info.class_ids, model_names=list(info.class_names or []) or None,
                          split=split, train_split=train_split, val_split=val_split, seed=seed, log=log)
    return items
