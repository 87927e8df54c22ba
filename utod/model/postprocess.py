"""Scores, decode, class-aware NMS and top-k: raw map -> fixed-size detections.

Everything here is plain TensorFlow that runs eagerly, inside ``tf.function`` with a fixed
input signature, and converts with tf2onnx (opset 17) and the TFLite converter using
builtin ops only. NMS is an exact greedy, class-aware, batched NMS written with dense ops
and one ``tf.while_loop`` (no NonMaxSuppression op: one call for the whole batch, no
per-image loop, identical in TF, ONNX Runtime and TFLite): ``nms="dense"``, what every
export uses. Where the graph only ever runs in TensorFlow (training validation, ``utod
eval`` / ``predict`` of a ``.keras``),
``nms="kernel"`` runs the same greedy NMS on the same candidates, in the same order, with
TensorFlow's C++ ``CombinedNonMaxSuppression`` (4-5x faster on a batch of 64: the dense
form spends most of its time on the [B, K, K] IoU matrix); a test checks both give the
same detections, ties included. The host decode of a file's raw outputs keeps the dense
form: quantised outputs put boxes on a grid where an IoU can equal the threshold exactly,
and there the file's own NMS, the C99 post-process and the dense form agree to the bit.

Detections are float32 [B, K, 6] rows ``(score, class_id, cx, cy, w, h)`` with boxes
normalised to the network input and clipped to [0, 1], sorted by score (descending),
zero-padded after ``num_valid`` int32 [B] rows.
"""

from __future__ import annotations

from typing import Any

from utod._keras import keras, tf
from utod.boxes import RawParts, cxcywh_to_xyxy, decode_boxes, split_raw, xyxy_to_cxcywh
from utod.sdk import boxes as box_ops

SCORE_MODES = ("obj_quality_cls", "quality_cls", "obj_cls")
CLASSLESS_SCORE_MODES = {"obj_quality_cls": "obj_quality", "quality_cls": "quality", "obj_cls": "obj"}
"""How a score mode folds for a class-less (``disable_cls``) model: the cls factor is dropped."""
PRE_NMS_TOPK = 300
"""Candidates (anchor x cell x class) kept per image before NMS (NMS memory is B x K x K)."""
NMS_IMPLEMENTATIONS = ("dense", "kernel")
"""``dense``: builtin ops only (exports); ``kernel``: TensorFlow's C++ NMS (TF runtime only)."""


def score_mode_for(cfg_or_model: Any) -> str:
    """The score mode of a model: ``score_mode`` when set, else (auto) the mode its head
    declares as ``default_score_mode`` (the head contract, ``utod.hookspecs.register_heads``).
    Accepts an UltraTinyOD, or a ModelConfig whose ``score_mode`` is set."""
    cfg = getattr(cfg_or_model, "config", cfg_or_model)
    if cfg.score_mode is not None:
        mode = cfg.score_mode
    else:
        head = getattr(cfg_or_model, "head", None) if cfg is not cfg_or_model else None
        if head is None:
            raise ValueError("score_mode is auto: the head declares its default, so pass the built model")
        mode = str(head.default_score_mode)
        if mode not in SCORE_MODES:
            raise ValueError(f"head '{cfg.head}' declares default_score_mode '{mode}'; expected one of "
                             f"{', '.join(SCORE_MODES)}")
    if getattr(cfg, "disable_cls", False):  # class-less: obj_quality | quality | obj
        mode = CLASSLESS_SCORE_MODES.get(mode, mode)
    return mode


def class_scores(parts: RawParts, score_mode: str, quality_power: float = 1.0) -> tf.Tensor:
    """Per-class scores [B, A, H, W, C] in [0, 1] (C = 1 when the model has no classes).

    obj_quality_cls = s(obj) * s(q)^P * s(cls); quality_cls = s(q)^P * s(cls);
    obj_cls = s(obj) * s(cls); without a quality branch every mode is s(obj) * s(cls). The
    class-less modes obj_quality, quality and obj (``disable_cls``) are the same without s(cls).
    """
    known = (*SCORE_MODES, *CLASSLESS_SCORE_MODES.values())
    if score_mode not in known:
        raise ValueError(f"unknown score mode '{score_mode}' ({', '.join(known)})")
    base_mode = score_mode.removesuffix("_cls")  # the class-less modes are the same without s(cls)
    obj = tf.sigmoid(parts.obj)
    if parts.quality is None or base_mode == "obj":
        base = obj
    else:
        q = tf.sigmoid(parts.quality)
        if float(quality_power) != 1.0:
            q = tf.pow(q, float(quality_power))
        base = q if base_mode == "quality" else obj * q
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


