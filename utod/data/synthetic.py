"""The built-in default dataset ("shapes"): used when ``utod train`` gets no ``--image-dir``.

A deterministic (seeded), procedurally generated detection set written as real PNG files
with YOLO labels and an ``obj.names`` file, all in one folder:

* 1000 images of 64 x 64 px, 3 classes: ``circle``, ``square``, ``triangle``;
* 1-3 objects per image (about 6% background images), object sides 20-50% of the image
  side, random colours clearly apart from the background, small rotations (up to 15
  degrees), light texture noise inside objects, overlapping at most a little;
* backgrounds: a gentle random linear colour gradient plus mild Gaussian noise.

It is meant as a demo that a tiny model learns within minutes on a CPU (the quick start
trains a width-16 model to mAP@0.5 well above 0.5), not as a benchmark.

The labels are the exact bounding boxes of each drawn shape (computed from its own mask).
It is generated in a temporary folder and renamed into place, so a partial dataset is never
used, and reused when present (the folder name carries the format version). Generation takes
a few seconds. ``ensure_default_dataset()`` returns the folder: pass it as ``--image-dir``
and ``<folder>/obj.names`` as ``--names``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import cv2
import numpy as np

DATASET_NAME = "default-shapes-v2"
CLASS_NAMES = ("circle", "square", "triangle")
NUM_IMAGES = 1000
IMAGE_SIZE = 64
SEED = 20240501
NAMES_FILE = "obj.names"
_DONE_MARK = ".complete"


def default_dataset_root() -> Path:
    """``$UTOD_CACHE_DIR/default-shapes-v2`` or ``~/.cache/utod/default-shapes-v2``."""
    from utod.data.cache import cache_root

    return cache_root() / DATASET_NAME


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """float32 [S, S, 3] in 0..255: a gentle gradient plus mild noise."""
    c0 = rng.uniform(20, 235, 3)
    c1 = np.clip(c0 + rng.uniform(-40, 40, 3), 0, 255)
    angle = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / (size - 1)
    t = np.clip((np.cos(angle) * (xx - 0.5) + np.sin(angle) * (yy - 0.5)) + 0.5, 0, 1)[..., None]
    img = c0 * (1 - t) + c1 * t
    img += rng.normal(0, rng.uniform(2, 6), img.shape)
    return img.astype(np.float32)


def _shape_mask(rng: np.random.Generator, cls: int, size: int, side: float, cx: float, cy: float) -> np.ndarray:
    """uint8 [S, S] mask of one shape of class ``cls`` with extent ~``side`` px at (cx, cy)."""
    mask = np.zeros((size, size), np.uint8)
    r = side / 2
    if cls == 0:
        cv2.circle(mask, (round(cx * 16), round(cy * 16)), round(r * 16), 255, -1, cv2.LINE_8, 4)
        return mask
    if cls == 1:
        pts = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], np.float32) * (r / np.sqrt(2) * 1.25)
        angle = rng.uniform(-np.pi / 12, np.pi / 12)
    else:
        pts = np.array([[0, -1], [np.sin(2 * np.pi / 3), 0.5], [-np.sin(2 * np.pi / 3), 0.5]], np.float32) * r
        angle = rng.uniform(-np.pi / 12, np.pi / 12)
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]], np.float32)
    poly = pts @ rot.T + np.array([cx, cy], np.float32)
    cv2.fillPoly(mask, [np.round(poly * 16).astype(np.int32)], 255, cv2.LINE_8, 4)
    return mask


def _colour_far_from(rng: np.random.Generator, img: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """A colour that differs clearly from the background under ``mask``."""
    under = img[mask > 0].mean(axis=0) if mask.any() else np.full(3, 128.0)
    for _ in range(20):
        c = rng.uniform(0, 255, 3)
        if np.abs(c - under).sum() > 150:
            return c
    return 255.0 - under


def _render(rng: np.random.Generator, size: int) -> tuple[np.ndarray, list[tuple[int, float, float, float, float]]]:
    img = _background(rng, size)
    objects: list[tuple[int, float, float, float, float]] = []
    n_obj = 0 if rng.random() < 0.06 else int(rng.integers(1, 4))
    placed: list[tuple[float, float, float]] = []
    for _ in range(n_obj):
        for _try in range(20):
            cls = int(rng.integers(0, len(CLASS_NAMES)))
            side = rng.uniform(0.2, 0.5) * size
            cx = rng.uniform(side / 2, size - side / 2)
            cy = rng.uniform(side / 2, size - side / 2)
            if all(np.hypot(cx - px, cy - py) > 0.6 * (side + ps) for px, py, ps in placed):
                break
        else:
            continue
        mask = _shape_mask(rng, cls, size, side, cx, cy)
        ys, xs = np.nonzero(mask)
        if len(xs) == 0:
            continue
        colour = _colour_far_from(rng, img, mask)
        tex = colour + rng.normal(0, rng.uniform(2, 10), img.shape)
        img = np.where(mask[..., None] > 0, tex, img)
        x1, x2, y1, y2 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
        objects.append((cls, (x1 + x2) / 2 / size, (y1 + y2) / 2 / size, (x2 - x1) / size, (y2 - y1) / size))
        placed.append((cx, cy, side))
    return np.clip(img, 0, 255).astype(np.uint8), objects


def generate_shapes(folder: Path, num_images: int = NUM_IMAGES, size: int = IMAGE_SIZE, seed: int = SEED) -> None:
    """Write ``num_images`` PNG + YOLO ``.txt`` files and ``obj.names`` into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(num_images):
        rng = np.random.default_rng((seed, i))
        img, objects = _render(rng, size)
        stem = folder / f"shapes_{i:05d}"
        cv2.imwrite(str(stem.with_suffix(".png")), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
        lines = "".join(f"{c} {x:.6f} {y:.6f} {w:.6f} {h:.6f}\n" for c, x, y, w, h in objects)
        stem.with_suffix(".txt").write_text(lines, encoding="utf-8")
    (folder / NAMES_FILE).write_text("".join(f"{n}\n" for n in CLASS_NAMES), encoding="utf-8")
    (folder / _DONE_MARK).write_text(f"{num_images} {size} {seed}\n", encoding="utf-8")


def ensure_default_dataset(root: str | os.PathLike | None = None) -> Path:
    """The default dataset folder (generated on first use). ``root`` overrides the location."""
    target = Path(root) if root is not None else default_dataset_root()
    if (target / _DONE_MARK).is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        generate_shapes(tmp)
        if target.exists() and not (target / _DONE_MARK).is_file():
            shutil.rmtree(target)  # an incomplete leftover of an old layout
        try:
            os.replace(tmp, target)
        except OSError:
            if not (target / _DONE_MARK).is_file():  # lost a race only if the winner finished
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target
