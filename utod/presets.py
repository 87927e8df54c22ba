"""Named groups of training settings: ``utod train --preset NAME``.

A preset is a mapping of TrainConfig field names to values. It sits between the defaults
and everything the user says: defaults < preset < ``--config`` YAML < flags on the command
line, so any explicit flag overrides the preset's value. Values that name a file bundled
with utod (an augmentation YAML) are written as ``"utod:data/NAME.yaml"`` and resolved to
the installed path by :func:`preset_settings`. docs/recipe.md lists every preset, why its
values were chosen and what it measured. No TensorFlow (and no other utod module) here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

_PACKAGE_PREFIX = "utod:"

PRESETS: dict[str, dict[str, Any]] = {
    # The seed's (UHD-keras) README training command, without its dataset/run-name flags.
    "seed": {
        "img_size": "64x64", "batch_size": 64, "epochs": 300, "lr": 0.0003, "weight_decay": 0.0001,
        "cnn_width": 64, "auto_anchors": True, "num_anchors": 8, "iou_loss": "ciou", "conf_thresh": 0.15,
        "use_ema": True, "ema_decay": 0.9999, "grad_clip_norm": 10.0, "use_batchnorm": True,
        "utod_residual": True, "use_improved_head": True, "use_iou_aware_head": True, "use_head_ese": True,
        "activation": "relu", "utod_large_obj_branch": True, "utod_large_obj_depth": 2,
        "utod_large_obj_ch_scale": 1.25, "resize_mode": "opencv_inter_nearest",
    },
    # UHD's current single-class UltraTinyOD recipe (README "small, large-object branch"):
    # W=32, 300 epochs, AdamW lr 0.03, no LR warm-up, cosine to 0, EMA 0.9999, clip 5,
    # class-less IoU-aware head, obj/quality weights 16, SPPF conv scaling. UHD pins 8 anchors
    # measured on its own data set; here they are computed with its sml_fixed algorithm.
    "uhd": {
        "img_size": "64x64", "batch_size": 64, "epochs": 300, "lr": 0.03, "weight_decay": 0.0001,
        "lr_schedule": "cosine", "warmup_epochs": 0.0, "min_lr_ratio": 0.0, "grad_clip_norm": 5.0,
        "cnn_width": 32, "auto_anchors": True, "auto_anchors_alg": "sml_fixed", "num_anchors": 8,
        "iou_loss": "ciou", "conf_thresh": 0.15, "use_ema": True, "ema_decay": 0.9999, "use_batchnorm": True,
        "utod_conv": "dw", "utod_residual": True, "utod_sppf_scale": "conv", "use_improved_head": True,
        "use_iou_aware_head": True, "activation": "relu", "resize_mode": "opencv_inter_nearest",
        "loss_weight_box": 1.0, "loss_weight_obj": 16.0, "loss_weight_quality": 16.0, "obj_loss": "bce",
        "obj_target": "iou", "disable_cls": True, "assigner": "legacy", "utod_large_obj_branch": True,
        "utod_large_obj_depth": 1, "utod_large_obj_ch_scale": 1.25,
    },
    # utod's recipe for a user's own small data set (a few hundred images), chosen by
    # measurement (bench/bench_accuracy.py, docs/recipe.md).
    "small-data": {
        "img_size": "64x64", "batch_size": 16, "epochs": 150, "lr": 0.003, "weight_decay": 0.0001,
        "lr_schedule": "cosine", "warmup_epochs": 3.0, "min_lr_ratio": 0.01, "grad_clip_norm": 10.0,
        "cnn_width": 32, "auto_anchors": True, "auto_anchors_alg": "kmeans", "num_anchors": 8,
        "iou_loss": "ciou", "assigner": "simota", "use_ema": True, "ema_window": 0.05,
        "use_batchnorm": True, "utod_residual": True, "use_improved_head": True, "use_iou_aware_head": True,
        "activation": "relu", "resize_mode": "opencv_inter_nearest",
        "aug_config": "utod:data/aug_small_data.yaml",
    },
}

PRESET_NAMES: tuple[str, ...] = tuple(PRESETS)

PRESET_SUMMARIES: dict[str, str] = {
    "seed": "the seed's README command (W=64, lr 3e-4, EMA 0.9999, 300 epochs)",
    "uhd": "UHD's current single-class recipe (W=32, lr 0.03, class-less IoU-aware head, obj/quality x16)",
    "small-data": "utod's measured recipe for a few hundred images (W=32, SimOTA, EMA over 5% of the run, "
                  "stronger augmentation)",
}


def preset_settings(name: str) -> dict[str, Any]:
    """The TrainConfig overrides of preset ``name`` with bundled file names resolved.

    Raises ``KeyError`` for an unknown name (the CLI restricts the choices)."""
    base = Path(__file__).resolve().parent
    out: dict[str, Any] = {}
    for key, value in PRESETS[name].items():
        if isinstance(value, str) and value.startswith(_PACKAGE_PREFIX):
            value = str(base / value[len(_PACKAGE_PREFIX):])
        out[key] = value
    return out


def describe_presets() -> str:
    """One block of text per preset (``utod train --help`` and docs)."""
    lines = []
    for name, settings in PRESETS.items():
        flags = " ".join(_flag(k, v) for k, v in settings.items())
        lines.append(f"{name}: {PRESET_SUMMARIES[name]}.\n    {flags}")
    return "\n".join(lines)


def _flag(key: str, value: Any) -> str:
    flag = "--" + key.replace("_", "-")
    if value is True:
        return flag
    if value is False:
        return f"--no-{key.replace('_', '-')}"
    if isinstance(value, str) and value.startswith(_PACKAGE_PREFIX):
        value = "<utod>/" + value[len(_PACKAGE_PREFIX):]
    return f"{flag} {value}"
