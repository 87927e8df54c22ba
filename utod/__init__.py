"""utod: train, evaluate and export UltraTinyOD detectors in tf-keras.

Importing ``utod`` is cheap: it never imports TensorFlow. Plugin authors need only
``utod.hookimpl``::

    from utod import hookimpl

    @hookimpl
    def register_iou_losses(register):
        register("diou", DIoU)
"""

from __future__ import annotations

import os

import pluggy

__version__ = "0.1.0"

PROJECT_NAME = "utod"
ENTRY_POINT_GROUP = "utod"

hookimpl = pluggy.HookimplMarker(PROJECT_NAME)

# TensorFlow's C++ logs are noise for users; keep them quiet unless the user asked otherwise.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# The Python API (utod/api.py), imported on first use so that `import utod` stays light.
_API = ("train", "load", "evaluate", "export", "Model", "Detections", "TrainResult")


def __getattr__(name: str):
    if name == "train":  # the utod.train package is callable: utod.train(...) runs utod.api.train
        import importlib

        return importlib.import_module("utod.train")
    if name in _API:
        from utod import api

        return getattr(api, name)
    raise AttributeError(f"module 'utod' has no attribute {name!r}")


__all__ = ["__version__", "hookimpl", "PROJECT_NAME", "ENTRY_POINT_GROUP", *_API]
