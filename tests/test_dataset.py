"""Dataset discovery, scanning, summary and class resolution."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from utod.data.classes import resolve_classes
from utod.data.dataset import scan_dataset
from utod.errors import ConfigError, DataError


def write_image(path: Path, size=(16, 16)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, buf = cv2.imencode(path.suffix if path.suffix.lower() != ".jpeg" else ".jpg", np.full((*size, 3), 90, np.uint8))
    assert ok
    path.write_bytes(buf.tobytes())


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "ds"
    write_image(root / "b.png")
    (root / "b.txt").write_text("1 0.5 0.5 0.2 0.2\n0 0.2 0.2 0.1 0.1\n")
    write_image(root / "sub" / "a.JPG")
    (root / "sub" / "a.txt").write_text("0 0.5 0.5 0.5 0.5\nbad line\n")
    write_image(root / "sub" / "deep" / "c.bmp")  # no label file: background
    write_image(root / "d.webp")
    (root / "d.txt").write_text("")  # empty label file: background
    (root / "notes.txt").write_text("not an image")
    (root / "broken.jpg").write_text("this is not a jpeg")
    return root


def test_scan_finds_images_recursively_sorted(tree: Path):
    logged: list[str] = []
    res = scan_dataset(tree, log=logged.append)
    names = [Path(i.image_path).relative_to(tree).as_posix() for i in res.items]
    assert names == ["b.png", "d.webp", "sub/a.JPG", "sub/deep/c.bmp"]
    s = res.summary
    assert (s.images, s.background_images, s.boxes, s.skipped_lines, s.skipped_images) == (4, 2, 3, 1, 1)
    assert s.class_counts == {0: 2, 1: 1}
    assert any("broken.jpg:1: not a JPEG/PNG/BMP/WebP image" in m and m.endswith("image skipped") for m in res.issues)
    assert any(m.startswith(f"{tree / 'sub' / 'a.txt'}:2: ") for m in res.issues)
    assert logged == res.issues
    text = s.format()
    assert "4 images (2 background), 3 boxes" in text and "1 images, 1 label lines" in text


def test_scan_list_file_relative_to_list_folder(tree: Path, tmp_path: Path, monkeypatch):
    lst = tree / "train.txt"
    lst.write_text("sub/a.JPG\n\nb.png\nmissing.png\n")
    monkeypatch.chdir(tmp_path)
    res = scan_dataset(lst, log=None)
    assert [Path(i.image_path).name for i in res.items] == ["a.JPG", "b.png"]
    assert res.issues[0] == f"{lst}:4: image 'missing.png' not found — entry skipped"
    assert res.summary.skipped_images == 1


def test_scan_subset_summary(tree: Path):
    res = scan_dataset(tree, class_ids=[1], num_classes=1, names=["car"], log=None)
    text = res.summary.format()
    assert "1 car: 1 -> class 0" in text and "0: 2 (not selected, ignored)" in text


def test_scan_errors(tmp_path: Path):
    with pytest.raises(DataError, match="does not exist"):
        scan_dataset(tmp_path / "nope", log=None)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no usable images"):
        scan_dataset(tmp_path / "empty", log=None)


def test_resolve_classes_priority(tmp_path: Path):
    names = tmp_path / "obj.names"
    names.write_text("person\n\ncar\nbike\n")
    spec = resolve_classes("2, 0", 5, str(names))
    assert spec.class_ids == [2, 0] and spec.names == ["bike", "person"] and spec.subset
    spec = resolve_classes(None, 2, str(names))
    assert spec.class_ids == [0, 1] and spec.names == ["person", "car"] and not spec.subset
    spec = resolve_classes("", None, str(names))
    assert spec.class_ids == [0, 1, 2] and spec.num_classes == 3
    assert resolve_classes(None, 2, None).names == ["class0", "class1"]


@pytest.mark.parametrize("args, match", [
    ((None, None, None), "number of classes is unknown"),
    (("0,a", None, None), "'a' is not an integer"),
    (("1,1", None, None), "listed twice"),
    ((None, 0, None), ">= 1"),
])
def test_resolve_classes_errors(args, match):
    with pytest.raises(ConfigError, match=match):
        resolve_classes(*args)


def test_resolve_classes_bad_names_file(tmp_path: Path):
    with pytest.raises(ConfigError, match="names file .*missing.names' not found"):
        resolve_classes(None, None, str(tmp_path / "missing.names"))
    empty = tmp_path / "e.names"
    empty.write_text("\n")
    with pytest.raises(ConfigError, match="is empty"):
        resolve_classes(None, None, str(empty))


@pytest.mark.parametrize("channels", [1, 3, 4])
def test_read_image_rgb_matches_opencv(tmp_path: Path, channels: int):
    from utod.data.images import read_image_rgb

    rng = np.random.default_rng(channels)
    arr = rng.integers(0, 256, (9, 11, channels), dtype=np.uint8)
    p = tmp_path / "x.png"
    cv2.imwrite(str(p), arr if channels > 1 else arr[..., 0])
    out = read_image_rgb(str(p))
    ref = cv2.cvtColor(cv2.imread(str(p), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    assert out.shape == (9, 11, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, ref)
    assert read_image_rgb(str(tmp_path / "missing.png")) is None
