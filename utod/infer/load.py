"""Open a model file as a :class:`~utod.infer.detector.Detector`, the backend chosen by suffix."""

from __future__ import annotations

import os
from pathlib import Path

from utod.errors import CheckpointError, ConfigError
from utod.infer.detector import Detector

MODEL_SUFFIXES = (".keras", ".onnx", ".tflite")


def load_detector(path: str | os.PathLike, *, threads: int | None = None, kernels: str = "auto") -> Detector:
    """Open a ``.keras`` checkpoint, ``.onnx`` or ``.tflite`` file as a :class:`Detector`.
    ``kernels``: which kernels run a ``.tflite`` file (utod.infer.tflite_backend; ignored otherwise)."""
    path = str(path)
    if not os.path.exists(path):
        raise CheckpointError(f"{path}: model file not found")
    suffix = Path(path).suffix.lower()
    if suffix == ".onnx":
        from utod.infer.onnx_backend import OnnxDetector

        return OnnxDetector(path, threads=threads)
    if suffix == ".tflite":
        from utod.infer.tflite_backend import TfliteDetector

        return TfliteDetector(path, threads=threads, kernels=kernels)
    if suffix == ".keras" or os.path.isdir(path):
        from utod.infer.keras_backend import KerasDetector
        from utod.model.io import load_checkpoint

        model, meta = load_checkpoint(path)
        return KerasDetector(model, path, meta)
    raise ConfigError(f"{path}: unknown model format '{suffix}' (expected one of {', '.join(MODEL_SUFFIXES)})")
