"""Small shared types that components receive or return. Importing this module never
imports TensorFlow (tensors are only annotated)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol, runtime_checkable

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


# ---------------------------------------------------------------------------- the contracts
# What the object a factory builds must provide, per kind (``typing.Protocol``: structural,
# nothing to inherit). The hook docstrings in ``utod.hookspecs`` explain the semantics; the
# contract test kit ``utod.sdk.testing`` checks shapes, dtypes, tf.function and threads.


@runtime_checkable
class Assigner(Protocol):
    """``assigner(pred_boxes, cls_logits, obj_logits, gt_boxes, gt_labels, gt_mask, anchors,
    num_classes, has_quality) -> Assignment``, inside ``tf.function``, fixed shapes:
    pred_boxes [B, A, H, W, 4], cls_logits [B, A, H, W, C], obj_logits [B, A, H, W],
    gt_boxes [B, M, 4], gt_labels int32 [B, M], gt_mask bool [B, M], anchors [A, 2]."""

    def __call__(self, pred_boxes: Any, cls_logits: Any, obj_logits: Any, gt_boxes: Any, gt_labels: Any,
                 gt_mask: Any, anchors: Any, num_classes: int, has_quality: bool) -> Assignment: ...


@runtime_checkable
class BoxSimilarity(Protocol):
    """An ``iou_loss``: ``similarity(pred [..., 4], target [..., 4]) -> [...]`` (cxcywh; 1 for
    identical boxes), differentiable w.r.t. ``pred``; the box loss is ``1 - similarity``."""

    def __call__(self, pred: Any, target: Any) -> Any: ...


@runtime_checkable
class ClsLoss(Protocol):
    """A ``cls_loss``: ``loss(cls_logits [B, A, H, W, C], cls_targets [B, A, H, W, C],
    pos_mask [B, A, H, W]) -> float32 scalar``, already normalised."""

    def __call__(self, cls_logits: Any, cls_targets: Any, pos_mask: Any) -> Any: ...


@runtime_checkable
class Head(Protocol):
    """A ``head``: a tf-keras Layer built as ``factory(context: HeadContext, **options)``,
    ``features [B, h, w, Cin] -> raw [B, h, w, A * (5 + Q + C)]``, declaring what the core
    needs instead of the core guessing it from the head's options or weight names."""

    has_quality: bool
    """Q = 1: each anchor has a quality (IoU-aware) channel after ``obj``."""
    default_score_mode: str
    """The score used when the user sets none (``obj_quality_cls``, ``quality_cls``, ``obj_cls``)."""

    @property
    def wh_scale(self) -> Any:
        """float32 [A, 2] anchor multiplier (a trainable weight or constant ones)."""

    def __call__(self, features: Any, *args: Any, **kwargs: Any) -> Any: ...

    def get_config(self) -> dict[str, Any]: ...


@runtime_checkable
class ResizeBackend(Protocol):
    """A ``resize`` backend: ``resize(image uint8 [h, w, 3], (H, W)) -> uint8 [H, W, 3]``.
    Called from the data pipeline's worker threads: it must be thread-safe (no shared
    mutable state)."""

    def __call__(self, image: np.ndarray, size: tuple[int, int]) -> np.ndarray: ...


@runtime_checkable
class PartnerPool(Protocol):
    """What multi-image augmentations get as ``pool``: ``draw(rng)`` returns another
    un-augmented Sample of the same size."""

    def draw(self, rng: np.random.Generator) -> Sample: ...


@runtime_checkable
class Augmentation(Protocol):
    """An ``augmentation``: ``transform(sample, rng, pool) -> Sample``, numpy, no TensorFlow.
    Called from the pipeline's worker threads, several samples at once: it must be
    thread-safe (draw only from ``rng``, never mutate ``self`` or the input arrays).
    Optional class attributes: ``samples_needed`` (int), ``scalar_params`` (tuple of
    parameter names a bare YAML number sets), ``always_apply`` (bool)."""

    prob: float

    def __call__(self, sample: Sample, rng: np.random.Generator, pool: PartnerPool | None) -> Sample: ...


@runtime_checkable
class DatasetFormat(Protocol):
    """A ``dataset_format``: a layout reader built as ``factory()`` (see
    ``utod.data.formats.base.DatasetLayout``): ``detect(path) -> bool`` must be cheap and
    never raise for a file or folder in another layout; ``open(path)`` returns the source."""

    name: str
    title: str
    markers: str
    priority: int

    def detect(self, path: Any) -> bool: ...

    def open(self, path: Any) -> Any: ...


PROTOCOL_FOR_KIND: dict[str, type] = {
    "assigner": Assigner,
    "iou_loss": BoxSimilarity,
    "cls_loss": ClsLoss,
    "head": Head,
    "resize": ResizeBackend,
    "augmentation": Augmentation,
    "dataset_format": DatasetFormat,
}
"""Kind -> the Protocol its built objects satisfy."""
