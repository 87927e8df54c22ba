"""Scores, decode, class-aware NMS and top-k: raw map -> fixed-size detections.

Everything here is plain TensorFlow that runs eagerly, inside ``tf.function`` with a fixed
input signature, and converts with tf2onnx (opset 17) and the TFLite converter using
builtin ops only (NMS is ``NonMaxSuppressionV4``: ONNX ``NonMaxSuppression`` /
TFLite ``NON_MAX_SUPPRESSION_V4``).

Detections are float32 [B, K, 6] rows ``(score, class_id, cx, cy, w, h)`` with boxes
normalised to the network input and clipped to [0, 1], sorted by score (descending),
zero-padded after ``num_valid`` int32 [B] rows.
"""

from __future__ import annotations

from typing import Any

from utod._keras import keras, tf
from utod.boxes import RawParts, cxcywh_to_xyxy, decode_boxes, split_raw, xyxy_to_cxcywh

SCORE_MODES = ("obj_quality_cls", "quality_cls", "obj_cls")
PRE_NMS_TOPK = 1000
"""Candidates (anchor x cell x class) kept per image before NMS."""


def score_mode_for(cfg_or_model: Any) -> str:
    """Resolve ``score_mode=None`` (auto): ``quality_cls`` with an IoU-aware head, else
    ``obj_quality_cls``. Accepts a ModelConfig or an UltraTinyOD."""
    cfg = getattr(cfg_or_model, "config", cfg_or_model)
    if cfg.score_mode is not None:
        return cfg.score_mode
    head = getattr(cfg_or_model, "head", None)
    if head is not None and getattr(head, "default_score_mode", None):
        return str(head.default_score_mode)
    return "quality_cls" if cfg.head_options.get("iou_aware", False) else "obj_quality_cls"


def class_scores(parts: RawParts, score_mode: str, quality_power: float = 1.0) -> tf.Tensor:
    """Per-class scores [B, A, H, W, C] in [0, 1] (C = 1 when the model has no classes).

    obj_quality_cls = s(obj) * s(q)^P * s(cls); quality_cls = s(q)^P * s(cls);
    obj_cls = s(obj) * s(cls); without a quality branch every mode is s(obj) * s(cls).
    """
    if score_mode not in SCORE_MODES:
        raise ValueError(f"unknown score mode '{score_mode}' ({', '.join(SCORE_MODES)})")
    obj = tf.sigmoid(parts.obj)
    if parts.quality is None or score_mode == "obj_cls":
        base = obj
    else:
        q = tf.sigmoid(parts.quality)
        if float(quality_power) != 1.0:
            q = tf.pow(q, float(quality_power))
        base = q if score_mode == "quality_cls" else obj * q
    if parts.cls.shape[-1] == 0:
        return tf.expand_dims(base, -1)
    return tf.expand_dims(base, -1) * tf.sigmoid(parts.cls)


def decode_predictions(raw, anchors_eff, num_anchors: int, num_classes: int, has_quality: bool,
                       score_mode: str, quality_power: float = 1.0) -> tuple[tf.Tensor, tf.Tensor]:
    """raw [B, Hg, Wg, A*D] -> (boxes [B, N, 4] normalised cxcywh, scores [B, N, C'])
    with N = A*Hg*Wg in (anchor, row, column) order and C' = max(C, 1)."""
    parts = split_raw(tf.cast(raw, tf.float32), num_anchors, num_classes, has_quality)
    boxes = decode_boxes(parts.box, anchors_eff)
    scores = class_scores(parts, score_mode, quality_power)
    b = tf.shape(raw)[0]
    return tf.reshape(boxes, [b, -1, 4]), tf.reshape(scores, [b, -1, scores.shape[-1]])


