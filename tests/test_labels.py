"""Label parsing rules of utod.data.labels: every problem is a path:line message."""

from __future__ import annotations

import numpy as np
import pytest

from utod.data.labels import label_path_for, parse_label_lines, read_label_file


def parse(lines, **kw):
    return parse_label_lines(lines, "lab.txt", **kw)


def test_good_lines_and_class_forms():
    out = parse(["0 0.5 0.5 0.2 0.4", "", "# comment", "1.0 0.25 0.25 0.1 0.1", "2e0 0.5 0.5 1 1"])
    assert out.issues == []
    np.testing.assert_array_equal(out.labels, [0, 1, 2])
    np.testing.assert_allclose(out.boxes[0], [0.5, 0.5, 0.2, 0.4], atol=1e-6)
    assert out.boxes.dtype == np.float32 and out.labels.dtype == np.int32


@pytest.mark.parametrize("line, problem", [
    ("0 0.5 0.5 0.2", "got 4 field(s)"),
    ("0 0.5 0.5 0.2 0.2 0.9", "got 6 field(s)"),
    ("0 0.5 abc 0.2 0.2", "'abc' is not a number"),
    ("x 0.5 0.5 0.2 0.2", "'x' is not a number"),
    ("0 0.5 nan 0.2 0.2", "non-finite"),
    ("1.5 0.5 0.5 0.2 0.2", "class '1.5' is not an integer"),
    ("-1 0.5 0.5 0.2 0.2", "unknown class -1"),
    ("0 0.5 0.5 0 0.2", "non-positive box size"),
    ("0 0.5 0.5 0.2 -0.1", "non-positive box size"),
    ("0 1.5 1.5 0.2 0.2", "outside the image"),
])
def test_malformed_lines_are_reported_and_skipped(line, problem):
    out = parse(["0 0.5 0.5 0.1 0.1", line])
    assert len(out.labels) == 1 and out.skipped_lines == 1
    assert len(out.issues) == 1
    msg = out.issues[0]
    assert msg.startswith("lab.txt:2: ") and problem in msg and msg.endswith("— line skipped")


def test_unknown_class_with_known_count_and_with_subset():
    out = parse(["5 0.5 0.5 0.1 0.1", "1 0.5 0.5 0.1 0.1"], num_classes=3)
    assert out.issues == ["lab.txt:1: unknown class 5 (the dataset has 3 classes: 0..2) — line skipped"]
    np.testing.assert_array_equal(out.labels, [1])
    # with a --classes subset, other ids are legal (they are dropped after augmentation)
    out = parse(["5 0.5 0.5 0.1 0.1"], num_classes=1, class_ids=[1])
    assert out.issues == [] and list(out.labels) == [5]


def test_out_of_range_box_is_clipped_and_kept():
    out = parse(["0 0.95 0.5 0.2 0.2"])
    assert out.clipped_boxes == 1 and out.skipped_lines == 0
    assert out.issues == ["lab.txt:1: coordinates outside [0, 1] — box clipped to the image and kept"]
    np.testing.assert_allclose(out.boxes[0], [0.925, 0.5, 0.15, 0.2], atol=1e-6)


def test_tiny_float_overshoot_is_silent():
    out = parse(["0 0.5 0.5 1.0000001 1"])
    assert out.issues == [] and out.clipped_boxes == 0


def test_segmentation_polygon_becomes_its_bounding_box():
    out = parse(["2 0.1 0.2 0.5 0.1 0.4 0.6 0.2 0.5"])
    assert out.issues == []
    assert list(out.labels) == [2]
    np.testing.assert_allclose(out.boxes[0], [0.3, 0.35, 0.4, 0.5], atol=1e-6)


def test_degenerate_polygon_is_skipped():
    out = parse(["0 0.1 0.2 0.5 0.2 0.4 0.2"])
    assert out.skipped_lines == 1 and "zero width or height" in out.issues[0]


def test_read_label_file_missing_is_background(tmp_path):
    out = read_label_file(str(tmp_path / "none.txt"))
    assert not out.exists and len(out.labels) == 0 and out.issues == []
    assert label_path_for("a/b/x.jpeg") == "a/b/x.txt"


def test_read_label_file_reports_real_path_and_line(tmp_path):
    p = tmp_path / "img.txt"
    p.write_text("0 0.5 0.5 0.1 0.1\n\n0 0.5 0.5\n")
    out = read_label_file(str(p))
    assert out.issues[0].startswith(f"{p}:3: expected 5 fields")


def test_label_file_with_utf8_bom_is_read(tmp_path):
    from utod.data.labels import read_label_file

    p = tmp_path / "a.txt"
    p.write_bytes("\ufeff0 0.5 0.5 0.2 0.2\n".encode())
    res = read_label_file(p)
    assert len(res.boxes) == 1 and not res.issues
