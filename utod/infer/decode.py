"""Model outputs -> detections: decoding a raw map with the model's own post-processing,
and splitting padded ``[B, K, 6]`` detections into per-image tuples."""

from __future__ import annotations

import numpy as np

from utod.infer.modelinfo import ModelInfo

ImageDetections = tuple[np.ndarray, np.ndarray, np.ndarray]
"""boxes float32 [K, 4] normalised cxcywh, scores float32 [K], labels int64 [K] (contiguous)."""


def decode_raw(raw: np.ndarray, info: ModelInfo, conf_thresh: float, iou_thresh: float,
               max_detections: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Raw NHWC map [B, Hg, Wg, A*D] -> (detections [B, K, 6], num_valid [B]) via the model's
    own post-processing (class-aware NMS)."""
    from utod._keras import tf
    from utod.model.postprocess import postprocess

    dets, num = postprocess(
        tf.constant(raw, tf.float32), tf.constant(info.effective_anchors()), info.num_anchors, info.num_classes,
        info.has_quality, info.score_mode, info.quality_power, float(conf_thresh), float(iou_thresh),
        int(max_detections or info.max_detections),
    )
    return np.asarray(dets), np.asarray(num)


def split_detections(dets: np.ndarray, num_valid: np.ndarray | None, conf_thresh: float = 0.0) -> list[ImageDetections]:
    """[B, K, 6] rows (score, class, cx, cy, w, h) + num_valid [B] -> per-image tuples with
    score >= ``conf_thresh``, sorted by descending score."""
    out = []
    dets = np.asarray(dets, np.float32)
    for i in range(dets.shape[0]):
        n = int(num_valid[i]) if num_valid is not None else dets.shape[1]
        rows = dets[i, :n]
        rows = rows[rows[:, 0] >= conf_thresh]
        rows = rows[np.argsort(-rows[:, 0], kind="stable")]
        out.append((rows[:, 2:6].copy(), rows[:, 0].copy(), np.rint(rows[:, 1]).astype(np.int64)))
    return out
