"""aug.yaml loading: layouts, value forms, defaults and error messages."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from utod.components import Sample
from utod.data.augment import DEFAULT_AUG_PATH, build_augmenter, load_aug_config
from utod.errors import ConfigError
from utod.registry import build_registry


@pytest.fixture(scope="module")
def reg():
    return build_registry()


def write(tmp_path: Path, text: str) -> str:
    p = tmp_path / "aug.yaml"
    p.write_text(text)
    return str(p)


def test_default_is_seed_k_file(reg):
    ops = load_aug_config(None, registry=reg)
    assert [n for n, _ in ops] == ["RandomPhotometricDistort", "RandomHSV", "HorizontalFlip", "CLAHE", "RemoveOutliers"]
    assert ops[1][1] == {"prob": 0.75, "hue_gain": 0.015, "saturation_gain": 0.7, "value_gain": 0.4}
    assert ops[4][1] == {"min_area": pytest.approx(0.002197266)}
    assert DEFAULT_AUG_PATH.is_file()
    assert load_aug_config(None, no_aug=True, registry=reg) == []


def test_bare_numbers_and_nulls(reg, tmp_path):
    path = write(tmp_path, "data_augment:\n  VerticalFlip: 0.5\n  ToGray: true\n  Blur: 0.1\n"
                           "  MixUp: null\n  RandomCrop: 0.8\n  RemoveOutliers: 0.01\n")
    ops = dict(load_aug_config(path, registry=reg))
    assert ops == {"VerticalFlip": {"prob": 0.5}, "ToGray": {"prob": 1.0}, "Blur": {"prob": 0.1},
                   "RandomCrop": {"prob": 0.8, "ratio": 0.8}, "RemoveOutliers": {"min_area": 0.01}}


def test_bare_mapping_document_and_order(reg, tmp_path):
    path = write(tmp_path, "Mosaic: {}\nHorizontalFlip: {prob: 0.5, class_swap_map: {1: 2, 2: 1}}\n")
    ops = load_aug_config(path, registry=reg)
    assert ops == [("Mosaic", {}), ("HorizontalFlip", {"prob": 0.5, "class_swap_map": {1: 2, 2: 1}})]
    steps = build_augmenter(reg, ops).steps
    assert steps[0].prob == 1.0 and steps[0].samples_needed == 4  # MixUp/Mosaic default p = 1


def test_pre_post_layout_is_concatenated(reg, tmp_path):
    path = write(tmp_path, "data_augment_pre:\n  HorizontalFlip: 0.5\n"
                           "data_augment_post:\n  RandomHSV: {prob: 0.5, hue_gain: 0.1}\n  RemoveOutliers: 0.0002\n")
    assert [n for n, _ in load_aug_config(path, registry=reg)] == ["HorizontalFlip", "RandomHSV", "RemoveOutliers"]


def test_unknown_transform_names_file_and_lists_options(reg, tmp_path):
    path = write(tmp_path, "data_augment:\n  HorizontalFlips: 0.5\n")
    with pytest.raises(ConfigError) as err:
        load_aug_config(path, registry=reg)
    msg = str(err.value)
    assert path in msg and "'HorizontalFlips'" in msg and "Did you mean 'HorizontalFlip'" in msg and "Mosaic" in msg


def test_unknown_parameter(reg, tmp_path):
    path = write(tmp_path, "data_augment:\n  RandomHSV: {prob: 0.5, hue: 0.1}\n")
    with pytest.raises(ConfigError) as err:
        load_aug_config(path, registry=reg)
    msg = str(err.value)
    assert path in msg and "has no option 'hue'" in msg and "hue_gain" in msg


@pytest.mark.parametrize("text, match", [
    ("data_augment:\n  Blur: [3, 5]\n", "expects a number or a mapping"),
    ("data_augment:\n  Blur: {prob: abc}\n", "expects float"),
    ("- a\n- b\n", "expected a mapping"),
    ("data_augment: {a: 1}\ndata_augment_pre: {}\n", "not both"),
    ("data_augment:\n  Blur: {prob: [\n", r"aug\.yaml:\d+: invalid YAML"),
])
def test_bad_files(reg, tmp_path, text, match):
    with pytest.raises(ConfigError, match=match):
        load_aug_config(write(tmp_path, text), registry=reg)


def test_missing_file_is_an_error(reg, tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_aug_config(str(tmp_path / "nope.yaml"), registry=reg)


def test_augmenter_applies_in_order_with_probabilities(reg):
    aug = build_augmenter(reg, [("HorizontalFlip", {"prob": 1.0}), ("VerticalFlip", {"prob": 0.0}),
                                ("RemoveOutliers", {"min_area": 0.05})])
    img = np.zeros((8, 8, 3), np.float32)
    img[0, 0] = 1.0
    s = Sample(img, np.array([[0.25, 0.25, 0.5, 0.5], [0.5, 0.5, 0.1, 0.1]], np.float32), np.array([3, 4], np.int32))
    out = aug(s, np.random.default_rng(0), None)
    assert out.image[0, 7, 0] == 1.0  # flipped left-right only
    np.testing.assert_allclose(out.boxes, [[0.75, 0.25, 0.5, 0.5]])  # small box removed (always applied)
    assert list(out.labels) == [3]


def test_multi_image_ops_skipped_without_pool(reg):
    aug = build_augmenter(reg, [("Mosaic", {"prob": 1.0}), ("MixUp", {})])
    s = Sample(np.zeros((8, 8, 3), np.float32), np.zeros((0, 4), np.float32), np.zeros((0,), np.int32))
    assert aug(s, np.random.default_rng(0), None) is s and aug.needs_pool


def test_build_augmenter_unknown_name(reg):
    with pytest.raises(ConfigError, match="unknown augmentation 'Nope'"):
        build_augmenter(reg, [("Nope", {})])