NMS_IOU_EPS = 1e-12
"""Keeps NMS's IoU finite for two zero-size boxes; negligible otherwise."""


def pairwise_iou(a, b) -> tf.Tensor:
    """IoU of xyxy boxes a [B, K, 4] and b [B, M, 4] -> [B, K, M] (``utod.sdk.boxes``)."""
    return box_ops.pairwise_iou(a, b, eps=NMS_IOU_EPS, fmt="xyxy")


def greedy_nms_mask(boxes_xyxy, scores, classes, valid, iou_thresh: float) -> tf.Tensor:
    """Exact greedy class-aware NMS on score-sorted candidates, batched and dense.

    boxes_xyxy [B, K, 4], scores [B, K] sorted descending, classes int32 [B, K], valid bool
    [B, K] -> keep bool [B, K]. Candidate i is kept iff it is valid and no kept candidate
    j < i of the same class has IoU(i, j) > iou_thresh. The fixed point of
    ``keep <- valid & ~any_j(keep_j & suppresses_ji)`` is that greedy result; it is reached
    after at most K rounds (usually a handful), so it runs as a tf.while_loop of dense ops
    (converts to ONNX Loop / TFLite WHILE).
    """
    k = tf.shape(scores)[1]
    order = tf.range(k)
    earlier = tf.expand_dims(order, 1) < tf.expand_dims(order, 0)  # [K, K]: row j before column i
    same_class = tf.equal(tf.expand_dims(classes, 2), tf.expand_dims(classes, 1))  # [B, K, K]
    overlaps = pairwise_iou(boxes_xyxy, boxes_xyxy) > iou_thresh
    suppresses = tf.logical_and(tf.logical_and(overlaps, same_class), tf.expand_dims(earlier, 0))
    suppresses = tf.cast(suppresses, tf.float32)  # [B, K(j), K(i)]
    valid_f = tf.cast(valid, tf.float32)

    def step(keep_f):
        hits = tf.matmul(tf.expand_dims(keep_f, 1), suppresses)  # [B, 1, K]
        return valid_f * tf.cast(tf.reshape(hits, tf.shape(keep_f)) < 0.5, tf.float32)

    def cond(i, keep_f, changed):
        return tf.logical_and(changed, i < k)

    def body(i, keep_f, changed):
        new = step(keep_f)
        return i + 1, new, tf.reduce_any(tf.not_equal(new, keep_f))

    _, keep_f, _ = tf.while_loop(cond, body, (tf.constant(0), valid_f, tf.constant(True)))
    return keep_f > 0.5


def nms_detections(boxes, scores, conf_thresh: float, iou_thresh: float, max_detections: int,
                   pre_nms_topk: int = PRE_NMS_TOPK, nms: str = "dense") -> tuple[tf.Tensor, tf.Tensor]:
    """Class-aware NMS + top-k.

    boxes [B, N, 4] normalised cxcywh; scores [B, N, C] ->
    (detections float32 [B, max_detections, 6], num_valid int32 [B]).

    Every (box, class) pair is a candidate; the best ``pre_nms_topk`` per image scoring at
    least ``conf_thresh`` go through exact greedy NMS (:func:`greedy_nms_mask`; IoU of the
    boxes clipped to [0, 1]), and the best ``max_detections`` survivors are returned.
    ``nms``: ``"dense"`` (builtin ops, exportable) or ``"kernel"`` (:func:`_kernel_nms`).
    """
    if nms not in NMS_IMPLEMENTATIONS:
        raise ValueError(f"unknown NMS implementation '{nms}' ({', '.join(NMS_IMPLEMENTATIONS)})")
    boxes = tf.cast(boxes, tf.float32)
    scores = tf.cast(scores, tf.float32)
    num_classes = scores.shape[-1]
    b = tf.shape(scores)[0]
    static_n = scores.shape[1]
    if static_n is not None:
        k_pre = min(pre_nms_topk, static_n * num_classes)
    else:
        k_pre = tf.minimum(pre_nms_topk, tf.shape(scores)[1] * num_classes)

    xyxy = tf.clip_by_value(cxcywh_to_xyxy(boxes), 0.0, 1.0)  # [B, N, 4]
    flat_scores = tf.reshape(scores, [b, -1])  # [B, N*C], index = box * C + class
    top_scores, top_idx = tf.math.top_k(flat_scores, k=k_pre, sorted=True)  # [B, K]
    box_idx = top_idx // num_classes
    cls_idx = top_idx - box_idx * num_classes
    cand = tf.gather(xyxy, box_idx, batch_dims=1)  # [B, K, 4]
    if nms == "kernel":
        return _kernel_nms(cand, top_scores, cls_idx, num_classes, conf_thresh, iou_thresh, max_detections)
    keep = greedy_nms_mask(cand, top_scores, cls_idx, top_scores >= conf_thresh, iou_thresh)

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


