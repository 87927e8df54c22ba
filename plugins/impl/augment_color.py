"""Photometric augmentations (docs/pipeline.md §3.4 items 11-27): they change pixels only; image shape,
range [0, 1], float32 dtype and the boxes are preserved. Pixel sizes (kernel sizes, drop
lengths, flare radii) are in pixels of the training-size image, as in the seed."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
from utod_plugins.impl.augment_base import Transform, odd_kernel, randint, value_range

from utod.sdk import Sample
from utod.sdk.boxes_np import to_float, to_uint8

_X = np.arange(256, dtype=np.float32)


def _with_image(sample: Sample, image: np.ndarray) -> Sample:
    return Sample(np.clip(image, 0.0, 1.0).astype(np.float32, copy=False), sample.boxes, sample.labels)


def hsv_jitter(image: np.ndarray, gains: np.ndarray) -> np.ndarray:
    """OpenCV HSV (H in [0,180)) scaled by ``gains`` = (r_h, r_s, r_v): ``H = (H*r_h) mod 180``,
    ``S, V`` clipped to [0,255], truncated to uint8 (one 3-channel LUT), back to RGB float."""
    hsv = cv2.cvtColor(to_uint8(image), cv2.COLOR_RGB2HSV)
    lut = _X[:, None] * np.asarray(gains, np.float32).reshape(1, 3)  # [256, 3]: H, S, V tables
    lut[:, 0] = np.mod(lut[:, 0], 180.0)
    np.clip(lut, 0.0, 255.0, out=lut)
    hsv = cv2.LUT(hsv, lut.astype(np.uint8).reshape(256, 1, 3))
    return to_float(cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB))


def _contrast(image: np.ndarray, factor: float) -> np.ndarray:
    """``(image - mean) * factor + mean`` with the per-channel mean (as in the seed), computed as
    ``image * factor + mean * (1 - factor)``; OpenCV's per-channel scalars are ~5x faster than
    NumPy broadcasting over a last axis of 3 on these small images."""
    f = float(factor)
    offset = tuple(m * (1.0 - f) for m in cv2.mean(image))
    return cv2.add(image * np.float32(f), offset)


class RandomHSV(Transform):
    """HSV gains ``1 + U(-1, 1) * [hue_gain, saturation_gain, value_gain]``."""

    def __init__(self, prob: float = 0.0, hue_gain: float = 0.0, saturation_gain: float = 0.0,
                 value_gain: float = 0.0) -> None:
        super().__init__(prob)
        self.gains = np.array([hue_gain, saturation_gain, value_gain], np.float32)

    def __call__(self, sample: Sample, rng: np.random.Generator, pool=None) -> Sample:
        r = rng.uniform(-1.0, 1.0, 3) * self.gains + 1.0
        return _with_image(sample, hsv_jitter(sample.image, r))


class RandomPhotometricDistort(Transform):
    """The seed's approximation: brightness ``U(0.8,1.2)``, per-channel contrast ``U(0.8,1.2)``
    and an HSV jitter (hue gain ``U(-0.02,0.02)``, saturation gain ``U(0.8,1.2)``, used as
    amplitudes as in the seed, so saturation may collapse to gray), in a random order. No channel
    permutation (the PyTorch reference's torchvision version has one)."""

    def __init__(self, prob: float = 0.5) -> None:
        super().__init__(prob)

    def __call__(self, sample: Sample, rng: np.random.Generator, pool=None) -> Sample:
        img = sample.image
        for op in rng.permutation(3):
            if op == 0:
                img = np.clip(img * rng.uniform(0.8, 1.2), 0.0, 1.0)
            elif op == 1:
                img = np.clip(_contrast(img, rng.uniform(0.8, 1.2)), 0.0, 1.0)
            else:
                amp = np.array([rng.uniform(-0.02, 0.02), rng.uniform(0.8, 1.2), 0.0], np.float32)
                img = hsv_jitter(img, rng.uniform(-1.0, 1.0, 3) * amp + 1.0)
        return _with_image(sample, img)


class _OddKernelFilter(Transform):
    """An OpenCV filter on the uint8 image with an odd kernel size ``k ~ blur_limit``."""

    def __init__(self, prob: float = 0.0, blur_limit: Sequence[int] = (3, 7)) -> None:
        super().__init__(prob)
        self.limit = blur_limit

    def _filter(self, image_u8: np.ndarray, k: int) -> np.ndarray:
        raise NotImplementedError

    def __call__(self, sample: Sample, rng: np.random.Generator, pool=None) -> Sample:
        k = odd_kernel(rng, self.limit, 1)
        return _with_image(sample, to_float(self._filter(to_uint8(sample.image), k)))


class Blur(_OddKernelFilter):
    """Box filter ``cv2.blur`` with an odd kernel ``k ~ blur_limit``."""

    def _filter(self, image_u8: np.ndarray, k: int) -> np.ndarray:
        return cv2.blur(image_u8, (k, k))


class MedianBlur(_OddKernelFilter):
    """``cv2.medianBlur`` with an odd kernel ``k ~ blur_limit``."""

    def _filter(self, image_u8: np.ndarray, k: int) -> np.ndarray:
        return cv2.medianBlur(image_u8, k)


class MotionBlur(Transform):
    """Line kernel of odd size ``k ~ blur_limit`` (>= 3) at angle ``U(0, 180)`` degrees."""

    def __init__(self, prob: float = 0.0, blur_limit: Sequence[int] = (5, 15)) -> None:
        super().__init__(prob)
        self.limit = blur_limit

    def __call__(self, sample: Sample, rng: np.random.Generator, pool=None) -> Sample:
        k = odd_kernel(rng, self.limit, 3)
        a = np.deg2rad(rng.uniform(0.0, 180.0))
        c = k // 2
        kernel = np.zeros((k, k), np.float32)
        for i in range(k):
            kernel[c + int((i - c) * np.sin(a)), c + int((i - c) * np.cos(a))] = 1.0
        kernel /= kernel.sum()
        return _with_image(sample, to_float(cv2.filter2D(to_uint8(sample.image), -1, kernel)))


class GaussianBlur(Transform):
    """``cv2.GaussianBlur`` with odd ``k ~ blur_limit`` and ``sigma ~ U(sigma_limit)``."""

    def __init__(self, prob: float = 0.0, blur_limit: Sequence[int] = (3, 7),
                 sigma_limit: Sequence[float] = (0.1, 2.0)) -> None:
        super().__init__(prob)
        self.limit = blur_limit
        self.sigma = value_range(sigma_limit, "sigma_limit")

    def __call__(self, sample: Sample, rng: np.random.Generator, pool=None) -> Sample:
        k = odd_kernel(rng, self.limit, 1)
        sigma = rng.uniform(*self.sigma)
        return _with_image(sample, to_float(cv2.GaussianBlur(to_uint8(sample.image), (k, k), sigma)))


class _FactorTransform(Transform):
    def __init__(self, prob: float = 0.0, factor_range: Sequence[float] = (0.8, 1.2)) -> None:
        super().__init__(prob)
        self.range = value_range(factor_range, "factor_range")


class RandomBrightness(_FactorTransform):
    """``img * f``, ``f ~ U(factor_range)``."""

    def __call__(self, sample: Sample, rng: np.random.Generator, pool=None) -> Sample:
        return _with_image(sample, sample.image * rng.uniform(*self.range))


class RandomContrast(_FactorTransform):
    """``(img - mean_c) * f + mean_c`` with per-channel means."""

    def __call__(self, sample: Sample, rng: np.random.Generator, pool=None) -> Sample:
        return _with_image(sample, _contrast(sample.image, rng.uniform(*self.range)))


class RandomSaturation(_FactorTransform):
    """``(img - gray) * f + gray`` with gray the unweighted channel mean per pixel."""

    def __call__(self, sample: Sample, rng: np.random.Generator, pool=None) -> Sample:
        gray = sample.image.mean(axis=2, keepdims=True)
        return _with_image(sample, (sample.image - gray) * rng.uniform(*self.range) + gray)


class CLAHE(Transform):
    """OpenCV CLAHE on the L channel of LAB."""

    def __init__(self, prob: float = 0.0, clip_limit: float = 2.0, tile_grid_size: Sequence[int] = (8, 8)) -> None:
        super().__init__(prob)
        self.clip_limit = float(clip_limit)
        t = [int(tile_grid_size)] * 2 if isinstance(tile_grid_size, (int, float)) else [int(v) for v in tile_grid_size]
        self.tiles = (t[0], t[1])

    def __call__(self, sample: Sample, rng: np.random.Generator, pool=None) -> Sample:
        lab = cv2.cvtColor(to_uint8(sample.image), cv2.COLOR_RGB2LAB)
        clahe = cv2.createCLAHE(clipLimit=self.clip_limit, tileGridSize=self.tiles)
        lab[:, :, 0] = clahe.apply(np.ascontiguousarray(lab[:, :, 0]))
        return _with_image(sample, to_float(cv2.cvtColor(lab, cv2.COLOR_LAB2RGB)))


class ToGray(Transform):
    """Luma (``cv2.COLOR_RGB2GRAY``) copied into the three channels."""

    def __call__(self, sample: Sample, rng: np.random.Generator, pool=None) -> Sample:
        gray = cv2.cvtColor(to_uint8(sample.image), cv2.COLOR_RGB2GRAY)
        return _with_image(sample, to_float(np.repeat(gray[:, :, None], 3, axis=2)))


class GaussNoise(Transform):
    """``img += N(mean, sigma) / 255`` per pixel and channel, ``sigma ~ U(var_limit)``
    (as in the seed, ``var_limit`` is the standard deviation range, in 0..255 units)."""

    def __init__(self, prob: float = 0.0, mean: float = 0.0, var_limit: Sequence[float] = (10.0, 50.0)) -> None:
        super().__init__(prob)
        self.mean = float(mean)
        self.sigma = value_range(var_limit, "var_limit")

    def __call__(self, sample: Sample, rng: np.random.Generator, pool=None) -> Sample:
        sigma = rng.uniform(*self.sigma)
        noise = rng.normal(self.mean, sigma, sample.image.shape).astype(np.float32) / 255.0
        return _with_image(sample, sample.image + noise)


class ImageCompression(Transform):
    """JPEG round trip at quality ``int(U(quality_range))``."""

    def __init__(self, prob: float = 0.0, quality_range: Sequence[float] = (40, 90)) -> None:
        super().__init__(prob)
        self.quality = value_range(quality_range, "quality_range")

    def __call__(self, sample: Sample, rng: np.random.Generator, pool=None) -> Sample:
        q = int(rng.uniform(*self.quality))
        ok, buf = cv2.imencode(".jpg", to_uint8(sample.image), [cv2.IMWRITE_JPEG_QUALITY, q])
        if not ok:
            return sample
        return _with_image(sample, to_float(cv2.imdecode(buf, cv2.IMREAD_COLOR)))


class ISONoise(Transform):
    """``img += N(0, std)[H,W,3] + N(0, shift)[1,1,3]``, ``std ~ U(intensity)``,
    ``shift ~ U(color_shift)`` (float units)."""

    def __init__(self, prob: float = 0.0, intensity: Sequence[float] = (0.05, 0.15),
                 color_shift: Sequence[float] = (0.01, 0.05)) -> None:
        super().__init__(prob)
        self.intensity = value_range(intensity, "intensity")
        self.color_shift = value_range(color_shift, "color_shift")

    def __call__(self, sample: Sample, rng: np.random.Generator, pool=None) -> Sample:
        std, shift = rng.uniform(*self.intensity), rng.uniform(*self.color_shift)
        noise = rng.normal(0.0, std, sample.image.shape) + rng.normal(0.0, shift, (1, 1, 3))
        return _with_image(sample, sample.image + noise.astype(np.float32))


class RandomRain(Transform):
    """``int(W*H*U(density))`` slanted lines of colour 200/255 (lengths, widths, slants in px)."""

    def __init__(self, prob: float = 0.0, density: Sequence[float] = (0.002, 0.006),
                 drop_length: Sequence[int] = (15, 30), drop_width_range: Sequence[int] = (1, 2),
                 slant_range: Sequence[int] = (-10, 10)) -> None:
        super().__init__(prob)
        self.density = value_range(density, "density")
        self.length = value_range(drop_length, "drop_length")
        self.width = value_range(drop_width_range, "drop_width_range")
        self.slant = value_range(slant_range, "slant_range")

    def __call__(self, sample: Sample, rng: np.random.Generator, pool=None) -> Sample:
        H, W = sample.image.shape[:2]
        img = np.ascontiguousarray(sample.image.copy())
        colour = (200 / 255.0,) * 3
        for _ in range(int(W * H * rng.uniform(*self.density))):
            x, y = randint(rng, 0, W - 1), randint(rng, 0, H - 1)
            length = randint(rng, int(self.length[0]), int(self.length[1]))
            slant = randint(rng, int(self.slant[0]), int(self.slant[1]))
            thick = max(1, randint(rng, int(self.width[0]), int(self.width[1])))
            cv2.line(img, (x, y), (x + slant, y + length), colour, thick)
        return _with_image(sample, img)


class RandomFog(Transform):
    """``img * (1 - a) + haze * a`` with ``a ~ U(fog_coef)``, ``haze ~ U(0.7, 1.0)``."""

    def __init__(self, prob: float = 0.0, fog_coef: Sequence[float] = (0.3, 0.6)) -> None:
        super().__init__(prob)
        self.fog = value_range(fog_coef, "fog_coef")

    def __call__(self, sample: Sample, rng: np.random.Generator, pool=None) -> Sample:
        a, haze = rng.uniform(*self.fog), rng.uniform(0.7, 1.0)
        return _with_image(sample, sample.image * (1.0 - a) + haze * a)


class RandomSunFlare(Transform):
    """Adds a white disc (radius ``randint(src_radius_range)`` px, random centre) times
    ``U(src_intensity)``."""

    def __init__(self, prob: float = 0.0, src_radius_range: Sequence[int] = (50, 150),
                 src_intensity: Sequence[float] = (0.6, 1.0)) -> None:
        super().__init__(prob)
        self.radius = value_range(src_radius_range, "src_radius_range")
        self.intensity = value_range(src_intensity, "src_intensity")

    def __call__(self, sample: Sample, rng: np.random.Generator, pool=None) -> Sample:
        H, W = sample.image.shape[:2]
        r = randint(rng, int(self.radius[0]), int(self.radius[1]))
        cx, cy = randint(rng, 0, W - 1), randint(rng, 0, H - 1)
        disc = np.zeros((H, W), np.float32)
        cv2.circle(disc, (cx, cy), max(1, r), 1.0, -1)
        gain = rng.uniform(*self.intensity)
        return _with_image(sample, sample.image + disc[:, :, None] * gain)
