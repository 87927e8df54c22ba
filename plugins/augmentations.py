"""Built-in augmentations (registration only; the code is in utod_plugins.impl.augment_*).

The 27 op names of the seed's aug.yaml (docs/pipeline.md §3.4), with their defaults; ``prob`` defaults
follow the seed (a mapping without ``prob``): 1.0 for MixUp/Mosaic, 0.5 for
RandomPhotometricDistort, 0.3 for CopyPaste, 0 otherwise. No TensorFlow is imported.
"""

from utod import hookimpl

_G = "utod_plugins.impl.augment_geometric"
_M = "utod_plugins.impl.augment_multi"
_C = "utod_plugins.impl.augment_color"

# name: (factory, summary, params)
BUILTIN_AUGMENTATIONS = {
    "HorizontalFlip": (f"{_G}:HorizontalFlip", "mirror left-right (cx = 1 - cx), optional class_swap_map",
                       {"prob": 0.0, "class_swap_map": {}}),
    "VerticalFlip": (f"{_G}:VerticalFlip", "mirror top-bottom (cy = 1 - cy)", {"prob": 0.0}),
    "RandomScale": (f"{_G}:RandomScale", "centred zoom by s ~ U(scale_range), gray canvas when s < 1",
                    {"prob": 0.0, "scale_range": [1.0, 1.0], "keep_aspect_ratio": True}),
    "Translation": (f"{_G}:Translation", "shift by up to +-translate of the size (whole pixels)",
                    {"prob": 0.0, "translate": 0.0, "fill": [114, 114, 114]}),
    "RandomCrop": (f"{_G}:RandomCrop", "random crop of side fraction ratio, resized back",
                   {"prob": 0.0, "ratio": 0.9}),
    "RandomResizedCrop": (f"{_G}:RandomResizedCrop", "random area/aspect crop resized back (box visibility filter)",
                          {"prob": 0.0, "scale": [0.6, 1.0], "ratio": [0.75, 1.33], "min_visibility": 0.25}),
    "RemoveOutliers": (f"{_G}:RemoveOutliers", "always: drop boxes with normalised area < min_area",
                       {"min_area": 0.0}),
    "MixUp": (f"{_M}:MixUp", "blend with a partner image (lambda 0.5), boxes of both kept", {"prob": 1.0}),
    "Mosaic": (f"{_M}:Mosaic", "2x2 mosaic with three partners, random H x W crop", {"prob": 1.0}),
    "CopyPaste": (f"{_M}:CopyPaste", "paste scaled box patches of partner images",
                  {"prob": 0.3, "sample_num": 1, "max_paste_objects": 5, "scale_jitter": [0.8, 1.2]}),
    "RandomHSV": (f"{_C}:RandomHSV", "HSV gains 1 + U(-1,1) * gain",
                  {"prob": 0.0, "hue_gain": 0.0, "saturation_gain": 0.0, "value_gain": 0.0}),
    "RandomPhotometricDistort": (f"{_C}:RandomPhotometricDistort",
                                 "brightness, contrast and HSV jitter in random order (the seed's)", {"prob": 0.5}),
    "Blur": (f"{_C}:Blur", "box blur, odd kernel ~ blur_limit", {"prob": 0.0, "blur_limit": [3, 7]}),
    "MedianBlur": (f"{_C}:MedianBlur", "median blur, odd kernel ~ blur_limit", {"prob": 0.0, "blur_limit": [3, 7]}),
    "MotionBlur": (f"{_C}:MotionBlur", "line-kernel motion blur", {"prob": 0.0, "blur_limit": [5, 15]}),
    "GaussianBlur": (f"{_C}:GaussianBlur", "Gaussian blur",
                     {"prob": 0.0, "blur_limit": [3, 7], "sigma_limit": [0.1, 2.0]}),
    "RandomBrightness": (f"{_C}:RandomBrightness", "img * U(factor_range)", {"prob": 0.0, "factor_range": [0.8, 1.2]}),
    "RandomContrast": (f"{_C}:RandomContrast", "per-channel-mean contrast", {"prob": 0.0, "factor_range": [0.8, 1.2]}),
    "RandomSaturation": (f"{_C}:RandomSaturation", "blend with the gray image",
                         {"prob": 0.0, "factor_range": [0.8, 1.2]}),
    "CLAHE": (f"{_C}:CLAHE", "OpenCV CLAHE on LAB lightness",
              {"prob": 0.0, "clip_limit": 2.0, "tile_grid_size": [8, 8]}),
    "ToGray": (f"{_C}:ToGray", "grayscale in all three channels", {"prob": 0.0}),
    "GaussNoise": (f"{_C}:GaussNoise", "additive Gaussian noise (sigma in 0..255 units)",
                   {"prob": 0.0, "mean": 0.0, "var_limit": [10.0, 50.0]}),
    "ImageCompression": (f"{_C}:ImageCompression", "JPEG round trip", {"prob": 0.0, "quality_range": [40, 90]}),
    "ISONoise": (f"{_C}:ISONoise", "sensor-like noise plus a colour shift",
                 {"prob": 0.0, "intensity": [0.05, 0.15], "color_shift": [0.01, 0.05]}),
    "RandomRain": (f"{_C}:RandomRain", "rain streaks",
                   {"prob": 0.0, "density": [0.002, 0.006], "drop_length": [15, 30], "drop_width_range": [1, 2],
                    "slant_range": [-10, 10]}),
    "RandomFog": (f"{_C}:RandomFog", "uniform haze", {"prob": 0.0, "fog_coef": [0.3, 0.6]}),
    "RandomSunFlare": (f"{_C}:RandomSunFlare", "bright disc",
                       {"prob": 0.0, "src_radius_range": [50, 150], "src_intensity": [0.6, 1.0]}),
}


@hookimpl
def register_augmentations(register):
    for name, (factory, summary, params) in BUILTIN_AUGMENTATIONS.items():
        register(name, factory, summary=summary, params=params)
