"""GridMask augmentation (Chen et al., 2020) for utod's augmentation contract.

Blanks a regular grid of squares: with period ``d`` pixels (drawn per call from
``period * min(H, W)``) and square side ``l = round(ratio * d)``, pixel ``(y, x)`` is
blanked when ``(y + oy) mod d < l`` and ``(x + ox) mod d < l`` for random offsets
``ox, oy`` in ``[0, d)``. Pixels are set to ``fill``. Boxes do not move; a box whose
visible pixel fraction drops below ``min_visibility`` is removed (0 keeps every box).

Pure numpy, no TensorFlow. Random numbers come only from the ``rng`` utod passes in.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from utod.sdk import Sample


class GridMask:
    """GridMask: blank a regular grid of squares (boxes kept unless mostly hidden)."""

    scalar_params = ("prob",)  # aug.yaml ``GridMask: 0.3`` sets prob

    def __init__(self, prob: float = 0.5, period: Sequence[float] | float = (0.2, 0.5), ratio: float = 0.5,
                 fill: float = 0.0, min_visibility: float = 0.0):
        lo, hi = (float(period), float(period)) if np.isscalar(period) else (float(p) for p in period)
        if not 0.0 < lo <= hi <= 1.0:
            raise ValueError(f"GridMask: period must be 0 < min <= max <= 1 (fraction of the image side), got {period}")
        if not 0.0 < ratio < 1.0:
            raise ValueError(f"GridMask: ratio must be in (0, 1), got {ratio}")
        if not 0.0 <= fill <= 1.0:
            raise ValueError(f"GridMask: fill must be in [0, 1] (images are float [0, 1]), got {fill}")
        if not 0.0 <= min_visibility <= 1.0:
            raise ValueError(f"GridMask: min_visibility must be in [0, 1], got {min_visibility}")
        self.prob = float(prob)
        self.period = (lo, hi)
        self.ratio = float(ratio)
        self.fill = float(fill)
        self.min_visibility = float(min_visibility)

    def mask(self, height: int, width: int, rng: np.random.Generator) -> np.ndarray:
        """Bool [height, width], True where pixels are blanked."""
        side = min(height, width)
        d_lo = max(2, int(round(self.period[0] * side)))
        d_hi = max(d_lo, int(round(self.period[1] * side)))
        d = int(rng.integers(d_lo, d_hi + 1))
        length = min(max(1, int(round(self.ratio * d))), d - 1)
        ox, oy = (int(v) for v in rng.integers(0, d, size=2))
        rows = (np.arange(height) + oy) % d < length
        cols = (np.arange(width) + ox) % d < length
        return rows[:, None] & cols[None, :]

    def __call__(self, sample: Sample, rng: np.random.Generator, pool: object = None) -> Sample:
        """Apply once (the pipeline has already drawn the ``prob`` gate)."""
        image = np.asarray(sample.image, np.float32)
        height, width = image.shape[:2]
        hidden = self.mask(height, width, rng)
        out = image.copy()
        out[hidden] = self.fill
        boxes = np.asarray(sample.boxes, np.float32).reshape(-1, 4)
        labels = np.asarray(sample.labels, np.int32).reshape(-1)
        if self.min_visibility > 0.0 and len(boxes):
            keep = visible_fraction(hidden, boxes) >= self.min_visibility
            boxes, labels = boxes[keep], labels[keep]
        return Sample(out, boxes, labels)


def visible_fraction(hidden: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Fraction of each box's pixels not blanked: ``hidden`` bool [H, W], ``boxes`` float32
    [N, 4] normalised cxcywh -> float32 [N] (1 for boxes covering no whole pixel)."""
    height, width = hidden.shape
    out = np.ones(len(boxes), np.float32)
    for i, (cx, cy, w, h) in enumerate(boxes):
        x1 = int(np.clip(np.floor((cx - w / 2) * width), 0, width))
        x2 = int(np.clip(np.ceil((cx + w / 2) * width), 0, width))
        y1 = int(np.clip(np.floor((cy - h / 2) * height), 0, height))
        y2 = int(np.clip(np.ceil((cy + h / 2) * height), 0, height))
        if x2 > x1 and y2 > y1:
            out[i] = 1.0 - float(hidden[y1:y2, x1:x2].mean())
    return out
