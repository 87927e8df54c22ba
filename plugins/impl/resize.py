"""Resize backends: ``resize(image uint8 [h, w, 3], (H, W)) -> uint8 [H, W, 3]``.

Images are stretched to ``(H, W)`` (no letterbox), so normalised boxes do not change.
"""

from __future__ import annotations

import cv2
import numpy as np


class _OpenCVResize:
    interpolation: int = cv2.INTER_NEAREST

    def __call__(self, image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        h, w = int(size[0]), int(size[1])
        if image.shape[0] == h and image.shape[1] == w:
            return np.ascontiguousarray(image)
        return cv2.resize(image, (w, h), interpolation=self.interpolation)  # cv2 dsize is (W, H)


class OpenCVNearest(_OpenCVResize):
    """cv2.resize INTER_NEAREST: samples source pixel floor(dst * scale)."""

    interpolation = cv2.INTER_NEAREST


class OpenCVLinear(_OpenCVResize):
    """cv2.resize INTER_LINEAR (half-pixel centres, no antialias)."""

    interpolation = cv2.INTER_LINEAR


class OpenCVArea(_OpenCVResize):
    """cv2.resize INTER_AREA (area averaging when shrinking)."""

    interpolation = cv2.INTER_AREA


class TFBilinear:
    """tf.image.resize(method="bilinear", antialias=False) on float32, rounded back to uint8."""

    def __init__(self) -> None:
        from utod._keras import tf

        self._tf = tf

    def __call__(self, image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        tf = self._tf
        out = tf.image.resize(tf.convert_to_tensor(image, tf.float32), (int(size[0]), int(size[1])),
                              method="bilinear", antialias=False)
        return np.clip(np.rint(out.numpy()), 0, 255).astype(np.uint8)
