"""Teacher -> student distillation terms (the reference form, docs/loss.md §8).

``DistillLoss(logit_weight, feature_weight)`` returns, for one batch::

    distill_logit   = logit_weight   * mean((s_raw  - t_raw )^2)   over the whole raw map
    distill_feature = feature_weight * mean((A(s_feat) - t_feat)^2) over the backbone outputs
    distill         = distill_logit + distill_feature

* Raw maps are NHWC ``[B, Hg, Wg, A*D]`` (all channels, raw logits including tx..th), so
  teacher and student must share the anchor count, classes and quality branch: a different
  channel count raises ``ConfigError``; :func:`check_teacher_compatible` checks the models
  themselves (anchors included) before training.
* Teacher tensors are always under ``tf.stop_gradient``; everything is computed in float32.
* If the teacher's grid differs from the student's, its raw map and features are resized
  bilinearly (half-pixel centres) to the student's grid.
* Feature channels: when they differ, the **student** features pass through a trainable 1x1
  convolution ``adapter`` (student channels -> teacher channels, Glorot-uniform seeded, with
  bias) — the PyTorch reference's choice. Projecting the student (not the stop-gradient
  teacher) keeps the target fixed, so the adapter cannot make the term vanish by shrinking
  both sides. Its variables are in :attr:`DistillLoss.trainable_variables` and must be
  optimised (and checkpointed) with the model. Create them before the compiled train step
  with :meth:`DistillLoss.build` (or pass both channel counts to the constructor); a
  ``tf.function`` that meets an unbuilt adapter raises ``ConfigError``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from utod._keras import keras, tf
from utod.errors import ConfigError


def check_teacher_compatible(student: Any, teacher: Any) -> None:
    """Raise ``ConfigError`` unless two detectors share anchors, classes and quality branch.

    Reads ``num_anchors``, ``num_classes``, ``has_quality`` and ``anchors`` ([A, 2]) from both
    (``utod.model.detector.UltraTinyOD`` provides them).
    """
    problems = []
    for attr in ("num_anchors", "num_classes", "has_quality"):
        s, t = getattr(student, attr), getattr(teacher, attr)
        if s != t:
            problems.append(f"{attr}: student {s}, teacher {t}")
    if not problems:
        s_anchors = np.asarray(student.anchors, np.float32)
        t_anchors = np.asarray(teacher.anchors, np.float32)
        if s_anchors.shape != t_anchors.shape or not np.allclose(s_anchors, t_anchors, rtol=1e-5, atol=1e-7):
            problems.append(f"anchors: student {s_anchors.round(6).tolist()}, teacher {t_anchors.round(6).tolist()}")
    if problems:
        raise ConfigError("logit distillation needs a teacher with the student's anchors and classes; "
                          + "; ".join(problems))


def _resize_to(x: tf.Tensor, like: tf.Tensor) -> tf.Tensor:
    """Bilinearly resize NHWC ``x`` to the spatial size of ``like`` (no-op when statically equal)."""
    if x.shape[1:3].is_fully_defined() and x.shape[1:3] == like.shape[1:3]:
        return x
    return tf.image.resize(x, tf.shape(like)[1:3], method="bilinear")


class DistillLoss:
    """Logit (raw-map MSE) and feature (backbone MSE) distillation; see the module docstring."""

    def __init__(self, logit_weight: float, feature_weight: float, *, student_channels: int | None = None,
                 teacher_channels: int | None = None, seed: int = 0) -> None:
        if logit_weight < 0 or feature_weight < 0:
            raise ConfigError(f"distillation weights must be >= 0, got {logit_weight} and {feature_weight}")
        self.logit_weight = float(logit_weight)
        self.feature_weight = float(feature_weight)
        self.seed = int(seed)
        self.adapter: keras.layers.Layer | None = None
        self._channels: tuple[int, int] | None = None
        if student_channels is not None and teacher_channels is not None:
            self.build(student_channels, teacher_channels)

    def build(self, student_channels: int, teacher_channels: int) -> None:
        """Create the 1x1 adapter (only when the channel counts differ). Call it eagerly."""
        student_channels, teacher_channels = int(student_channels), int(teacher_channels)
        if self._channels == (student_channels, teacher_channels):
            return
        self._channels = (student_channels, teacher_channels)
        self.adapter = None
        if student_channels != teacher_channels:
            self.adapter = keras.layers.Conv2D(
                teacher_channels, 1, use_bias=True, dtype="float32", name="distill_adapter",
                kernel_initializer=keras.initializers.GlorotUniform(seed=self.seed),
            )
            self.adapter.build((None, None, None, student_channels))

    @property
    def trainable_variables(self) -> list[tf.Variable]:
        return list(self.adapter.trainable_variables) if self.adapter is not None else []

    def _feature_term(self, student_feat: tf.Tensor, teacher_feat: tf.Tensor) -> tf.Tensor:
        s_ch, t_ch = student_feat.shape[-1], teacher_feat.shape[-1]
        if s_ch is None or t_ch is None:
            raise ConfigError("feature distillation needs a known channel count of both feature maps")
        if self._channels != (int(s_ch), int(t_ch)):
            if s_ch != t_ch and not tf.executing_eagerly():
                raise ConfigError(
                    f"feature distillation: student has {s_ch} channels, teacher {t_ch}; call "
                    f"DistillLoss.build({s_ch}, {t_ch}) before the compiled train step so the adapter is trained"
                )
            self.build(int(s_ch), int(t_ch))
        teacher_feat = _resize_to(teacher_feat, student_feat)
        if self.adapter is not None:
            student_feat = self.adapter(student_feat)
        return self.feature_weight * tf.reduce_mean(tf.square(student_feat - teacher_feat))

    def __call__(self, student_raw: tf.Tensor, teacher_raw: tf.Tensor, student_feat: tf.Tensor | None = None,
                 teacher_feat: tf.Tensor | None = None) -> dict[str, tf.Tensor]:
        """``*_raw`` [B, Hg, Wg, A*D]; ``*_feat`` [B, h, w, ch] backbone outputs (NHWC).

        Returns ``{distill, distill_logit, distill_feature}`` float32 scalars.
        """
        zero = tf.constant(0.0, tf.float32)
        logit = zero
        if self.logit_weight > 0:
            s_raw = tf.cast(student_raw, tf.float32)
            t_raw = tf.stop_gradient(tf.cast(teacher_raw, tf.float32))
            if s_raw.shape[-1] != t_raw.shape[-1]:
                raise ConfigError(
                    f"logit distillation: the student's raw map has {s_raw.shape[-1]} channels per cell, the "
                    f"teacher's {t_raw.shape[-1]}; teacher and student must share anchors and classes"
                )
            logit = self.logit_weight * tf.reduce_mean(tf.square(s_raw - _resize_to(t_raw, s_raw)))
        feature = zero
        if self.feature_weight > 0:
            if student_feat is None or teacher_feat is None:
                raise ConfigError("feature distillation needs the backbone features of student and teacher")
            feature = self._feature_term(tf.cast(student_feat, tf.float32),
                                         tf.stop_gradient(tf.cast(teacher_feat, tf.float32)))
        return {"distill": logit + feature, "distill_logit": logit, "distill_feature": feature}
