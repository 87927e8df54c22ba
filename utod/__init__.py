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

__all__ = ["__version__", "hookimpl", "PROJECT_NAME", "ENTRY_POINT_GROUP"]
