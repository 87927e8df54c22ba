"""Small shared types that components receive or return. Importing this module never
imports TensorFlow (tensors are only annotated)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

KINDS: tuple[str, ...] = ("assigner", "iou_loss", "cls_loss", "head", "resize", "augmentation",
                          "dataset_format")
"""Every component kind, in display order."""

HOOK_FOR_KIND: dict[str, str] = {
    "assigner": "register_assigners",
    "iou_loss": "register_iou_losses",
    "cls_loss": "register_cls_losses",
    "head": "register_heads",
    "resize": "register_resize_backends",
    "augmentation": "register_augmentations",
    "dataset_format": "register_dataset_formats",
}


class Assignment(NamedTuple):
    """What an assigner returns (all float32, no gradient).

    pos_mask:    [B, A, H, W]      1.0 at positive locations.
    box_targets: [B, A, H, W, 4]   assigned GT box, normalised cxcywh.
    cls_targets: [B, A, H, W, C]   class targets in [0, 1], zeros at negatives.
    """

    pos_mask: Any
    box_targets: Any
    cls_targets: Any


@dataclass(frozen=True)
class HeadContext:
    """What every head factory receives besides its own options."""

    num_anchors: int
    num_classes: int
    in_channels: int
    activation: str = "relu"
    use_batchnorm: bool = False


@dataclass
class Sample:
    """One training sample at the training size, as augmentations see it.

    image:  float32 [H, W, 3] in [0, 1], RGB.
    boxes:  float32 [N, 4] normalised (cx, cy, w, h).
    labels: int32 [N] raw class ids (the class subset is applied after augmentation).
    """

    image: np.ndarray
    boxes: np.ndarray
    labels: np.ndarray

    @classmethod
    def empty_like(cls, image: np.ndarray) -> Sample:
        return cls(image, np.zeros((0, 4), np.float32), np.zeros((0,), np.int32))
