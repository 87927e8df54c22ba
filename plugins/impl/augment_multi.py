"""Multi-image augmentations (docs/pipeline.md §3.4 items 7-9). Partners come from ``pool.draw(rng)``:
un-augmented samples of the same dataset at the training size. Without a pool (or with an
empty partner) they leave the sample unchanged.

Fixed on purpose relative to the seed (docs/seed-bugs.md item 10): Mosaic and CopyPaste clip boxes in
xyxy (cutting them at the crop border) and drop boxes left with area < 1e-6; the seed
clamped cxcywh, keeping boxes that lie completely outside the crop.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from utod_plugins.impl.augment_base import (
    FILL_GRAY,
    Transform,
    fit_partner,
    randint,
    resize_linear,
    value_range,
)

from utod.sdk import Sample
from utod.sdk.boxes_np import clip_and_filter, cxcywh_to_xyxy, xyxy_to_cxcywh

MIN_BOX_AREA = 1e-6


class MixUp(Transform):
    """Blend with one partner at a fixed lambda 0.5; boxes and labels of both are kept."""

    samples_needed = 2

    def __init__(self, prob: float = 1.0) -> None:
        super().__init__(prob)

    def __call__(self, sample: Sample, rng: np.random.Generator, pool=None) -> Sample:
        if pool is None:
            return sample
        other = fit_partner(pool.draw(rng), sample.image.shape[:2])
        image = np.clip(0.5 * sample.image + 0.5 * other.image, 0.0, 1.0).astype(np.float32)
        boxes = np.concatenate([sample.boxes, other.boxes]).astype(np.float32).reshape(-1, 4)
        labels = np.concatenate([sample.labels, other.labels]).astype(np.int32)
        return Sample(image, boxes, labels)


class Mosaic(Transform):
    """2x2 mosaic of the sample and three partners on a 2H x 2W gray canvas, then an H x W
    crop whose centre is drawn in the middle half of the canvas."""

    samples_needed = 4

    def __init__(self, prob: float = 1.0) -> None:
        super().__init__(prob)

    def __call__(self, sample: Sample, rng: np.random.Generator, pool=None) -> Sample:
        if pool is None:
            return sample
        H, W = sample.image.shape[:2]
        tiles = [sample] + [fit_partner(pool.draw(rng), (H, W)) for _ in range(3)]
        canvas = np.full((2 * H, 2 * W, 3), FILL_GRAY, np.float32)
        all_boxes, all_labels = [], []
        for tile, (ox, oy) in zip(tiles, ((0, 0), (W, 0), (0, H), (W, H))):
            canvas[oy:oy + H, ox:ox + W] = tile.image
            px = cxcywh_to_xyxy(tile.boxes) * np.array([W, H, W, H], np.float32)
            all_boxes.append(px + np.array([ox, oy, ox, oy], np.float32))
            all_labels.append(tile.labels)
        cx, cy = rng.uniform(0.5 * W, 1.5 * W), rng.uniform(0.5 * H, 1.5 * H)
        x0 = min(max(int(cx - W / 2), 0), W)
        y0 = min(max(int(cy - H / 2), 0), H)
        image = np.ascontiguousarray(canvas[y0:y0 + H, x0:x0 + W])
        px = np.concatenate(all_boxes).reshape(-1, 4)
        norm = (px - np.array([x0, y0, x0, y0], np.float32)) / np.array([W, H, W, H], np.float32)
        boxes, labels = clip_and_filter(xyxy_to_cxcywh(norm), np.concatenate(all_labels), MIN_BOX_AREA)
        return Sample(image, boxes, labels)


class CopyPaste(Transform):
    """Paste up to ``max_paste_objects`` box patches of ``sample_num`` partners, each scaled by
    ``U(scale_jitter)``, opaquely at random positions; each adds a box with the partner's
    label. Existing boxes are not adjusted for occlusion (as in the seed)."""

    samples_needed = 2

    def __init__(self, prob: float = 0.3, sample_num: int = 1, max_paste_objects: int = 5,
                 scale_jitter: Sequence[float] = (0.8, 1.2)) -> None:
        super().__init__(prob)
        self.sample_num = int(sample_num)
        self.max_paste_objects = int(max_paste_objects)
        self.jitter = value_range(scale_jitter, "scale_jitter")

    def __call__(self, sample: Sample, rng: np.random.Generator, pool=None) -> Sample:
        if pool is None:
            return sample
        H, W = sample.image.shape[:2]
        image = sample.image.copy()
        boxes, labels = [sample.boxes], [sample.labels]
        for _ in range(self.sample_num):
            other = pool.draw(rng)
            if len(other.boxes) == 0:
                continue
            other = fit_partner(other, (H, W))
            k = min(self.max_paste_objects, len(other.boxes))
            if k <= 0:
                continue
            for j in rng.choice(len(other.boxes), size=k, replace=False):
                x1, y1, x2, y2 = (cxcywh_to_xyxy(other.boxes[j:j + 1])[0] * [W, H, W, H]).astype(int)
                x1, x2 = np.clip([x1, x2], 0, W)
                y1, y2 = np.clip([y1, y2], 0, H)
                if x2 <= x1 or y2 <= y1:
                    continue
                patch = other.image[y1:y2, x1:x2]
                s = rng.uniform(*self.jitter)
                nw, nh = max(1, int(patch.shape[1] * s)), max(1, int(patch.shape[0] * s))
                patch = resize_linear(patch, (nh, nw))
                px, py = randint(rng, 0, max(0, W - nw)), randint(rng, 0, max(0, H - nh))
                vis_w, vis_h = min(nw, W - px), min(nh, H - py)
                image[py:py + vis_h, px:px + vis_w] = patch[:vis_h, :vis_w]
                boxes.append(np.array([[(px + nw / 2) / W, (py + nh / 2) / H, nw / W, nh / H]], np.float32))
                labels.append(other.labels[j:j + 1])
        out_boxes, out_labels = clip_and_filter(np.concatenate(boxes), np.concatenate(labels), MIN_BOX_AREA)
        return Sample(image, out_boxes, out_labels)