def _kernel_nms(cand, top_scores, cls_idx, num_classes: int, conf_thresh, iou_thresh,
                max_detections: int) -> tuple[tf.Tensor, tf.Tensor]:
    """The candidates of :func:`nms_detections` (xyxy [B, K, 4] clipped, scores [B, K]
    sorted, classes int32 [B, K]) through ``tf.image.combined_non_max_suppression``: per class
    the same greedy NMS (a box is suppressed by a kept one of its class with IoU >
    ``iou_thresh``), the first ``max_detections`` kept over all classes.

    Equal scores are common (saturated sigmoids, quantised outputs), and the kernel orders
    ties its own way. So it is given each candidate's rank instead of its score: ``K - r``
    for candidate ``r`` (0 = best), only for the candidate's own class, -1 for other classes
    and for candidates below ``conf_thresh``. The kernel therefore visits candidates in the
    dense form's order, and its output ranks pick the same rows: scores, classes and the
    candidate boxes themselves."""
    k = tf.shape(top_scores)[1]
    rank_score = tf.where(top_scores >= conf_thresh, tf.cast(k - tf.range(k), tf.float32), -1.0)  # [B, K]: K..1
    on_class = tf.one_hot(cls_idx, num_classes, on_value=True, off_value=False)  # [B, K, C]
    per_class = tf.where(on_class, tf.expand_dims(rank_score, -1), -tf.ones_like(on_class, tf.float32))
    yxyx = tf.stack([cand[..., 1], cand[..., 0], cand[..., 3], cand[..., 2]], axis=-1)
    out = tf.image.combined_non_max_suppression(
        tf.expand_dims(yxyx, 2), per_class, max_output_size_per_class=max_detections,
        max_total_size=max_detections, iou_threshold=iou_thresh, score_threshold=0.5,
        pad_per_class=False, clip_boxes=False)
    kept = out.nmsed_scores > 0.5  # [B, max_detections]: a real row (padding scores 0)
    rank = tf.where(kept, k - tf.cast(tf.round(out.nmsed_scores), tf.int32), tf.zeros_like(kept, tf.int32))
    scores = tf.where(kept, tf.gather(top_scores, rank, batch_dims=1), tf.zeros_like(out.nmsed_scores))
    classes = tf.cast(tf.gather(cls_idx, rank, batch_dims=1), tf.float32)
    boxes = xyxy_to_cxcywh(tf.gather(cand, rank, batch_dims=1))
    valid = tf.logical_and(kept, scores > 0.0)  # as the dense form: a kept score of exactly 0 is no detection
    det = tf.concat([tf.expand_dims(scores, -1), tf.expand_dims(classes, -1), boxes], axis=-1)
    det = tf.where(tf.expand_dims(valid, -1), det, tf.zeros_like(det))
    return det, tf.reduce_sum(tf.cast(valid, tf.int32), axis=1)


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


def decode_and_nms(raw, anchors_eff, settings, nms: str = "dense") -> tuple[tf.Tensor, tf.Tensor]:
    """raw [B, Hg, Wg, A*D] -> (detections float32 [B, K, 6], num_valid int32 [B]) with a
    :class:`utod.evaluation.DecodeSettings` (layout, score mode, thresholds, K = its
    ``max_detections``). anchors_eff: float32 [A, 2] effective anchors. ``nms``: see
    :data:`NMS_IMPLEMENTATIONS` (``"kernel"`` only where the graph is never exported)."""
    s = settings
    boxes, scores = decode_predictions(raw, anchors_eff, s.num_anchors, s.num_classes, s.has_quality,
                                       s.score_mode, s.quality_power)
    return nms_detections(boxes, scores, s.conf_thresh, s.iou_thresh, s.max_detections, nms=nms)


def model_postprocess(model, raw, conf_thresh: float | None = None, iou_thresh: float | None = None,
                      max_detections: int | None = None, nms: str = "dense"):
    """postprocess() with the model's own anchors, head and config defaults."""
    from utod.evaluation import DecodeSettings

    settings = DecodeSettings.of_model(model).with_thresholds(conf_thresh, iou_thresh, max_detections)
    return decode_and_nms(raw, model.effective_anchors(), settings, nms=nms)


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
    images = keras.Input(shape=(h, w, model.config.in_channels), batch_size=batch_size, dtype=tf.float32,
                         name="images")
    raw = model(images, training=False)
    if not post:
        return keras.Model(images, raw, name="utod_raw")
    det = _PostprocessLayer(model, conf_thresh, iou_thresh, max_detections, name="postprocess")(raw)
    return keras.Model(images, det, name="utod_detect")
