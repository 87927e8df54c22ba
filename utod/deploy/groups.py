"""The raw head split into groups (box, obj, quality, cls), each its own output tensor.

A single concatenated output has one int8 scale for box offsets, objectness, quality and
class logits alike (TFLite's CONCATENATION needs equal scales on every input), so the
group with the smallest range loses most. With one tensor per group each gets its own
scale and zero point (UHD's "noconcat" export).

Group layouts, NHWC, anchor-major (channel ``a * k + j`` is anchor a's j-th value):
``box`` [B, Hg, Wg, 4A] (tx, ty, tw, th), ``obj`` [B, Hg, Wg, A], ``quality`` [B, Hg, Wg, A]
(only with a quality branch), ``cls`` [B, Hg, Wg, A*C] (only with classes). Concatenating
them per anchor gives back the raw map [B, Hg, Wg, A*(5+Q+C)].
"""

from __future__ import annotations

from typing import Any

import numpy as np

GROUP_ORDER = ("box", "obj", "quality", "cls")


def group_widths(has_quality: bool, num_classes: int) -> dict[str, int]:
    """Values per anchor of each group the model has, in raw-map order."""
    widths = {"box": 4, "obj": 1}
    if has_quality:
        widths["quality"] = 1
    if num_classes > 0:
        widths["cls"] = int(num_classes)
    return widths


def groups_from_raw(raw: Any, num_anchors: int, has_quality: bool, num_classes: int) -> dict[str, Any]:
    """tf raw [B, Hg, Wg, A*D] -> the group tensors (fallback for heads without
    ``call_groups``; such groups still share the raw map's int8 scale)."""
    from utod._keras import tf

    widths = group_widths(has_quality, num_classes)
    d = sum(widths.values())
    h, w = raw.shape[1], raw.shape[2]
    per_anchor = tf.reshape(raw, [-1, h, w, num_anchors, d])
    out, start = {}, 0
    for name, k in widths.items():
        out[name] = tf.reshape(per_anchor[..., start:start + k], [-1, h, w, num_anchors * k])
        start += k
    return out


def model_groups(model: Any, images: Any) -> dict[str, Any]:
    """The group tensors of a Keras ``UltraTinyOD`` on ``images`` (inference mode): the head's
    own ``call_groups`` when it has one (separate tensors before any concat), else sliced
    from the raw map."""
    from utod._keras import tf

    head = model.head
    if hasattr(head, "call_groups"):
        features = model.backbone(tf.cast(images, tf.float32), training=False)
        return dict(head.call_groups(features, training=False))
    raw = model(images, training=False)
    return groups_from_raw(raw, model.num_anchors, model.has_quality, model.num_classes)


def merge_groups(groups: dict[str, np.ndarray], num_anchors: int, has_quality: bool, num_classes: int,
                 nchw: bool = False) -> np.ndarray:
    """Group arrays (NHWC, or NCHW with ``nchw``) -> the raw NHWC map [B, Hg, Wg, A*D]."""
    widths = group_widths(has_quality, num_classes)
    parts = []
    for name, k in widths.items():
        g = np.asarray(groups[name], np.float32)
        if nchw:
            g = np.transpose(g, (0, 2, 3, 1))
        b, h, w, _ = g.shape
        parts.append(g.reshape(b, h, w, num_anchors, k))
    raw = np.concatenate(parts, axis=-1)
    return raw.reshape(raw.shape[0], raw.shape[1], raw.shape[2], -1)
