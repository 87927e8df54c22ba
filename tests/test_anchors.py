"""Auto-anchors (docs/loss.md §7.2, §12.8), anchor strings and the ``utod anchors`` command."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from utod.anchors import kmeans_anchors, mean_best_iou, parse_anchors
from utod.cli import cli
from utod.errors import ConfigError

WH = np.array(
    [(0.05, 0.10), (0.06, 0.12), (0.04, 0.09), (0.10, 0.25), (0.12, 0.30), (0.11, 0.28), (0.30, 0.60),
     (0.35, 0.70), (0.28, 0.55), (0.50, 0.80), (0.07, 0.15), (0.20, 0.45)],
    np.float32,
)


@pytest.mark.parametrize(
    ("alg", "k", "expected"),
    [
        ("kmeans", 3, [[0.07857143, 0.18428572], [0.26000002, 0.53333336], [0.42500001, 0.75]]),
        ("kmeans", 4, [[0.055, 0.115], [0.11, 0.27666667], [0.26, 0.53333336], [0.425, 0.75]]),
        ("logkmeans", 3, [[0.07303825, 0.16550808], [0.25611585, 0.52955228], [0.41832998, 0.74833143]]),
        ("stratified", 3, [[0.055, 0.11], [0.115, 0.29], [0.325, 0.65]]),
        ("stratified_large", 3, [[0.105, 0.265], [0.35, 0.70], [0.50, 0.80]]),
    ],
)
def test_reference_anchors(alg, k, expected):
    out = kmeans_anchors(WH, k, alg=alg)
    assert out.dtype == np.float32 and out.shape == (k, 2)
    np.testing.assert_allclose(out, expected, rtol=1e-5)


def test_thirty_iterations_converge_to_the_same_anchors():
    np.testing.assert_allclose(kmeans_anchors(WH, 3, iterations=30), kmeans_anchors(WH, 3), rtol=1e-6)


def test_sorted_by_area_padding_and_empty_input():
    out = kmeans_anchors(WH[:2], 4)  # fewer boxes than anchors: padded by resampling
    areas = out[:, 0] * out[:, 1]
    assert out.shape == (4, 2) and np.all(np.diff(areas) >= 0)
    assert set(map(tuple, out.tolist())) <= set(map(tuple, WH[:2].tolist()))
    assert np.array_equal(kmeans_anchors(np.zeros((0, 2)), 3), np.zeros((3, 2), np.float32))
    assert np.array_equal(kmeans_anchors(np.array([[0.0, 0.2], [0.1, -1.0]]), 2), np.zeros((2, 2)))
    with pytest.raises(ConfigError, match="algorithm"):
        kmeans_anchors(WH, 3, alg="median")


def test_mean_best_iou():
    assert mean_best_iou(WH, WH) == pytest.approx(1.0)
    assert mean_best_iou(np.array([[0.1, 0.2]]), np.array([[0.2, 0.2], [0.05, 0.05]])) == pytest.approx(0.5)
    better = mean_best_iou(WH, kmeans_anchors(WH, 4))
    assert better > mean_best_iou(WH, kmeans_anchors(WH, 2)) > 0.0


@pytest.mark.parametrize(
    "text",
    ["0.1,0.2;0.3,0.4", " 0.1, 0.2 ; 0.3,0.4; ", "[[0.1, 0.2], [0.3, 0.4]]", "0.1,0.2 0.3,0.4", "0.1,0.2\n0.3,0.4"],
)
def test_parse_anchor_formats(text):
    assert parse_anchors(text) == [[0.1, 0.2], [0.3, 0.4]]


@pytest.mark.parametrize(
    ("text", "bad"),
    [("0.1,0.2;0.3", "'0.3'"), ("0.1,0.2 0.3,x", "'0.3,x'"), ("[[0.1, 0.2], [0.3]]", "[0.3]"),
     ("0.1,0.2;0,0.4", "'0,0.4'"), ("[[0.1, 0.2], ", "not valid JSON"), ("", "empty"),
     ("0.1,0.2,0.3", "'0.1,0.2,0.3'")],
)
def test_parse_anchor_errors_name_the_pair(text, bad):
    with pytest.raises(ConfigError, match=r".*" + __import__("re").escape(bad)):
        parse_anchors(text)


# ------------------------------------------------------------------------------- CLI
def _dataset(root: Path) -> None:
    (root / "sub").mkdir(parents=True)
    for k, (w, h) in enumerate(WH):  # sorted path order = WH order (the k-means start depends on it)
        folder = root / ("sub" if k >= 6 else "")
        (folder / f"img{k:02d}.jpg").write_bytes(b"not decoded by this command")
        lines = [f"0 0.5 0.5 {w} {h}", f"3 0.5 0.5 {w / 2} {h / 2}"]
        if k == 0:
            lines.append("0 0.5 0.5 oops 0.1")  # bad line: warned about, skipped
        (folder / f"img{k:02d}.txt").write_text("\n".join(lines) + "\n")
    (root / "orphan.txt").write_text("0 0.5 0.5 0.9 0.9\n")  # no image beside it: not read


def test_anchors_command_text_and_json(tmp_path):
    _dataset(tmp_path)
    runner = CliRunner()
    res = runner.invoke(cli, ["anchors", "--image-dir", str(tmp_path), "-k", "3", "--classes", "0"])
    assert res.exit_code == 0, res.output
    assert "12 boxes from 12 images" in res.output
    assert "img00.txt:3" in res.output and "oops" in res.output
    assert '--anchors "0.078571,0.184286;0.260000,0.533333;0.425000,0.750000"' in res.output
    res = runner.invoke(cli, ["anchors", "--image-dir", str(tmp_path), "-k", "3", "--classes", "0", "--json"])
    data = json.loads(res.stdout.strip().splitlines()[-1])
    np.testing.assert_allclose(data["anchors"], kmeans_anchors(WH, 3), rtol=1e-5)
    assert data["num_boxes"] == 12 and data["mean_best_iou"] == pytest.approx(mean_best_iou(WH, data["anchors"]))
    assert parse_anchors(data["anchors_arg"]) == data["anchors"]
    res = runner.invoke(cli, ["anchors", "--image-dir", str(tmp_path), "-k", "2", "--alg", "stratified", "--json"])
    assert json.loads(res.stdout.strip().splitlines()[-1])["num_boxes"] == 24  # both classes


def test_anchors_command_errors(tmp_path):
    _dataset(tmp_path)
    runner = CliRunner()
    res = runner.invoke(cli, ["anchors", "--image-dir", str(tmp_path), "--classes", "7"])
    assert res.exit_code == 2 and "no boxes of classes [7]" in res.output
    res = runner.invoke(cli, ["anchors", "--image-dir", str(tmp_path / "missing")])
    assert res.exit_code == 2 and "does not exist" in res.output
    res = runner.invoke(cli, ["anchors", "--image-dir", str(tmp_path), "--classes", "a"])
    assert res.exit_code == 2 and "not an integer" in res.output
