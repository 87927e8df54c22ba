"""Raw-map layout and box decoding shared by the loss, inference and export.

Raw map (model output): float32 [B, Hg, Wg, A * D], NHWC, anchor-major, with per-anchor
channels ``tx, ty, tw, th, obj, [quality], cls_0..cls_{C-1}`` (D = 5 + Q + C).

Box geometry (format conversions, the IoU family) lives in :mod:`utod.sdk.boxes`; the
conversions are re-exported here for the core's convenience.
"""

from __future__ import annotations

from typing import NamedTuple

from utod._keras import tf
from utod.sdk.boxes import cxcywh_to_xyxy, xyxy_to_cxcywh

__all__ = ["RawParts", "channels_per_anchor", "split_raw", "grid_offsets", "decode_boxes", "cxcywh_to_xyxy",
           "xyxy_to_cxcywh"]


class RawParts(NamedTuple):
    """The raw map split per anchor, each [B, A, Hg, Wg, ...] float32 logits."""

    box: tf.Tensor  # [B, A, H, W, 4] tx, ty, tw, th
    obj: tf.Tensor  # [B, A, H, W]
    quality: tf.Tensor | None  # [B, A, H, W] or None when the head has no quality branch
    cls: tf.Tensor  # [B, A, H, W, C] (C may be 0)


def channels_per_anchor(num_classes: int, has_quality: bool) -> int:
    return 5 + int(has_quality) + num_classes


def split_raw(raw: tf.Tensor, num_anchors: int, num_classes: int, has_quality: bool) -> RawParts:
    """Split the NHWC raw map [B, H, W, A*D] into per-anchor parts [B, A, H, W, ...]."""
    d = channels_per_anchor(num_classes, has_quality)
    shape = tf.shape(raw)
    x = tf.reshape(raw, [shape[0], shape[1], shape[2], num_anchors, d])
    x = tf.transpose(x, [0, 3, 1, 2, 4])  # [B, A, H, W, D]
    # one split (its gradient is one concat) instead of strided slices, each of whose gradients
    # writes a zero tensor of the full map: ~1/3 of the loss's backward time on CPU
    q = 1 if has_quality else 0
    pieces = tf.split(x, [4, 1, q, num_classes], axis=-1)
    return RawParts(
        box=pieces[0],
        obj=pieces[1][..., 0],
        quality=pieces[2][..., 0] if has_quality else None,
        cls=pieces[3],
    )


def grid_offsets(height, width, dtype=tf.float32) -> tuple[tf.Tensor, tf.Tensor]:
    """Column and row index grids, each [H, W]."""
    cols = tf.cast(tf.range(width), dtype)
    rows = tf.cast(tf.range(height), dtype)
    gx, gy = tf.meshgrid(cols, rows)  # [H, W]
    return gx, gy


def decode_boxes(box_logits: tf.Tensor, anchors: tf.Tensor) -> tf.Tensor:
    """Decode tx, ty, tw, th [B, A, H, W, 4] to normalised cxcywh [B, A, H, W, 4].

    ``anchors`` float32 [A, 2] are the effective anchors (anchors * wh_scale), normalised.
    cx = (sigmoid(tx) + col) / W, cy = (sigmoid(ty) + row) / H,
    w = anchor_w * softplus(tw), h = anchor_h * softplus(th) (no clamp).
    """
    shape = tf.shape(box_logits)
    h, w = shape[2], shape[3]
    gx, gy = grid_offsets(h, w, box_logits.dtype)
    wf = tf.cast(w, box_logits.dtype)
    hf = tf.cast(h, box_logits.dtype)
    tx, ty, tw, th = tf.unstack(box_logits, 4, axis=-1)
    cx = (tf.sigmoid(tx) + gx) / wf
    cy = (tf.sigmoid(ty) + gy) / hf
    aw, ah = tf.unstack(tf.cast(anchors, box_logits.dtype), 2, axis=-1)
    bw = aw[None, :, None, None] * tf.nn.softplus(tw)
    bh = ah[None, :, None, None] * tf.nn.softplus(th)
    return tf.stack([cx, cy, bw, bh], axis=-1)

