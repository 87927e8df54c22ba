"""The Keras backend: a ``UltraTinyOD`` from a ``.keras`` checkpoint or in memory.

``detect`` runs one compiled function per batch shape — forward pass, decode, scores and
batched class-aware NMS in one graph — on batches padded to :attr:`Detector.batch_size`
(1 for single frames), the thresholds passed as tensors: no retracing across calls.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from utod.graph import GraphFunction
from utod.infer.decode import pad_batch
from utod.infer.detector import Detector
from utod.infer.modelinfo import info_from_model


def compiled_detect(model: Any, max_detections: int | None = None) -> Any:
    """Compiled ``(images [B,H,W,3], conf [], iou []) -> (detections [B,K,6], num_valid [B])``
    for a Keras ``UltraTinyOD``: forward (inference mode) + the model's post-processing
    (a :class:`~utod.graph.GraphFunction`: traced without AutoGraph when it can be)."""
    from utod.model.postprocess import model_postprocess

    def detect(images: Any, conf: Any, iou: Any) -> Any:
        raw = model(images, training=False)
        return model_postprocess(model, raw, conf, iou, max_detections, nms="kernel")  # TF only: never exported

    return GraphFunction(detect)


class KerasDetector(Detector):
    """A Keras ``UltraTinyOD`` (from a ``.keras`` checkpoint or in memory)."""

    kind = "keras"

    def __init__(self, model: Any, path: str = "<model>", meta: dict[str, Any] | None = None) -> None:
        super().__init__(path, info_from_model(model))
        self.model = model
        self.meta = meta or {}
        from utod._keras import tf

        self._tf = tf
        self._fn = GraphFunction(lambda x: model(x, training=False), reduce_retracing=True)
        self._detect_fn = compiled_detect(model)

    def forward(self, images: np.ndarray) -> dict[str, np.ndarray]:
        return {"raw": np.asarray(self._fn(np.asarray(images, np.float32)))}

    @property
    def traces(self) -> int:
        """How many times the compiled detect function has been traced (one per batch shape)."""
        return self._detect_fn.traces

    def batching(self) -> str:
        return f"batch {self.batch_size}, compiled forward + NMS"

    def detect_batch(self, images: np.ndarray, conf: float, iou: float) -> tuple[np.ndarray, np.ndarray]:
        tf = self._tf
        k = images.shape[0]
        x = pad_batch(np.asarray(images, np.float32), self.padded_size(k))
        dets, num = self._detect_fn(tf.constant(x), tf.constant(conf, tf.float32), tf.constant(iou, tf.float32))
        return dets.numpy()[:k], num.numpy()[:k]
