"""Deterministic split: docs/pipeline.md §1.5 test vector and counting rule."""

from __future__ import annotations

import random

import pytest

from utod.data.dataset import DatasetItem
from utod.data.split import split_items, train_count, write_split

NAMES = [f"img{i:02d}.jpg" for i in range(10)]


def test_spec_test_vector():
    train, val = split_items(NAMES, 0.8, 0.2, seed=42)
    assert train == ["img05.jpg", "img06.jpg", "img00.jpg", "img07.jpg", "img03.jpg", "img02.jpg",
                     "img04.jpg", "img09.jpg"]
    assert val == ["img01.jpg", "img08.jpg"]


def test_input_order_does_not_matter():
    shuffled = NAMES[:]
    random.Random(3).shuffle(shuffled)
    assert split_items(shuffled, 0.8, 0.2, 42) == split_items(NAMES, 0.8, 0.2, 42)


def test_items_are_split_by_path():
    import numpy as np

    items = [DatasetItem(n, np.zeros((0, 4), np.float32), np.zeros((0,), np.int32)) for n in reversed(NAMES)]
    train, val = split_items(items, 0.8, 0.2, 42)
    assert [v.image_path for v in val] == ["img01.jpg", "img08.jpg"]


@pytest.mark.parametrize("n, tr, va, expected", [
    (10, 0.8, 0.2, 8), (10, 0.7, 0.1, 9), (10, 0.75, 0.25, 8), (10, 1.0, 0.0, 10),
    (1, 0.8, 0.2, 1), (2, 1.0, 0.01, 1), (3, 0.01, 0.99, 1), (0, 0.8, 0.2, 0),
])
def test_train_count_rule(n, tr, va, expected):
    assert train_count(n, tr, va) == expected


def test_write_split(tmp_path):
    train, val = split_items(NAMES, 0.8, 0.2, 42)
    tr_path, va_path = write_split(tmp_path / "run", train, val)
    lines = tr_path.read_text().splitlines()
    assert len(lines) == 8 and lines[0].endswith("img05.jpg")
    assert [ln.rsplit("/", 1)[-1] for ln in va_path.read_text().splitlines()] == ["img01.jpg", "img08.jpg"]
