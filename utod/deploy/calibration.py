"""Which images calibrate an int8 export, and which ones its mAP is reported on.

Rules (the reported int8 mAP must be on images calibration never saw):

* The checkpoint sits in a run folder with the trainer's ``train.txt``: calibration images
  are drawn from that list (the run's own training split).
* Otherwise: the given ``--image-dir`` minus the images of the evaluation split.
* Either way every evaluation image is removed from the calibration set, and the count and
  source are returned for the export summary.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from utod.errors import DataError


@dataclass
class CalibrationSet:
    """``paths``: the images chosen (at most the requested count); ``source``: where they came
    from, in words; ``excluded``: evaluation images removed from the pool."""

    paths: list[str]
    source: str
    pool: int
    excluded: int

    def describe(self) -> str:
        extra = f", {self.excluded} evaluation images excluded" if self.excluded else ""
        return f"int8 calibration on {len(self.paths)} images drawn from {self.pool} of {self.source}{extra}"


def run_train_list(checkpoint: str | os.PathLike) -> Path | None:
    """``train.txt`` of the run folder holding ``checkpoint``, or None."""
    path = Path(checkpoint).resolve().parent / "train.txt"
    return path if path.is_file() else None


def run_val_list(checkpoint: str | os.PathLike) -> Path | None:
    path = Path(checkpoint).resolve().parent / "val.txt"
    return path if path.is_file() else None


def _read_list(path: Path) -> list[str]:
    out = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if not os.path.isfile(line):
            raise DataError(f"{path}:{lineno}: image not found: {line}")
        out.append(os.path.abspath(line))
    return out


def choose_calibration(checkpoint: str | os.PathLike, count: int, *, image_items: list[Any] | None,
                       eval_items: list[Any] | None, image_dir: str | None, eval_source: str,
                       seed: int = 0) -> CalibrationSet:
    """Pick ``count`` calibration images by the module's rules; ``image_items``: every item of
    ``--image-dir`` (or None), ``eval_items``: the images the int8 mAP is reported on."""
    if count < 1:
        raise DataError(f"--calib-images must be >= 1, got {count}")
    eval_paths = {os.path.abspath(it.image_path) for it in (eval_items or [])}
    train_list = run_train_list(checkpoint)
    if train_list is not None:
        pool_all = _read_list(train_list)
        source = f"{train_list} (the run's training split)"
    elif image_items:
        pool_all = [os.path.abspath(it.image_path) for it in image_items]
        source = f"{image_dir} minus {eval_source}"
    else:
        raise DataError(f"{checkpoint}: no run folder with train.txt next to it; give --image-dir with "
                        "the training images for int8 calibration")
    pool = [p for p in dict.fromkeys(pool_all) if p not in eval_paths]
    excluded = len(set(pool_all)) - len(pool)
    if not pool:
        raise DataError(f"no calibration images left: every image of {source} is also an evaluation image "
                        f"({len(eval_paths)}); use --split val, or a run folder's train.txt")
    order = np.random.default_rng(seed).permutation(len(pool))[:count]
    return CalibrationSet([pool[i] for i in sorted(order)], source, len(pool), excluded)
