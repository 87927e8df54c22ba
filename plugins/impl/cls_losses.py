"""Classification losses on sigmoid class logits (docs/loss.md §4.1, §4.2).

Both are called as ``loss = cls_loss(cls_logits, cls_targets, pos_mask)`` with
``cls_logits`` float32 [B, A, H, W, C], ``cls_targets`` float32 [B, A, H, W, C] in [0, 1]
(zeros at negatives) and ``pos_mask`` float32 [B, A, H, W]; they return a float32 scalar.
The composed loss (utod.loss) calls them only when C > 0 and replaces the value by 0 when the
batch has no positive.
"""

from __future__ import annotations

from utod._keras import tf


def _bce(logits: tf.Tensor, targets: tf.Tensor) -> tf.Tensor:
    """Element-wise ``max(x,0) - x*t + log(1 + exp(-|x|))``."""
    return tf.nn.sigmoid_cross_entropy_with_logits(labels=targets, logits=logits)


class BCE:
    """Binary cross-entropy over positive locations: sum over positives and classes / max(1, N_pos).

    Negative locations get no class loss at all (docs/loss.md §4.1).
    """

    def __call__(self, cls_logits: tf.Tensor, cls_targets: tf.Tensor, pos_mask: tf.Tensor) -> tf.Tensor:
        logits = tf.cast(cls_logits, tf.float32)
        targets = tf.cast(cls_targets, tf.float32)
        pos = tf.cast(pos_mask, tf.float32)
        per_location = tf.reduce_sum(_bce(logits, targets), axis=-1)  # [B, A, H, W]
        return tf.reduce_sum(per_location * pos) / tf.maximum(tf.reduce_sum(pos), 1.0)


class VFL:
    """Varifocal loss as in the UltraTinyOD reference (dense mean over every B*A*H*W*C entry).

    ``weight = t^2 + alpha * (1 - t) * sigmoid(x)^gamma`` (``t`` the target, zero at negatives;
    the sigmoid is not detached, so gradient also flows through the weight) and
    ``loss = mean(BCE(x, t) * weight)``. Unlike VFNet, a soft positive ``0 < t < 1`` gets both
    terms. Defaults alpha = 0.75, gamma = 2 reproduce the reference.
    """

    def __init__(self, alpha: float = 0.75, gamma: float = 2.0) -> None:
        self.alpha = float(alpha)
        self.gamma = float(gamma)

    def __call__(self, cls_logits: tf.Tensor, cls_targets: tf.Tensor, pos_mask: tf.Tensor) -> tf.Tensor:
        logits = tf.cast(cls_logits, tf.float32)
        pos = tf.cast(pos_mask, tf.float32)[..., None]
        targets = tf.cast(cls_targets, tf.float32) * pos
        prob = tf.sigmoid(logits)
        weight = tf.square(targets) + self.alpha * (1.0 - targets) * tf.pow(prob, self.gamma)
        return tf.reduce_mean(_bce(logits, targets) * weight)


class CE:
    """Softmax cross-entropy over positive locations (UHD's ``--anchor-cls-loss ce``).

    Per positive: target index = argmax of its target vector, weight = that target's value
    (1.0 with hard targets, the IoU with soft ones); loss = sum(weight * CE(softmax(logits),
    index)) / max(1, N_pos). No background class (objectness handles background). With one
    class softmax is degenerate, so C == 1 falls back to :class:`BCE`. Scores are still
    sigmoid(cls) at inference.
    """

    def __call__(self, cls_logits: tf.Tensor, cls_targets: tf.Tensor, pos_mask: tf.Tensor) -> tf.Tensor:
        if cls_logits.shape[-1] == 1:
            return BCE()(cls_logits, cls_targets, pos_mask)
        logits = tf.cast(cls_logits, tf.float32)
        targets = tf.cast(cls_targets, tf.float32)
        pos = tf.cast(pos_mask, tf.float32)
        index = tf.argmax(targets, axis=-1)
        weight = tf.reduce_max(targets, axis=-1)
        ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=index, logits=logits)  # [B, A, H, W]
        return tf.reduce_sum(ce * weight * pos) / tf.maximum(tf.reduce_sum(pos), 1.0)
