"""Resize backends: ``resize(image uint8 [h, w, 3], (H, W)) -> uint8 [H, W, 3]``.

Images are stretched to ``(H, W)`` (no letterbox), so normalised boxes do not change.

Camera-native input modes (UHD's ``opencv_inter_nearest_y`` etc.) resize like
``opencv_inter_nearest`` and declare a conversion applied after augmentation
(``channels``, ``input_mode``, ``to_input``; see utod.data.model_input). Each conversion
first turns the float RGB into uint8 by ``clip(x * 255, 0, 255)`` and truncation (UHD's
rule), then:

* ``y``: OpenCV RGB->YUV channel 0 (BT.601 full-range luma, 0.299R + 0.587G + 0.114B) / 255;
  1 channel;
* ``y_bin``: 1.0 where that luma >= 0.5, else 0.0; 1 channel;
* ``y_tri``: 0.0 below 1/3, 0.5 below 2/3, else 1.0; 1 channel;
* ``yuv422``: OpenCV RGB->YUYV (BT.601 limited range; channel 0 = Y of every pixel, channel 1 =
  U at even x and V at odd x) / 255; 2 channels; the input width must be even.
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


def _to_uint8(image: np.ndarray) -> np.ndarray:
    """float RGB in [0, 1] -> uint8 by clip(x * 255) and truncation (not rounding)."""
    return np.clip(np.asarray(image, np.float32) * 255.0, 0.0, 255.0).astype(np.uint8)


def luma(image: np.ndarray) -> np.ndarray:
    """float32 RGB [H, W, 3] in [0, 1] -> BT.601 full-range luma float32 [H, W, 1] in [0, 1]."""
    y = cv2.cvtColor(_to_uint8(image), cv2.COLOR_RGB2YUV)[..., 0]
    return (y.astype(np.float32) / 255.0)[..., None]


class NearestY(OpenCVNearest):
    """INTER_NEAREST resize; model input = luma Y (1 channel)."""

    channels = 1
    input_mode = "y"

    def to_input(self, image: np.ndarray) -> np.ndarray:
        return luma(image)


class NearestYBinary(OpenCVNearest):
    """INTER_NEAREST resize; model input = luma thresholded at 0.5 (values 0 or 1)."""

    channels = 1
    input_mode = "y_bin"

    def to_input(self, image: np.ndarray) -> np.ndarray:
        return (luma(image) >= 0.5).astype(np.float32)


class NearestYTernary(OpenCVNearest):
    """INTER_NEAREST resize; model input = luma in three levels 0, 0.5, 1 (cuts at 1/3, 2/3)."""

    channels = 1
    input_mode = "y_tri"

    def to_input(self, image: np.ndarray) -> np.ndarray:
        y = luma(image)
        return np.where(y < 1.0 / 3.0, 0.0, np.where(y < 2.0 / 3.0, 0.5, 1.0)).astype(np.float32)


class NearestYUV422(OpenCVNearest):
    """INTER_NEAREST resize; model input = YUYV 4:2:2 (2 channels: Y, then U/V alternating by column)."""

    channels = 2
    input_mode = "yuv422"

    def to_input(self, image: np.ndarray) -> np.ndarray:
        if image.shape[1] % 2:
            raise ValueError(f"YUV422 needs an even input width, got {image.shape[1]}")
        return cv2.cvtColor(_to_uint8(image), cv2.COLOR_RGB2YUV_YUYV).astype(np.float32) / 255.0
