"""Geometric augmentations: they move pixels and boxes together (docs/pipeline.md §3.4 items 1-6, 10).

Fixed on purpose relative to the seed (docs/seed-bugs.md items 10-12):

* RandomScale with ``s > 1`` crops the **centre** of the zoomed image (the seed copied the
  top-left corner while moving the boxes as if centred); boxes use the actual integer
  scaled size, so pixels and boxes agree exactly.
* Translation moves the boxes by the same **integer** pixel shift as the image (the seed
  moved boxes by the float shift).
* All clipping happens in xyxy (corners cut at the border) and boxes left with area below
  1e-6 are dropped.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from utod_plugins.impl.augment_base import FILL_GRAY, Transform, randint, resize_linear, value_range

from utod.sdk import Sample
from utod.sdk.boxes_np import clip_and_filter, cxcywh_to_xyxy, filter_min_area, xyxy_to_cxcywh

MIN_BOX_AREA = 1e-6


class HorizontalFlip(Transform):
    """Mirror left-right: ``cx <- 1 - cx``; labels remapped by ``class_swap_map`` (raw ids,
    one direction per entry: list both ``9: 15`` and ``15: 9`` to swap)."""

    def __init__(self, prob: float = 0.0, class_swap_map: dict | None = None) -> None:
        super().__init__(prob)
        try:
            self.swap = {int(k): int(v) for k, v in (class_swap_map or {}).items()}
        except (TypeError, ValueError):
            raise ValueError(f"class_swap_map must map class ids to class ids, got {class_swap_map!r}") from None

    def __call__(self, sample: Sample, rng: np.random.Generator, pool=None) -> Sample:
        boxes = sample.boxes.copy()
        boxes[:, 0] = 1.0 - boxes[:, 0]
        labels = sample.labels
        if self.swap and len(labels):
            labels = np.array([self.swap.get(int(c), int(c)) for c in labels], np.int32)
        return Sample(np.ascontiguousarray(sample.image[:, ::-1]), boxes, labels)


class VerticalFlip(Transform):
    """Mirror top-bottom: ``cy <- 1 - cy``."""

    def __call__(self, sample: Sample, rng: np.random.Generator, pool=None) -> Sample:
        boxes = sample.boxes.copy()
        boxes[:, 1] = 1.0 - boxes[:, 1]
        return Sample(np.ascontiguousarray(sample.image[::-1]), boxes, sample.labels)


def _place(image: np.ndarray, out_hw: tuple[int, int], ox: int, oy: int, fill) -> np.ndarray:
    """Canvas ``out_hw`` filled with ``fill`` holding ``image`` with its top-left pixel at
    ``(ox, oy)`` (may be negative: the image is cut)."""
    H, W = out_hw
    canvas = np.empty((H, W, 3), np.float32)
    canvas[:] = fill
    h, w = image.shape[:2]
    x0, y0 = max(ox, 0), max(oy, 0)
    x1, y1 = min(ox + w, W), min(oy + h, H)
    if x1 > x0 and y1 > y0:
        canvas[y0:y1, x0:x1] = image[y0 - oy:y1 - oy, x0 - ox:x1 - ox]
    return canvas


def _affine_boxes(boxes: np.ndarray, sx: float, sy: float, tx: float, ty: float) -> np.ndarray:
    """cxcywh boxes under ``x' = x*sx + tx``, ``y' = y*sy + ty`` (normalised units)."""
    out = boxes.astype(np.float32).copy()
    out[:, 0] = boxes[:, 0] * sx + tx
    out[:, 1] = boxes[:, 1] * sy + ty
    out[:, 2] = boxes[:, 2] * sx
    out[:, 3] = boxes[:, 3] * sy
    return out


class RandomScale(Transform):
    """Zoom about the image centre by ``s ~ U(scale_range)``: ``s < 1`` shrinks onto a gray
    canvas, ``s > 1`` keeps the centre crop (fixed seed bug). ``keep_aspect_ratio: false``
    draws independent x and y scales (it had no effect in the seed)."""

    def __init__(self, prob: float = 0.0, scale_range: Sequence[float] = (1.0, 1.0),
                 keep_aspect_ratio: bool = True) -> None:
        super().__init__(prob)
        self.lo, self.hi = value_range(scale_range, "scale_range")
        self.keep_aspect_ratio = bool(keep_aspect_ratio)

    def __call__(self, sample: Sample, rng: np.random.Generator, pool=None) -> Sample:
        H, W = sample.image.shape[:2]
        s_x = float(rng.uniform(self.lo, self.hi))
        s_y = s_x if self.keep_aspect_ratio else float(rng.uniform(self.lo, self.hi))
        w2, h2 = max(1, int(W * s_x)), max(1, int(H * s_y))
        scaled = resize_linear(sample.image, (h2, w2))
        ox, oy = (W - w2) // 2, (H - h2) // 2  # negative when zooming in: centre crop
        image = _place(scaled, (H, W), ox, oy, FILL_GRAY)
        boxes = _affine_boxes(sample.boxes, w2 / W, h2 / H, ox / W, oy / H)
        boxes, labels = clip_and_filter(boxes, sample.labels, MIN_BOX_AREA)
        return Sample(image, boxes, labels)


class Translation(Transform):
    """Shift by ``dx, dy ~ U(-translate, translate)`` of the image size, truncated to whole
    pixels; boxes move by the same pixel shift (fixed seed bug), uncovered area = ``fill``
    (0..255 per channel)."""

    def __init__(self, prob: float = 0.0, translate: float = 0.0, fill: Sequence[float] = (114, 114, 114)) -> None:
        super().__init__(prob)
        self.translate = float(translate)
        f = [float(fill)] * 3 if isinstance(fill, (int, float)) else [float(v) for v in fill]
        if len(f) != 3:
            raise ValueError(f"fill expects 3 values (R, G, B in 0..255), got {fill!r}")
        self.fill = np.asarray(f, np.float32) / 255.0

    def __call__(self, sample: Sample, rng: np.random.Generator, pool=None) -> Sample:
        H, W = sample.image.shape[:2]
        t = self.translate
        dx, dy = rng.uniform(-t, t), rng.uniform(-t, t)
        sx, sy = int(dx * W), int(dy * H)
        image = _place(sample.image, (H, W), sx, sy, self.fill)
        boxes = _affine_boxes(sample.boxes, 1.0, 1.0, sx / W, sy / H)
        boxes, labels = clip_and_filter(boxes, sample.labels, MIN_BOX_AREA)
        return Sample(image, boxes, labels)


def _crop_boxes(boxes: np.ndarray, labels: np.ndarray, hw: tuple[int, int], x0: int, y0: int,
                cw: int, ch: int) -> tuple[np.ndarray, np.ndarray]:
    """Boxes of an image ``hw`` seen through the pixel crop ``(x0, y0, cw, ch)``, clipped."""
    H, W = hw
    moved = _affine_boxes(boxes, W / cw, H / ch, -x0 / cw, -y0 / ch)
    return clip_and_filter(moved, labels, MIN_BOX_AREA)


class RandomCrop(Transform):
    """The seed's crop: side fraction ``ratio`` (``int(H*r) x int(W*r)``) at a random position,
    resized back with INTER_LINEAR. A bare number in the YAML is both ``prob`` and ``ratio``."""

    scalar_params = ("prob", "ratio")

    def __init__(self, prob: float = 0.0, ratio: float = 0.9) -> None:
        super().__init__(prob)
        self.ratio = float(ratio)

    def __call__(self, sample: Sample, rng: np.random.Generator, pool=None) -> Sample:
        H, W = sample.image.shape[:2]
        ch, cw = int(H * self.ratio), int(W * self.ratio)
        if ch < 1 or cw < 1 or ch > H or cw > W:
            return sample
        y0, x0 = randint(rng, 0, H - ch), randint(rng, 0, W - cw)
        image = resize_linear(sample.image[y0:y0 + ch, x0:x0 + cw], (H, W))
        boxes, labels = _crop_boxes(sample.boxes, sample.labels, (H, W), x0, y0, cw, ch)
        return Sample(np.ascontiguousarray(image), boxes, labels)


class RandomResizedCrop(Transform):
    """Crop of area fraction ``U(scale)`` and aspect ``U(ratio)`` (up to 10 tries), resized back.
    Boxes keep if at least ``min_visibility`` of their area is inside, and are cut to the
    crop; a try that would lose every box of a non-empty image is rejected."""

    def __init__(self, prob: float = 0.0, scale: Sequence[float] = (0.6, 1.0),
                 ratio: Sequence[float] = (0.75, 1.33), min_visibility: float = 0.25) -> None:
        super().__init__(prob)
        self.scale = value_range(scale, "scale")
        self.ratio = value_range(ratio, "ratio")
        self.min_visibility = float(min_visibility)

    def __call__(self, sample: Sample, rng: np.random.Generator, pool=None) -> Sample:
        H, W = sample.image.shape[:2]
        px = cxcywh_to_xyxy(sample.boxes) * np.array([W, H, W, H], np.float32)
        area_px = np.maximum(px[:, 2] - px[:, 0], 0) * np.maximum(px[:, 3] - px[:, 1], 0)
        for _ in range(10):
            area = W * H * rng.uniform(*self.scale)
            asp = rng.uniform(*self.ratio)
            cw, ch = int(round(np.sqrt(area * asp))), int(round(np.sqrt(area / asp)))
            if not (0 < cw <= W and 0 < ch <= H):
                continue
            x0, y0 = randint(rng, 0, W - cw), randint(rng, 0, H - ch)
            cut = np.clip(px, [x0, y0, x0, y0], [x0 + cw, y0 + ch, x0 + cw, y0 + ch])
            inter = np.maximum(cut[:, 2] - cut[:, 0], 0) * np.maximum(cut[:, 3] - cut[:, 1], 0)
            keep = inter / (area_px + 1e-6) >= self.min_visibility
            if len(px) and not keep.any():
                continue
            norm = (cut[keep] - np.array([x0, y0, x0, y0], np.float32)) / np.array([cw, ch, cw, ch], np.float32)
            boxes, labels = clip_and_filter(xyxy_to_cxcywh(norm), sample.labels[keep], MIN_BOX_AREA)
            image = resize_linear(sample.image[y0:y0 + ch, x0:x0 + cw], (H, W))
            return Sample(np.ascontiguousarray(image), boxes, labels)
        return sample


class RemoveOutliers(Transform):
    """Always runs: drop boxes whose area ``w*h`` (normalised) is below ``min_area``.
    A bare number in the YAML is ``min_area``."""

    scalar_params = ("min_area",)
    always_apply = True

    def __init__(self, min_area: float = 0.0) -> None:
        super().__init__(1.0)
        self.min_area = float(min_area)

    def __call__(self, sample: Sample, rng: np.random.Generator, pool=None) -> Sample:
        boxes, labels = filter_min_area(sample.boxes, sample.labels, self.min_area)
        return Sample(sample.image, boxes, labels)
