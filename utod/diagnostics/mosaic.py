"""Validation mosaics: a grid of validation images with the ground truth on the left half
and the model's detections on the right half of one JPEG (``val_batch0.jpg``, ...).

Images are the network-input images (float [H, W, 3] in [0, 1] or uint8, RGB), upscaled by
an integer factor so that 64 px inputs stay legible; boxes are normalised cxcywh.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from utod.diagnostics._atomic import write_bytes_atomic
from utod.diagnostics.matching import Detections, GroundTruth

TILE_MIN = 160  # tiles are upscaled to at least this many pixels on their shorter side


def _palette(k: int) -> tuple[int, int, int]:
    """A stable, distinct BGR colour per class."""
    rng = np.random.default_rng(k * 7919 + 17)
    hue = (k * 0.61803398875) % 1.0
    import colorsys

    r, g, b = colorsys.hsv_to_rgb(hue, 0.85, 0.95 - 0.2 * rng.random())
    return int(b * 255), int(g * 255), int(r * 255)


def _to_bgr_uint8(img: np.ndarray) -> np.ndarray:
    a = np.asarray(img)
    if a.dtype != np.uint8:
        a = np.clip(np.nan_to_num(a.astype(np.float32)) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=2)
    return np.ascontiguousarray(a[..., ::-1])


def _draw(tile: np.ndarray, boxes: np.ndarray, labels: np.ndarray, scores: np.ndarray | None,
          names: Sequence[str]) -> None:
    import cv2

    h, w = tile.shape[:2]
    for i, (cx, cy, bw, bh) in enumerate(np.asarray(boxes, np.float64).reshape(-1, 4)):
        k = int(labels[i])
        colour = _palette(k)
        x1, y1 = int(round((cx - bw / 2) * w)), int(round((cy - bh / 2) * h))
        x2, y2 = int(round((cx + bw / 2) * w)), int(round((cy + bh / 2) * h))
        cv2.rectangle(tile, (x1, y1), (x2, y2), colour, 2, cv2.LINE_AA)
        name = names[k] if 0 <= k < len(names) else str(k)
        text = name if scores is None else f"{name} {float(scores[i]):.2f}"
        cv2.putText(tile, text, (max(0, x1) + 1, max(9, y1 - 2)), cv2.FONT_HERSHEY_SIMPLEX, 0.32, colour, 1,
                    cv2.LINE_AA)


def _grid(tiles: list[np.ndarray], cols: int) -> np.ndarray:
    th, tw = tiles[0].shape[:2]
    rows = (len(tiles) + cols - 1) // cols
    out = np.full((rows * th + (rows - 1) * 2, cols * tw + (cols - 1) * 2, 3), 255, np.uint8)
    for i, t in enumerate(tiles):
        r, c = divmod(i, cols)
        out[r * (th + 2): r * (th + 2) + th, c * (tw + 2): c * (tw + 2) + tw] = t
    return out


def render_mosaic(images: Sequence[np.ndarray], ground_truth: Sequence[GroundTruth],
                  detections: Sequence[Detections], names: Sequence[str], conf: float) -> np.ndarray:
    """BGR uint8 mosaic: left the ground truth, right the detections with score >= ``conf``."""
    import cv2

    if not len(images):
        raise ValueError("no images for a mosaic")
    h, w = np.asarray(images[0]).shape[:2]
    scale = max(1, int(np.ceil(TILE_MIN / max(1, min(h, w)))))
    cols = int(np.ceil(np.sqrt(len(images))))
    left, right = [], []
    for img, gt, det in zip(images, ground_truth, detections):
        base = cv2.resize(_to_bgr_uint8(img), (w * scale, h * scale), interpolation=cv2.INTER_NEAREST)
        a, b = base.copy(), base.copy()
        _draw(a, gt[0], np.asarray(gt[1]).reshape(-1), None, names)
        scores = np.asarray(det[1], np.float64).reshape(-1)
        keep = scores >= conf
        _draw(b, np.asarray(det[0]).reshape(-1, 4)[keep], np.asarray(det[2]).reshape(-1)[keep], scores[keep], names)
        left.append(a)
        right.append(b)
    gl, gr = _grid(left, cols), _grid(right, cols)
    header = 22
    canvas = np.full((gl.shape[0] + header, gl.shape[1] * 2 + 12, 3), 255, np.uint8)
    canvas[header:, : gl.shape[1]] = gl
    canvas[header:, gl.shape[1] + 12:] = gr
    cv2.putText(canvas, "ground truth", (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(canvas, f"predictions (conf >= {conf:.3f})", (gl.shape[1] + 16, 16), cv2.FONT_HERSHEY_SIMPLEX,
                0.5, (0, 0, 0), 1, cv2.LINE_AA)
    return canvas


def write_mosaic(path: str | Path, images, ground_truth, detections, names, conf: float) -> Path:
    import cv2

    ok, buf = cv2.imencode(".jpg", render_mosaic(images, ground_truth, detections, names, conf),
                           [cv2.IMWRITE_JPEG_QUALITY, 90])
    if not ok:
        raise RuntimeError(f"could not encode {path}")
    return write_bytes_atomic(path, buf.tobytes())
