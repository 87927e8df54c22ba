"""Images in, model input out — the same preprocessing as training, for every backend:
decode with OpenCV -> uint8 RGB -> the model's resize backend plugin to (H, W) (stretch, no
letterbox) -> float32 / 255, NHWC."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from utod.data.boxes_np import to_float
from utod.errors import DataError


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Decode an image file to uint8 RGB [h, w, 3]; ``DataError`` naming the file if it fails."""
    from utod.data.images import read_image_rgb

    path = str(path)
    if not os.path.isfile(path):
        raise DataError(f"{path}: image file not found")
    img = read_image_rgb(path)
    if img is None:
        raise DataError(f"{path}: OpenCV cannot decode this image")
    return img


class Preprocessor:
    """uint8 RGB [h, w, 3] -> float32 [H, W, 3] in [0, 1] with the model's resize backend."""

    def __init__(self, img_size: tuple[int, int], resize_mode: str, registry: Any = None) -> None:
        if registry is None:
            from utod.registry import get_registry

            registry = get_registry()
        self.img_size = (int(img_size[0]), int(img_size[1]))
        self.resize_mode = resize_mode
        self._resize: Callable[[np.ndarray, tuple[int, int]], np.ndarray] = registry.create("resize", resize_mode)

    def __call__(self, image_rgb: np.ndarray) -> np.ndarray:
        img = np.asarray(image_rgb)
        if img.dtype != np.uint8:
            raise ValueError(f"expected a uint8 RGB image, got {img.dtype}")
        if img.shape[:2] != self.img_size:
            img = self._resize(img, self.img_size)
        return to_float(img)  # the same conversion as training, bit for bit

    def batch(self, images: Iterable[np.ndarray]) -> np.ndarray:
        """List of uint8 RGB images -> float32 [B, H, W, 3]."""
        arrs = [self(im) for im in images]
        h, w = self.img_size
        return np.stack(arrs) if arrs else np.zeros((0, h, w, 3), np.float32)

    def load(self, paths: Sequence[str | os.PathLike]) -> np.ndarray:
        return self.batch(read_image(p) for p in paths)
