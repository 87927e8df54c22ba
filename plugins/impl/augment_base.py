"""Shared base and helpers of the built-in augmentations (numpy/OpenCV, no TensorFlow).

Every transform is called as ``transform(sample, rng, pool) -> Sample`` on float32 images
``[H, W, 3]`` in [0, 1] at the training size, with normalised cxcywh boxes; the pipeline
decides whether it runs (``prob``). Colour ops that go through OpenCV convert to uint8 by
truncation (``(img*255).astype(uint8)``), as the seed does.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from utod.sdk import Sample

FILL_GRAY = 114.0 / 255.0
"""Canvas colour of Mosaic / RandomScale (the seed's 114 gray)."""


class Transform:
    """Base: stores ``prob``; subclasses implement ``__call__(sample, rng, pool)``."""

    samples_needed: int = 1
    scalar_params: tuple[str, ...] = ("prob",)
    always_apply: bool = False

    def __init__(self, prob: float = 0.0) -> None:
        self.prob = float(prob)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(prob={self.prob})"


def value_range(value: float | Sequence[float], name: str) -> tuple[float, float]:
    """``[lo, hi]`` or a scalar (a fixed value) -> ``(lo, hi)`` floats."""
    if isinstance(value, (int, float)):
        return float(value), float(value)
    vals = [float(v) for v in value]
    if len(vals) != 2:
        raise ValueError(f"{name} expects [min, max], got {value!r}")
    return min(vals), max(vals)


def randint(rng: np.random.Generator, lo: int, hi: int) -> int:
    """Uniform integer in ``[lo, hi]`` (both ends included, like Python's random.randint)."""
    lo, hi = int(lo), int(hi)
    if hi < lo:
        lo, hi = hi, lo
    return int(rng.integers(lo, hi + 1))


def odd_kernel(rng: np.random.Generator, limit: float | Sequence[float], minimum: int) -> int:
    """Kernel size ``randrange(k1, k2+1)`` forced odd by ``| 1``, at least ``minimum``."""
    k1, k2 = value_range(limit, "blur_limit")
    k = randint(rng, int(k1), int(k2))
    return max(minimum, k | 1)


def resize_linear(image: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    """cv2 INTER_LINEAR resize of a float32 image to ``(H, W)`` (the seed's internal resize)."""
    h, w = size_hw
    if image.shape[0] == h and image.shape[1] == w:
        return image
    return cv2.resize(image, (int(w), int(h)), interpolation=cv2.INTER_LINEAR)


def fit_partner(partner: Sample, shape_hw: tuple[int, int]) -> Sample:
    """Partner sample resized to ``shape_hw`` when needed (normalised boxes unchanged)."""
    return Sample(resize_linear(partner.image, shape_hw), partner.boxes, partner.labels)
