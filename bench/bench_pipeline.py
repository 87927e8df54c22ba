"""Input-pipeline throughput: images/s for the default aug config at 64x64.

Generates N (default 300) 640x640 JPEG images with YOLO labels in a temporary folder, then
measures ``DetectionData`` (training mode, default augmentation, batch 64):

* cold: constructing the pipeline (decode + resize + cache build) plus the first epoch;
* warm: later epochs (cache reused, augmentation fresh every epoch).

Usage: ``.venv/bin/python bench/bench_pipeline.py [--images 300] [--epochs 3] [--workers N]``
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np


def make_images(folder: Path, n: int, size: int = 640, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    noise = rng.normal(0, 8, (size, size, 3)).astype(np.float32)  # shared texture, rolled per image
    for i in range(n):
        c0, c1 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
        shift = tuple(int(v) for v in rng.integers(0, size, 2))
        img = (c0 * xx[..., None] + c1 * yy[..., None]) / 2 + np.roll(noise, shift, axis=(0, 1))
        lines = []
        for _ in range(int(rng.integers(1, 5))):
            w, h = rng.uniform(0.05, 0.4, 2)
            cx, cy = rng.uniform(w / 2, 1 - w / 2), rng.uniform(h / 2, 1 - h / 2)
            x1, y1 = int((cx - w / 2) * size), int((cy - h / 2) * size)
            x2, y2 = int((cx + w / 2) * size), int((cy + h / 2) * size)
            cv2.rectangle(img, (x1, y1), (x2, y2), tuple(float(v) for v in rng.uniform(0, 255, 3)), -1)
            lines.append(f"{int(rng.integers(0, 3))} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}\n")
        cv2.imwrite(str(folder / f"img_{i:04d}.jpg"), np.clip(img, 0, 255).astype(np.uint8),
                    [cv2.IMWRITE_JPEG_QUALITY, 90])
        (folder / f"img_{i:04d}.txt").write_text("".join(lines))


def consume(data, epoch: int) -> int:
    seen = 0
    for batch in data.dataset(epoch):
        seen += int(batch["image"].shape[0])
    return seen


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=300)
    ap.add_argument("--epochs", type=int, default=3, help="warm epochs")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--workers", type=int, default=None)
    args = ap.parse_args()

    from utod._keras import tf  # noqa: F401  (import TF before timing)
    from utod.data.augment import load_aug_config
    from utod.data.dataset import scan_dataset
    from utod.data.pipeline import DetectionData, PipelineConfig
    from utod.registry import get_registry

    with tempfile.TemporaryDirectory() as tmp:
        img_dir, cache_dir = Path(tmp) / "images", Path(tmp) / "cache"
        img_dir.mkdir()
        t = time.perf_counter()
        make_images(img_dir, args.images)
        print(f"generated {args.images} 640x640 JPEGs in {time.perf_counter() - t:.1f}s")
        reg = get_registry()
        scan = scan_dataset(img_dir, log=None)
        cfg = PipelineConfig(img_size=(64, 64), batch_size=args.batch_size, aug_ops=load_aug_config(None),
                             cache_dir=str(cache_dir), num_workers=args.workers)

        t = time.perf_counter()
        data = DetectionData(scan.items, cfg, reg, training=True, log=None)
        t_cache = time.perf_counter() - t
        seen = consume(data, 0)
        t_cold = time.perf_counter() - t
        print(f"cold: cache build {t_cache:.2f}s for {data.num_items} images "
              f"({data.num_items / t_cache:.0f} img/s decode+resize); first epoch total {t_cold:.2f}s "
              f"for {seen} images -> {seen / t_cold:.0f} img/s")

        t = time.perf_counter()
        total = sum(consume(data, e) for e in range(1, 1 + args.epochs))
        t_warm = time.perf_counter() - t
        print(f"warm: {args.epochs} epochs, {total} images in {t_warm:.2f}s -> {total / t_warm:.0f} img/s")
        data.close()


if __name__ == "__main__":
    main()
