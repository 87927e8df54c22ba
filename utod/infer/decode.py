"""Model outputs -> detections: decoding a raw map with the model's own post-processing
(compiled once per batch shape), and splitting padded ``[B, K, 6]`` detections into
per-image tuples."""

from __future__ import annotations

from typing import Any

import numpy as np

from utod.infer.modelinfo import ModelInfo

ImageDetections = tuple[np.ndarray, np.ndarray, np.ndarray]
"""boxes float32 [K, 4] normalised cxcywh, scores float32 [K], labels int64 [K] (contiguous)."""


class RawDecoder:
    """Raw NHWC map -> detections with the model's own post-processing
    (:func:`utod.model.postprocess.decode_and_nms` with the file's
    :class:`utod.evaluation.DecodeSettings`: scores, decode, class-aware NMS, top-K),
    compiled: one ``tf.function`` trace per raw-map shape (callers pad batches to a fixed
    size), the thresholds passed as tensors so changing them never retraces."""

    def __init__(self, info: ModelInfo, max_detections: int | None = None) -> None:
        from utod._keras import tf
        from utod.evaluation import DecodeSettings
        from utod.model.postprocess import decode_and_nms

        self.info = info
        anchors = tf.constant(info.effective_anchors())
        settings = DecodeSettings.of_info(info).with_thresholds(max_detections=max_detections or None)

        def decode(raw: Any, conf: Any, iou: Any) -> Any:
            # dense, as the file's own NMS and the C99 post-process (utod.model.postprocess)
            return decode_and_nms(raw, anchors, settings.with_thresholds(conf, iou))

        self._fn = tf.function(decode, autograph=False)  # no Python control flow: no AutoGraph needed
        self._tf = tf

    @property
    def traces(self) -> int:
        """How many times the decoder has been traced (one per distinct batch shape)."""
        return int(self._fn.experimental_get_tracing_count())

    def __call__(self, raw: np.ndarray, conf_thresh: float, iou_thresh: float) -> tuple[np.ndarray, np.ndarray]:
        """raw float32 [B, Hg, Wg, A*D] NHWC -> (detections [B, K, 6], num_valid [B])."""
        tf = self._tf
        dets, num = self._fn(tf.constant(raw, tf.float32), tf.constant(conf_thresh, tf.float32),
                             tf.constant(iou_thresh, tf.float32))
        return dets.numpy(), num.numpy()


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


def pad_batch(x: np.ndarray, size: int) -> np.ndarray:
    """[k, ...] -> [size, ...] with zero rows appended (``k <= size``); fixed shapes for
    compiled functions."""
    k = x.shape[0]
    if k == size:
        return x
    return np.concatenate([x, np.zeros((size - k, *x.shape[1:]), x.dtype)])
