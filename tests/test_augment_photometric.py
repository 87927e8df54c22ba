"""Photometric transforms: shape, dtype, range and boxes preserved; pixels change;
the same rng gives the same result."""

from __future__ import annotations

import numpy as np
import pytest

from utod.components import Sample
from utod.registry import build_registry

PHOTOMETRIC = {
    "RandomHSV": {"hue_gain": 0.3, "saturation_gain": 0.7, "value_gain": 0.4},
    "RandomPhotometricDistort": {},
    "Blur": {},
    "MedianBlur": {},
    "MotionBlur": {},
    "GaussianBlur": {"sigma_limit": [1.0, 2.0]},
    "RandomBrightness": {"factor_range": [0.5, 0.7]},
    "RandomContrast": {"factor_range": [0.5, 0.7]},
    "RandomSaturation": {"factor_range": [0.2, 0.5]},
    "CLAHE": {"clip_limit": 4.0},
    "ToGray": {},
    "GaussNoise": {},
    "ImageCompression": {"quality_range": [10, 30]},
    "ISONoise": {},
    "RandomRain": {"density": [0.02, 0.03], "drop_length": [5, 10]},
    "RandomFog": {},
    "RandomSunFlare": {"src_radius_range": [10, 20]},
}


@pytest.fixture(scope="module")
def reg():
    return build_registry()


@pytest.fixture(scope="module")
def sample():
    rng = np.random.default_rng(5)
    yy, xx = np.mgrid[0:48, 0:64] / 64.0
    img = np.stack([xx, yy, 1 - xx], axis=2) * 0.6 + rng.uniform(0, 0.3, (48, 64, 3))
    img[10:30, 10:30] = [0.9, 0.1, 0.2]
    boxes = np.array([[0.3, 0.4, 0.3, 0.4]], np.float32)
    return Sample(img.astype(np.float32), boxes, np.array([3], np.int32))


def test_every_seed_op_is_registered(reg):
    names = set(reg.names("augmentation"))
    geometric = {"HorizontalFlip", "VerticalFlip", "RandomScale", "Translation", "RandomCrop", "RandomResizedCrop",
                 "MixUp", "Mosaic", "CopyPaste", "RemoveOutliers"}
    assert names >= geometric | set(PHOTOMETRIC) and len(geometric | set(PHOTOMETRIC)) == 27


@pytest.mark.parametrize("name", sorted(PHOTOMETRIC))
def test_photometric_op(reg, sample, name):
    op = reg.create("augmentation", name, {**PHOTOMETRIC[name], "prob": 1.0})
    out = op(sample, np.random.default_rng(0), None)
    assert out.image.shape == sample.image.shape and out.image.dtype == np.float32
    assert out.image.min() >= 0.0 and out.image.max() <= 1.0
    np.testing.assert_array_equal(out.boxes, sample.boxes)
    np.testing.assert_array_equal(out.labels, sample.labels)
    assert np.abs(out.image - sample.image).mean() > 1e-3, "the op did not change the pixels"
    again = op(sample, np.random.default_rng(0), None)
    np.testing.assert_array_equal(out.image, again.image)


def test_to_gray_channels_equal(reg, sample):
    out = reg.create("augmentation", "ToGray", {"prob": 1.0})(sample, np.random.default_rng(0), None)
    np.testing.assert_array_equal(out.image[..., 0], out.image[..., 1])
    np.testing.assert_array_equal(out.image[..., 1], out.image[..., 2])


def test_brightness_scales(reg, sample):
    out = reg.create("augmentation", "RandomBrightness", {"prob": 1.0, "factor_range": 0.5})(
        sample, np.random.default_rng(0), None)
    np.testing.assert_allclose(out.image, sample.image * 0.5, atol=1e-6)


def test_hsv_zero_gain_is_near_identity(reg, sample):
    out = reg.create("augmentation", "RandomHSV", {"prob": 1.0})(sample, np.random.default_rng(0), None)
    diff = np.abs(out.image - sample.image)  # only uint8 truncation + the 8-bit HSV round trip remain
    assert diff.max() <= 8 / 255 and diff.mean() <= 2 / 255


def test_hsv_jitter_matches_per_channel_tables(sample):
    """The one 3-channel LUT gives exactly what three per-channel OpenCV HSV tables give."""
    import cv2
    from utod_plugins.impl.augment_color import hsv_jitter

    from utod.data.boxes_np import to_float, to_uint8

    x = np.arange(256, dtype=np.float32)
    for gains in ([1.0, 1.0, 1.0], [1.3, 0.4, 1.6], [0.7, 1.9, 0.2], [-0.5, 1.0, 1.0]):
        g = np.asarray(gains, np.float32)
        h, s, v = cv2.split(cv2.cvtColor(to_uint8(sample.image), cv2.COLOR_RGB2HSV))
        h = cv2.LUT(h, np.mod(x * g[0], 180.0).astype(np.uint8))
        s = cv2.LUT(s, np.clip(x * g[1], 0, 255).astype(np.uint8))
        v = cv2.LUT(v, np.clip(x * g[2], 0, 255).astype(np.uint8))
        want = to_float(cv2.cvtColor(cv2.merge((h, s, v)), cv2.COLOR_HSV2RGB))
        np.testing.assert_array_equal(hsv_jitter(sample.image, g), want)


def test_contrast_keeps_the_per_channel_mean(sample):
    from utod_plugins.impl.augment_color import _contrast

    img = sample.image
    mean = img.mean(axis=(0, 1), keepdims=True)
    out = _contrast(img, 1.3)
    assert out.dtype == np.float32 and out.shape == img.shape
    np.testing.assert_allclose(out, (img - mean) * 1.3 + mean, atol=1e-5)
    np.testing.assert_allclose(out.mean(axis=(0, 1)), mean.reshape(3), atol=1e-5)