def nms_detections(boxes, scores, conf_thresh: float, iou_thresh: float, max_detections: int,
                   pre_nms_topk: int = PRE_NMS_TOPK) -> tuple[tf.Tensor, tf.Tensor]:
    """Class-aware NMS + top-k.

    boxes [B, N, 4] normalised cxcywh; scores [B, N, C] ->
    (detections float32 [B, max_detections, 6], num_valid int32 [B]).

    Every (box, class) pair is a candidate. The best ``pre_nms_topk`` per image go through
    one greedy NMS in which each (image, class) group is shifted to its own region of the
    plane (x by class, y by image), so boxes of different classes or images never suppress
    each other. Candidates scoring below ``conf_thresh`` are dropped.
    """
    boxes = tf.cast(boxes, tf.float32)
    scores = tf.cast(scores, tf.float32)
    num_classes = scores.shape[-1]
    shape = tf.shape(scores)
    b, n = shape[0], shape[1]
    static_n = scores.shape[1]
    total = static_n * num_classes if static_n is not None else n * num_classes
    k_pre = min(pre_nms_topk, total) if isinstance(total, int) else tf.minimum(pre_nms_topk, total)

    xyxy = tf.clip_by_value(cxcywh_to_xyxy(boxes), 0.0, 1.0)  # [B, N, 4]
    flat_scores = tf.reshape(scores, [b, -1])  # [B, N*C], index = box * C + class
    top_scores, top_idx = tf.math.top_k(flat_scores, k=k_pre, sorted=True)  # [B, K]
    box_idx = top_idx // num_classes
    cls_idx = top_idx - box_idx * num_classes
    cand = tf.gather(xyxy, box_idx, batch_dims=1)  # [B, K, 4]

    kk = tf.shape(top_scores)[1]
    cls_f = tf.cast(cls_idx, tf.float32)
    img_f = tf.expand_dims(tf.cast(tf.range(b), tf.float32), -1) * tf.ones_like(cls_f)
    shift = tf.stack([cls_f * 2.0, img_f * 2.0, cls_f * 2.0, img_f * 2.0], axis=-1)
    # NonMaxSuppressionV4 boxes are (y1, x1, y2, x2); IoU is symmetric in x/y so order x/y swap is harmless.
    nms_boxes = tf.reshape(cand + shift, [-1, 4])
    nms_scores = tf.reshape(top_scores, [-1])
    total_cand = b * kk
    selected, num_selected = tf.raw_ops.NonMaxSuppressionV4(
        boxes=nms_boxes, scores=nms_scores, max_output_size=total_cand,
        iou_threshold=tf.constant(iou_thresh, tf.float32), score_threshold=tf.constant(float("-inf"), tf.float32),
        pad_to_max_output_size=True,
    )
    # keep mask over the B*K candidates; padding rows scatter into an extra dummy slot
    slot_valid = tf.range(tf.shape(selected)[0]) < num_selected
    target = tf.where(slot_valid, selected, total_cand)
    keep = tf.scatter_nd(tf.expand_dims(target, -1), tf.ones_like(target, tf.float32), [total_cand + 1])[:-1]
    keep = tf.reshape(keep, [b, kk]) > 0.5
    keep = tf.logical_and(keep, top_scores >= conf_thresh)

    masked = tf.where(keep, top_scores, tf.zeros_like(top_scores))
    k_out = min(max_detections, k_pre) if isinstance(k_pre, int) else tf.minimum(max_detections, k_pre)
    out_scores, order = tf.math.top_k(masked, k=k_out, sorted=True)  # [B, k_out]
    out_boxes = xyxy_to_cxcywh(tf.gather(cand, order, batch_dims=1))
    out_cls = tf.cast(tf.gather(cls_idx, order, batch_dims=1), tf.float32)
    valid = out_scores > 0.0
    det = tf.concat([tf.expand_dims(out_scores, -1), tf.expand_dims(out_cls, -1), out_boxes], axis=-1)
    det = tf.where(tf.expand_dims(valid, -1), det, tf.zeros_like(det))
    pad = max_detections - k_out
    det = tf.pad(det, [[0, 0], [0, pad], [0, 0]])
    det = tf.reshape(det, [b, max_detections, 6])
    num_valid = tf.reduce_sum(tf.cast(valid, tf.int32), axis=1)
    return det, num_valid


def postprocess(raw, anchors_eff, num_anchors: int, num_classes: int, has_quality: bool, score_mode: str,
                quality_power: float, conf_thresh: float, iou_thresh: float,
                max_detections: int) -> tuple[tf.Tensor, tf.Tensor]:
    """raw [B, Hg, Wg, A*D] -> (detections float32 [B, max_detections, 6], num_valid int32 [B]).

    anchors_eff: float32 [A, 2] effective anchors (anchors * wh_scale), normalised (w, h).
    Rows are (score, class_id, cx, cy, w, h), sorted by score, zero-padded.
    """
    boxes, scores = decode_predictions(raw, anchors_eff, num_anchors, num_classes, has_quality, score_mode,
                                       quality_power)
    return nms_detections(boxes, scores, conf_thresh, iou_thresh, max_detections)


def model_postprocess(model, raw, conf_thresh: float | None = None, iou_thresh: float | None = None,
                      max_detections: int | None = None):
    """postprocess() with the model's own anchors, head and config defaults."""
    cfg = model.config
    return postprocess(
        raw, model.effective_anchors(), model.num_anchors, model.num_classes, model.has_quality,
        score_mode_for(model), cfg.quality_power,
        cfg.conf_thresh if conf_thresh is None else conf_thresh,
        cfg.nms_iou if iou_thresh is None else iou_thresh,
        cfg.max_detections if max_detections is None else max_detections,
    )


class _PostprocessLayer(keras.layers.Layer):
    """raw -> detections [B, K, 6] using the wrapped detector's anchors/wh_scale."""

    def __init__(self, detector, conf_thresh, iou_thresh, max_detections, **kwargs):
        super().__init__(**kwargs)
        self.detector = detector
        self.conf_thresh, self.iou_thresh, self.max_detections = conf_thresh, iou_thresh, max_detections

    def call(self, raw):
        det, _ = model_postprocess(self.detector, raw, self.conf_thresh, self.iou_thresh, self.max_detections)
        return det


def predict_model(model, post: bool = True, conf_thresh: float | None = None, iou_thresh: float | None = None,
                  max_detections: int | None = None, batch_size: int | None = None) -> keras.Model:
    """Functional keras.Model for inference/export, sharing ``model``'s weights.

    images float32 [B, H, W, 3] (H, W = config.img_size) -> detections float32 [B, K, 6]
    (``post=True``) or the raw map [B, Hg, Wg, A*D] (``post=False``). ``batch_size`` fixes B
    (None = dynamic).
    """
    h, w = model.config.img_size
    images = keras.Input(shape=(h, w, 3), batch_size=batch_size, dtype=tf.float32, name="images")
    raw = model(images, training=False)
    if not post:
        return keras.Model(images, raw, name="utod_raw")
    det = _PostprocessLayer(model, conf_thresh, iou_thresh, max_detections, name="postprocess")(raw)
    return keras.Model(images, det, name="utod_detect")
