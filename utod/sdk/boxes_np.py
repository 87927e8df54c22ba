"""NumPy box helpers for augmentation plugins (no TensorFlow).

Boxes are float32 ``[N, 4]``: ``cxcywh`` normalised ``(cx, cy, w, h)``, ``xyxy`` normalised
corners. ``clip_and_filter`` is what the built-in geometric augmentations use after moving
boxes: cut at the image border (in corner space) and drop boxes left smaller than
``min_area``. ``to_uint8`` / ``to_float`` convert images the way utod's OpenCV-based ops do
(truncation to uint8, ``/255`` back).
"""

from __future__ import annotations

from utod.data.boxes_np import (
    EMPTY_BOXES,
    EMPTY_LABELS,
    clip_and_filter,
    clip_xyxy,
    cxcywh_to_xyxy,
    filter_min_area,
    pairwise_iou,
    to_float,
    to_uint8,
    xyxy_to_cxcywh,
)

__all__ = [
    "EMPTY_BOXES",
    "EMPTY_LABELS",
    "cxcywh_to_xyxy",
    "xyxy_to_cxcywh",
    "clip_xyxy",
    "clip_and_filter",
    "filter_min_area",
    "pairwise_iou",
    "to_uint8",
    "to_float",
]
