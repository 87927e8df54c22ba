"""The model's input conversion, as declared by the resize/input plugin of ``--resize-mode``.

A resize backend resizes uint8 RGB images (cached, then augmented in RGB). A backend may also
declare a camera-native input mode with three optional attributes:

* ``channels`` (int, default 3): channels the model's stem receives;
* ``input_mode`` (str, default ``"rgb"``): a name for the conversion (stored in ModelInfo and
  model metadata so deployment code applies the same one);
* ``to_input(image)``: float32 RGB [H, W, 3] in [0, 1] (after augmentation) -> float32
  [H, W, channels] in [0, 1].

Training, evaluation, prediction and export all call :func:`to_model_input`, so the same
conversion runs everywhere. numpy only.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def input_channels(backend: Any) -> int:
    return int(getattr(backend, "channels", 3))


def input_mode(backend: Any) -> str:
    return str(getattr(backend, "input_mode", "rgb"))


def to_model_input(backend: Any, image: np.ndarray) -> np.ndarray:
    """float32 RGB [H, W, 3] -> float32 [H, W, C] with the backend's conversion (identity for RGB)."""
    convert = getattr(backend, "to_input", None)
    if convert is None:
        return image
    out = np.asarray(convert(image), np.float32)
    c = input_channels(backend)
    if out.ndim == 2:
        out = out[..., None]
    if out.shape != (*image.shape[:2], c):
        raise ValueError(f"input conversion '{input_mode(backend)}' returned shape {out.shape}, "
                         f"expected {(*image.shape[:2], c)}")
    return out
