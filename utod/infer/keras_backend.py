"""The Keras backend: a ``UltraTinyOD`` from a ``.keras`` checkpoint or in memory."""

from __future__ import annotations

from typing import Any

import numpy as np

from utod.infer.detector import Detector
from utod.infer.modelinfo import info_from_model


class KerasDetector(Detector):
    """A Keras ``UltraTinyOD`` (from a ``.keras`` checkpoint or in memory)."""

    kind = "keras"

    def __init__(self, model: Any, path: str = "<model>", meta: dict[str, Any] | None = None) -> None:
        super().__init__(path, info_from_model(model))
        self.model = model
        self.meta = meta or {}
        from utod._keras import tf

        self._fn = tf.function(lambda x: model(x, training=False), reduce_retracing=True)

    def forward(self, images: np.ndarray) -> dict[str, np.ndarray]:
        return {"raw": np.asarray(self._fn(np.asarray(images, np.float32)))}
