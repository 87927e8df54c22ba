"""Geometric transforms keep boxes consistent with the pixels.

Each test image is black with white rectangles exactly covering its boxes. After a transform,
(a) every bright pixel must lie inside some output box (1 px tolerance) and (b) every output
box must be mostly bright, i.e. the box still covers the white pixels it labels.
"""

from __future__ import annotations

import numpy as np
import pytest

from utod.components import Sample
from utod.registry import build_registry

H = W = 64


@pytest.fixture(scope="module")
def reg():
    return build_registry()


def white_boxes(rects_px: list[tuple[int, int, int, int]], labels: list[int] | None = None) -> Sample:
    """Black image with white pixel rectangles (x1, y1, x2, y2), boxes matching them."""
    img = np.zeros((H, W, 3), np.float32)
    boxes = []
    for x1, y1, x2, y2 in rects_px:
        img[y1:y2, x1:x2] = 1.0
        boxes.append([(x1 + x2) / 2 / W, (y1 + y2) / 2 / H, (x2 - x1) / W, (y2 - y1) / H])
    labels = labels if labels is not None else list(range(len(rects_px)))
    return Sample(img, np.array(boxes, np.float32).reshape(-1, 4), np.array(labels, np.int32))


class ListPool:
    def __init__(self, samples):
        self.samples = samples

    def draw(self, rng):
        return self.samples[int(rng.integers(len(self.samples)))]


POOL = ListPool([white_boxes([(5, 40, 20, 60)], [7]), white_boxes([(30, 2, 62, 20), (2, 2, 12, 12)], [8, 9]),
                 white_boxes([], [])])


def assert_consistent(out: Sample, bright: float = 0.75, tol: float = 1.0, min_fill: float = 0.8) -> None:
    assert out.image.shape == (H, W, 3) and out.image.dtype == np.float32
    assert out.boxes.dtype == np.float32 and out.boxes.shape == (len(out.labels), 4)
    assert out.image.min() >= 0.0 and out.image.max() <= 1.0
    mask = out.image.mean(axis=2) > bright
    px = np.column_stack([out.boxes[:, 0] - out.boxes[:, 2] / 2, out.boxes[:, 1] - out.boxes[:, 3] / 2,
                          out.boxes[:, 0] + out.boxes[:, 2] / 2, out.boxes[:, 1] + out.boxes[:, 3] / 2])
    px = px * np.array([W, H, W, H])
    assert (px >= -1e-4).all() and (px <= W + 1e-4).all(), "boxes must be clipped to the image"
    ys, xs = np.nonzero(mask)
    cx, cy = xs + 0.5, ys + 0.5
    covered = np.zeros(len(xs), bool)
    for x1, y1, x2, y2 in px:
        covered |= (cx >= x1 - tol) & (cx <= x2 + tol) & (cy >= y1 - tol) & (cy <= y2 + tol)
        ix1, iy1, ix2, iy2 = int(np.ceil(x1)), int(np.ceil(y1)), int(np.floor(x2)), int(np.floor(y2))
        if ix2 - ix1 >= 2 and iy2 - iy1 >= 2:
            inner = mask[iy1:iy2, ix1:ix2]
            assert inner.mean() >= min_fill, f"box {x1:.1f},{y1:.1f},{x2:.1f},{y2:.1f} is not over its object"
    assert covered.all(), f"{(~covered).sum()} bright pixels are outside every box"


SAMPLE = white_boxes([(8, 10, 30, 26), (40, 36, 58, 60)], [1, 2])

CASES = [
    ("HorizontalFlip", {}),
    ("VerticalFlip", {}),
    ("RandomScale", {"scale_range": [0.5, 0.9]}),
    ("RandomScale", {"scale_range": [1.2, 1.6]}),  # s > 1: centre crop (seed bug fixed)
    ("RandomScale", {"scale_range": [0.6, 1.4], "keep_aspect_ratio": False}),
    ("Translation", {"translate": 0.3}),
    ("RandomCrop", {"ratio": 0.6}),
    ("RandomResizedCrop", {"scale": [0.3, 0.8]}),
    ("Mosaic", {}),
    ("CopyPaste", {"sample_num": 2}),
]


@pytest.mark.parametrize("name, params", CASES)
def test_boxes_follow_pixels(reg, name, params):
    op = reg.create("augmentation", name, {**params, "prob": 1.0})
    for seed in range(12):
        out = op(SAMPLE, np.random.default_rng(seed), POOL)
        assert_consistent(out)


def test_mixup_keeps_both_sets(reg):
    op = reg.create("augmentation", "MixUp")
    out = op(SAMPLE, np.random.default_rng(1), ListPool([POOL.samples[1]]))
    assert sorted(out.labels.tolist()) == [1, 2, 8, 9]
    assert_consistent(out, bright=0.4, min_fill=0.9)
    assert np.isclose(out.image.max(), 1.0) or np.isclose(out.image.max(), 0.5)


def test_horizontal_flip_values_and_class_swap(reg):
    op = reg.create("augmentation", "HorizontalFlip", {"prob": 1.0, "class_swap_map": {1: 5, 5: 1}})
    out = op(SAMPLE, np.random.default_rng(0), None)
    np.testing.assert_allclose(out.boxes[:, 0], 1.0 - SAMPLE.boxes[:, 0])
    assert out.labels.tolist() == [5, 2]
    np.testing.assert_array_equal(out.image, SAMPLE.image[:, ::-1])


def test_translation_moves_boxes_by_whole_pixels(reg):
    op = reg.create("augmentation", "Translation", {"prob": 1.0, "translate": 0.2})
    for seed in range(10):
        out = op(white_boxes([(20, 20, 40, 40)]), np.random.default_rng(seed), None)
        edges = out.boxes[0, :2] * W - out.boxes[0, 2:] * W / 2
        np.testing.assert_allclose(edges, np.round(edges), atol=1e-4)


def test_mosaic_drops_boxes_outside_the_crop(reg):
    op = reg.create("augmentation", "Mosaic")
    for seed in range(20):
        out = op(SAMPLE, np.random.default_rng(seed), POOL)
        assert (out.boxes[:, 2] > 0).all() and (out.boxes[:, 3] > 0).all()
        assert_consistent(out)


def test_remove_outliers(reg):
    op = reg.create("augmentation", "RemoveOutliers", {"min_area": 0.05})
    out = op(SAMPLE, np.random.default_rng(0), None)
    assert out.labels.tolist() == [1, 2]
    out = reg.create("augmentation", "RemoveOutliers", {"min_area": 0.1})(SAMPLE, np.random.default_rng(0), None)
    assert out.labels.tolist() == [2]


def test_empty_samples_survive_every_geometric_op(reg):
    empty = white_boxes([])
    for name, params in CASES:
        op = reg.create("augmentation", name, {**params, "prob": 1.0})
        out = op(empty, np.random.default_rng(0), POOL)
        assert out.image.shape == (H, W, 3) and out.boxes.shape[1] == 4
