"""Deterministic train/val split (the seed's rule, made portable by sorting first).

Algorithm (docs/pipeline.md §1.5)::

    items sorted by path                      # deviation from K: K used unsorted os.listdir
    numpy.random.default_rng(seed).shuffle(items)
    ratio = train_split / max(train_split + val_split, 1e-9)   # ratios renormalised
    n_tr  = round(n * ratio)                  # Python round: banker's rounding
    if val_split > 0 and n_tr == n and n > 1: n_tr = n - 1     # keep >= 1 val image
    if ratio > 0 and n_tr == 0 and n > 0:     n_tr = 1
    train, val = items[:n_tr], items[n_tr:]   # every remaining item goes to val

Sorting makes the result identical on every machine and filesystem for the same files and
seed. Test vector: ``img00.jpg .. img09.jpg``, seed 42, 0.8/0.2 -> val ``[img01, img08]``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TypeVar

import numpy as np

from utod.errors import ConfigError

T = TypeVar("T")


def _path_of(item: object) -> str:
    return str(getattr(item, "image_path", item))


def train_count(n: int, train_split: float, val_split: float) -> int:
    """Number of training items out of ``n`` by the module's rule."""
    if train_split < 0 or val_split < 0:
        raise ConfigError(f"train_split and val_split must be >= 0, got {train_split} and {val_split}")
    ratio = train_split / max(train_split + val_split, 1e-9)
    n_tr = int(round(n * ratio))
    if val_split > 0 and n_tr == n and n > 1:
        n_tr = n - 1
    if ratio > 0 and n_tr == 0 and n > 0:
        n_tr = 1
    return n_tr


def split_items(items: Sequence[T], train_split: float = 0.8, val_split: float = 0.2,
                seed: int = 42) -> tuple[list[T], list[T]]:
    """Split ``items`` (paths or objects with ``image_path``) into ``(train, val)``."""
    ordered = sorted(items, key=_path_of)
    np.random.default_rng(seed).shuffle(ordered)
    n_tr = train_count(len(ordered), train_split, val_split)
    return ordered[:n_tr], ordered[n_tr:]


def write_split(run_dir: str | os.PathLike, train_items: Sequence[object], val_items: Sequence[object]) -> tuple[Path, Path]:
    """Write ``train.txt`` and ``val.txt`` (absolute image paths, one per line) into
    ``run_dir``; both are valid ``--image-dir`` list files. Returns their paths."""
    from utod.atomic import write_text

    run = Path(run_dir)
    out = []
    for name, seq in (("train.txt", train_items), ("val.txt", val_items)):
        out.append(write_text(run / name, "".join(os.path.abspath(_path_of(i)) + "\n" for i in seq)))
    return out[0], out[1]
