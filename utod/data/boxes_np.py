"""NumPy box helpers shared by the label reader, the augmentations and the pipeline.

All boxes are float32 ``[N, 4]``. ``cxcywh`` means normalised ``(cx, cy, w, h)`` and ``xyxy``
normalised corners ``(x1, y1, x2, y2)``, both relative to the image (0..1). No TensorFlow here.
"""

from __future__ import annotations

import numpy as np

EMPTY_BOXES = np.zeros((0, 4), np.float32)
EMPTY_LABELS = np.zeros((0,), np.int32)


def cxcywh_to_xyxy(boxes: np.ndarray) -> np.ndarray:
    """``[N, 4]`` cxcywh -> ``[N, 4]`` xyxy (float32)."""
    b = np.asarray(boxes, np.float32).reshape(-1, 4)
    half = b[:, 2:4] * 0.5
    return np.concatenate([b[:, 0:2] - half, b[:, 0:2] + half], axis=1).astype(np.float32)


def xyxy_to_cxcywh(boxes: np.ndarray) -> np.ndarray:
    """``[N, 4]`` xyxy -> ``[N, 4]`` cxcywh (float32)."""
    b = np.asarray(boxes, np.float32).reshape(-1, 4)
    return np.concatenate([(b[:, 0:2] + b[:, 2:4]) * 0.5, b[:, 2:4] - b[:, 0:2]], axis=1).astype(np.float32)


def clip_xyxy(boxes_xyxy: np.ndarray) -> np.ndarray:
    """Clamp xyxy corners to the image ``[0, 1]`` (this cuts boxes at the border)."""
    return np.clip(np.asarray(boxes_xyxy, np.float32).reshape(-1, 4), 0.0, 1.0)


def clip_and_filter(boxes: np.ndarray, labels: np.ndarray, min_area: float = 1e-6) -> tuple[np.ndarray, np.ndarray]:
    """Cut cxcywh boxes to the image in xyxy space, then drop those whose clipped area is
    below ``min_area`` (normalised area units). Returns ``(boxes [K,4] cxcywh, labels [K])``.

    This is the corrected form of the seed's clip: clamping centres in cxcywh (seed Mosaic /
    CopyPaste) keeps boxes that lie entirely outside the crop; clipping corners does not.
    """
    if len(boxes) == 0:
        return EMPTY_BOXES.copy(), EMPTY_LABELS.copy()
    xyxy = clip_xyxy(cxcywh_to_xyxy(boxes))
    area = np.maximum(xyxy[:, 2] - xyxy[:, 0], 0) * np.maximum(xyxy[:, 3] - xyxy[:, 1], 0)
    keep = area >= min_area
    if min_area <= 0:
        keep &= area > 0
    return xyxy_to_cxcywh(xyxy[keep]), np.asarray(labels, np.int32).reshape(-1)[keep]


def filter_min_area(boxes: np.ndarray, labels: np.ndarray, min_area: float) -> tuple[np.ndarray, np.ndarray]:
    """Drop cxcywh boxes whose area ``max(w,0) * max(h,0)`` is below ``min_area`` (seed's
    ``filter``: the area is taken as is, not clipped to the image)."""
    b = np.asarray(boxes, np.float32).reshape(-1, 4)
    area = np.maximum(b[:, 2], 0) * np.maximum(b[:, 3], 0)
    keep = area >= min_area
    return b[keep], np.asarray(labels, np.int32).reshape(-1)[keep]


def to_uint8(image: np.ndarray) -> np.ndarray:
    """float [0,1] -> uint8 by truncation (``(img*255).astype(uint8)``, as the seed does)."""
    return (np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)


def to_float(image: np.ndarray) -> np.ndarray:
    """uint8 -> float32 in [0, 1]."""
    return image.astype(np.float32) * np.float32(1.0 / 255.0)


def pairwise_iou(a: np.ndarray, b: np.ndarray, fmt: str = "cxcywh") -> np.ndarray:
    """IoU matrix ``[len(a), len(b)]`` of boxes ``[N, 4]`` in ``fmt``: ``cxcywh``, ``xyxy`` or
    ``xywh`` (top-left corner + size, COCO's). As in COCO: no eps, a zero union gives 0.
    Computed in the inputs' float dtype (float64 for lists)."""
    a = np.asarray(a, dtype=np.result_type(np.asarray(a).dtype, np.float32)).reshape(-1, 4)
    b = np.asarray(b, dtype=a.dtype).reshape(-1, 4)
    if fmt == "cxcywh":
        a1, a2 = a[:, :2] - a[:, 2:] / 2, a[:, :2] + a[:, 2:] / 2
        b1, b2 = b[:, :2] - b[:, 2:] / 2, b[:, :2] + b[:, 2:] / 2
        area_a, area_b = a[:, 2] * a[:, 3], b[:, 2] * b[:, 3]
    elif fmt == "xywh":
        a1, a2 = a[:, :2], a[:, :2] + a[:, 2:]
        b1, b2 = b[:, :2], b[:, :2] + b[:, 2:]
        area_a, area_b = a[:, 2] * a[:, 3], b[:, 2] * b[:, 3]
    elif fmt == "xyxy":
        a1, a2, b1, b2 = a[:, :2], a[:, 2:], b[:, :2], b[:, 2:]
        area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
        area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    else:
        raise ValueError(f"unknown box format '{fmt}'; use cxcywh, xyxy or xywh")
    wh = np.clip(np.minimum(a2[:, None], b2[None]) - np.maximum(a1[:, None], b1[None]), 0, None)
    inter = wh[..., 0] * wh[..., 1]
    union = area_a[:, None] + area_b[None] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)
