"""The UltraTinyOD network: config, blocks, backbone, detector, post-processing, checkpoints.

Importing ``utod.model`` (and ``utod.model.config`` / ``utod.model.io``) does not import
TensorFlow; the TF-backed names below are loaded on first access.
"""

from __future__ import annotations

import importlib
from typing import Any

from utod.model.config import ModelConfig

_LAZY = {
    "UltraTinyOD": "utod.model.detector",
    "build_model": "utod.model.detector",
    "postprocess": "utod.model.postprocess",
    "predict_model": "utod.model.postprocess",
    "score_mode_for": "utod.model.postprocess",
    "class_scores": "utod.model.postprocess",
    "save_checkpoint": "utod.model.io",
    "load_checkpoint": "utod.model.io",
    "read_checkpoint_meta": "utod.model.io",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'utod.model' has no attribute '{name}'")


__all__ = ["ModelConfig", *_LAZY]
