"""The built-in default dataset: deterministic, valid YOLO files, reused when present."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from utod.data.classes import resolve_classes
from utod.data.dataset import scan_dataset
from utod.data.synthetic import CLASS_NAMES, NAMES_FILE, NUM_IMAGES, ensure_default_dataset, generate_shapes


def test_generation_is_deterministic(tmp_path: Path):
    generate_shapes(tmp_path / "a", num_images=12)
    generate_shapes(tmp_path / "b", num_images=12)
    files = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert files == sorted(p.name for p in (tmp_path / "b").iterdir())
    for name in files:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    generate_shapes(tmp_path / "c", num_images=12, seed=1)
    assert (tmp_path / "c" / "shapes_00000.png").read_bytes() != (tmp_path / "a" / "shapes_00000.png").read_bytes()


def test_default_dataset_is_valid_and_reused(tmp_path: Path):
    root = ensure_default_dataset(tmp_path / "shapes")
    spec = resolve_classes(None, None, str(root / NAMES_FILE))
    assert spec.names == list(CLASS_NAMES)
    res = scan_dataset(root, num_classes=spec.num_classes, log=None)
    s = res.summary
    assert res.issues == [] and s.images == NUM_IMAGES
    assert 0.02 * NUM_IMAGES <= s.background_images <= 0.12 * NUM_IMAGES
    assert set(s.class_counts) == {0, 1, 2} and min(s.class_counts.values()) > 0.25 * s.boxes
    sides = np.concatenate([it.boxes[:, 2:] for it in res.items if len(it.boxes)])
    assert sides.min() >= 0.08 and sides.max() <= 0.7
    stamp = (root / "shapes_00000.png").stat().st_mtime_ns
    assert ensure_default_dataset(tmp_path / "shapes") == root
    assert (root / "shapes_00000.png").stat().st_mtime_ns == stamp
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "temporary folder left behind"


def test_default_location_uses_cache_env(tmp_path: Path, monkeypatch):
    from utod.data.synthetic import default_dataset_root

    monkeypatch.setenv("UTOD_CACHE_DIR", str(tmp_path))
    assert default_dataset_root() == tmp_path / "default-shapes-v2"
