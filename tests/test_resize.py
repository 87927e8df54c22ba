"""Resize backends: contract and the seed's exact OpenCV semantics."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from utod.registry import build_registry

NAMES = ["opencv_inter_nearest", "keras_nearest", "keras_bilinear", "opencv_inter_linear", "opencv_inter_area",
         "tf_bilinear"]


@pytest.fixture(scope="module")
def reg():
    return build_registry()


@pytest.fixture(scope="module")
def image():
    return np.random.default_rng(0).integers(0, 256, (37, 53, 3), dtype=np.uint8)


@pytest.mark.parametrize("name", NAMES)
def test_contract(reg, image, name):
    out = reg.create("resize", name)(image, (24, 32))
    assert out.dtype == np.uint8 and out.shape == (24, 32, 3)
    same = reg.create("resize", name)(image, (37, 53))
    np.testing.assert_array_equal(same, image)


@pytest.mark.parametrize("name, interp", [
    ("opencv_inter_nearest", cv2.INTER_NEAREST),
    ("keras_nearest", cv2.INTER_NEAREST),
    ("keras_bilinear", cv2.INTER_LINEAR),
    ("opencv_inter_linear", cv2.INTER_LINEAR),
    ("opencv_inter_area", cv2.INTER_AREA),
])
def test_seed_semantics_are_opencv(reg, image, name, interp):
    out = reg.create("resize", name)(image, (24, 32))
    np.testing.assert_array_equal(out, cv2.resize(image, (32, 24), interpolation=interp))


def test_nearest_samples_floor(reg):
    img = np.arange(8, dtype=np.uint8).reshape(1, 8, 1).repeat(3, axis=2).repeat(2, axis=0)
    out = reg.create("resize", "opencv_inter_nearest")(img, (1, 4))
    assert list(out[0, :, 0]) == [0, 2, 4, 6]


def test_tf_bilinear_is_half_pixel_bilinear(reg, image):
    from utod._keras import tf

    out = reg.create("resize", "tf_bilinear")(image, (24, 32))
    ref = tf.image.resize(image.astype(np.float32), (24, 32), method="bilinear").numpy()
    assert np.abs(out.astype(np.float32) - ref).max() <= 0.5 + 1e-3
