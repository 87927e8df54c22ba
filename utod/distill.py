"""Teacher -> student distillation terms: the reference logit/feature MSE (docs/loss.md §8) and
UHD's feature and anchor-head terms (docs/recipe.md "Distillation").

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

UHD's feature term (``feat_l1_weight``) compares the same backbone outputs as the feature
MSE, through the same adapter, after L2-normalising each map over its channels
(``n(x) = x / max(||x||, 1e-6)``)::

    distill_feat_l1 = feat_l1_weight * mean(|n(A(s_feat)) - n(t_feat)|)

UHD's anchor-head terms (``obj_weight``, ``quality_weight``, ``box_l1_weight``, ``kl_weight``,
temperature ``T``) compare per-anchor outputs, so they need the same anchor count, head
classes and (for quality) quality branches on both sides (for kl: at least one class, so
not with ``disable_cls``), but **not** the same width or anchors::

    distill_obj     = obj_weight     * T^2 * mean(BCE(s_obj / T, sigmoid(t_obj / T)))   all B*A*H*W cells
    distill_quality = quality_weight * T^2 * mean(BCE(s_q / T,   sigmoid(t_q / T)))     all cells
    distill_box_l1  = box_l1_weight  * mean(|box_s - box_t|)                          all cells, 4 values
    distill_kl      = kl_weight      * T^2 * mean(KL(softmax(t_cls / T) || softmax(s_cls / T)))  per cell
                      (one class: T^2 * mean(BCE(s_cls / T, sigmoid(t_cls / T))), like obj)

``box_*`` are the boxes each model decodes with its *own* effective anchors (normalised
cx, cy, w, h; softplus clamped at 4.0). A teacher grid of another size is resized
bilinearly to the student's (raw logits and decoded boxes).

``cosine=True`` multiplies every term (also the MSE ones) by the ramp
``0.5 * (1 - cos(pi * (epoch + 1) / epochs))`` (0-based epoch, constant within an epoch,
1.0 in the last epoch); the trainer calls :meth:`DistillLoss.set_epoch` before each epoch.
The ramp is a variable, so the compiled step is not retraced.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from utod._keras import keras, tf
from utod.boxes import grid_offsets, split_raw
from utod.errors import ConfigError

SOFTPLUS_CLAMP = 4.0
"""Upper clamp of softplus(tw), softplus(th) in the distillation decode (UHD)."""


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


def raw_layout(model: Any) -> tuple[int, int, bool]:
    """(num_anchors, head classes, has_quality) of a detector's raw map."""
    return int(model.num_anchors), int(model.num_classes), bool(model.has_quality)


def check_anchor_terms_compatible(student: Any, teacher: Any, need_quality: bool, need_classes: bool = False) -> None:
    """Raise ``ConfigError`` unless the anchor-head terms can compare the two detectors: the
    same anchor count and head classes (and quality branches on both when ``need_quality``;
    class outputs when ``need_classes``). Widths and anchor shapes may differ."""
    if need_classes and (student.num_classes == 0 or teacher.num_classes == 0):
        raise ConfigError("--distill-kl compares class outputs, and the "
                          f"{'student' if student.num_classes == 0 else 'teacher'} has none (--disable-cls); "
                          f"use --distill-obj / --distill-quality instead")
    problems = []
    for attr in ("num_anchors", "num_classes"):
        s, t = getattr(student, attr), getattr(teacher, attr)
        if s != t:
            problems.append(f"{'anchors' if attr == 'num_anchors' else 'head classes'}: student {s}, teacher {t}")
    if need_quality and not (student.has_quality and teacher.has_quality):
        problems.append(f"quality branch: student {student.has_quality}, teacher {teacher.has_quality}")
    if problems:
        raise ConfigError("anchor-head distillation (--distill-obj/--distill-quality/--distill-box-l1/--distill-kl) "
                          "needs a teacher with the student's anchor count and classes; " + "; ".join(problems))


def cosine_ramp(epoch: int, epochs: int) -> float:
    """``0.5 * (1 - cos(pi * (epoch + 1) / epochs))`` for 0-based ``epoch``."""
    return float(0.5 * (1.0 - np.cos(np.pi * (int(epoch) + 1) / max(1, int(epochs)))))


def decode_for_distill(box_logits: tf.Tensor, anchors: tf.Tensor) -> tf.Tensor:
    """tx, ty, tw, th [B, A, H, W, 4] -> normalised cxcywh with softplus clamped at 4.0."""
    shape = tf.shape(box_logits)
    gx, gy = grid_offsets(shape[2], shape[3], tf.float32)
    tx, ty, tw, th = tf.unstack(box_logits, 4, axis=-1)
    aw, ah = tf.unstack(tf.cast(anchors, tf.float32), 2, axis=-1)
    cx = (tf.sigmoid(tx) + gx) / tf.cast(shape[3], tf.float32)
    cy = (tf.sigmoid(ty) + gy) / tf.cast(shape[2], tf.float32)
    bw = aw[None, :, None, None] * tf.minimum(tf.nn.softplus(tw), SOFTPLUS_CLAMP)
    bh = ah[None, :, None, None] * tf.minimum(tf.nn.softplus(th), SOFTPLUS_CLAMP)
    return tf.stack([cx, cy, bw, bh], axis=-1)


def _resize_anchor_map(x: tf.Tensor, like: tf.Tensor) -> tf.Tensor:
    """Resize [B, A, H, W, (k)] to the H, W of ``like`` [B, A, h, w, ...] bilinearly."""
    if x.shape[2:4].is_fully_defined() and x.shape[2:4] == like.shape[2:4]:
        return x
    squeeze = x.shape.rank == 4
    if squeeze:
        x = x[..., None]
    shape = tf.shape(x)
    b, a, h, w, k = shape[0], shape[1], shape[2], shape[3], shape[4]
    flat = tf.reshape(tf.transpose(x, [0, 2, 3, 1, 4]), [b, h, w, a * k])
    size = tf.shape(like)[2:4]
    flat = tf.image.resize(flat, size, method="bilinear")
    out = tf.transpose(tf.reshape(flat, [b, size[0], size[1], a, k]), [0, 3, 1, 2, 4])
    return out[..., 0] if squeeze else out


def _soft_bce(student_logits: tf.Tensor, teacher_logits: tf.Tensor, temperature: float) -> tf.Tensor:
    t = float(temperature)
    target = tf.sigmoid(teacher_logits / t)
    bce = tf.nn.sigmoid_cross_entropy_with_logits(labels=target, logits=student_logits / t)
    return tf.reduce_mean(bce) * (t * t)


def _soft_kl(student_logits: tf.Tensor, teacher_logits: tf.Tensor, temperature: float) -> tf.Tensor:
    """``T^2 * mean over cells of KL(softmax(t / T) || softmax(s / T))`` for logits [..., C]
    (C = 1: the soft-target BCE, as softmax over one class is constant)."""
    t = float(temperature)
    if student_logits.shape[-1] == 1:
        return _soft_bce(student_logits, teacher_logits, t)
    log_p_t = tf.nn.log_softmax(teacher_logits / t, axis=-1)
    log_p_s = tf.nn.log_softmax(student_logits / t, axis=-1)
    kl = tf.reduce_sum(tf.exp(log_p_t) * (log_p_t - log_p_s), axis=-1)
    return tf.reduce_mean(kl) * (t * t)


def _resize_to(x: tf.Tensor, like: tf.Tensor) -> tf.Tensor:
    """Bilinearly resize NHWC ``x`` to the spatial size of ``like`` (no-op when statically equal)."""
    if x.shape[1:3].is_fully_defined() and x.shape[1:3] == like.shape[1:3]:
        return x
    return tf.image.resize(x, tf.shape(like)[1:3], method="bilinear")


class DistillLoss:
    """Logit (raw-map MSE), feature (backbone MSE) and UHD anchor-head distillation; see the
    module docstring."""

    def __init__(self, logit_weight: float, feature_weight: float, *, student_channels: int | None = None,
                 teacher_channels: int | None = None, seed: int = 0, obj_weight: float = 0.0,
                 quality_weight: float = 0.0, box_l1_weight: float = 0.0, kl_weight: float = 0.0,
                 feat_l1_weight: float = 0.0, temperature: float = 1.0,
                 cosine: bool = False, student_layout: tuple[int, int, bool] | None = None,
                 teacher_layout: tuple[int, int, bool] | None = None) -> None:
        weights = (logit_weight, feature_weight, obj_weight, quality_weight, box_l1_weight, kl_weight, feat_l1_weight)
        if any(not np.isfinite(w) or w < 0 for w in weights):
            raise ConfigError(f"distillation weights must be finite and >= 0, got {weights}")
        if not (np.isfinite(temperature) and temperature > 0):
            raise ConfigError(f"--distill-temperature must be > 0, got {temperature}")
        self.logit_weight = float(logit_weight)
        self.feature_weight = float(feature_weight)
        self.obj_weight, self.quality_weight = float(obj_weight), float(quality_weight)
        self.box_l1_weight, self.temperature = float(box_l1_weight), float(temperature)
        self.kl_weight, self.feat_l1_weight = float(kl_weight), float(feat_l1_weight)
        self.cosine = bool(cosine)
        # (num_anchors, head classes, has_quality) of each raw map, for the anchor-head terms
        self.student_layout, self.teacher_layout = student_layout, teacher_layout
        self.ramp = tf.Variable(1.0, trainable=False, dtype=tf.float32, name="distill_ramp")
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
    def uses_features(self) -> bool:
        """Whether a term compares backbone features (the train step then computes them)."""
        return self.feature_weight > 0 or self.feat_l1_weight > 0

    @property
    def uses_anchor_terms(self) -> bool:
        return self.obj_weight > 0 or self.quality_weight > 0 or self.box_l1_weight > 0 or self.kl_weight > 0

    def set_epoch(self, epoch: int, epochs: int) -> float:
        """Set the cosine ramp for 0-based ``epoch`` of ``epochs`` (1.0 without ``cosine``)."""
        value = cosine_ramp(epoch, epochs) if self.cosine else 1.0
        self.ramp.assign(value)
        return value

    def _anchor_terms(self, s_raw, t_raw, s_anchors, t_anchors) -> dict[str, tf.Tensor]:
        if self.student_layout is None or self.teacher_layout is None:
            raise ConfigError("anchor-head distillation needs student_layout and teacher_layout "
                              "(num_anchors, head classes, has_quality)")
        sa, sc, sq = self.student_layout
        ta, tc, tq = self.teacher_layout
        s = split_raw(s_raw, sa, sc, sq)
        t = split_raw(t_raw, ta, tc, tq)
        zero = tf.constant(0.0, tf.float32)
        out = {"distill_obj": zero, "distill_quality": zero, "distill_box_l1": zero, "distill_kl": zero}
        if self.obj_weight > 0:
            out["distill_obj"] = self.obj_weight * _soft_bce(s.obj, _resize_anchor_map(t.obj, s.obj),
                                                             self.temperature)
        if self.quality_weight > 0 and s.quality is not None and t.quality is not None:
            out["distill_quality"] = self.quality_weight * _soft_bce(
                s.quality, _resize_anchor_map(t.quality, s.quality), self.temperature)
        if self.box_l1_weight > 0:
            if s_anchors is None or t_anchors is None:
                raise ConfigError("--distill-box-l1 needs the effective anchors of student and teacher")
            s_box = decode_for_distill(s.box, s_anchors)
            t_box = _resize_anchor_map(decode_for_distill(t.box, t_anchors), s_box)
            out["distill_box_l1"] = self.box_l1_weight * tf.reduce_mean(tf.abs(s_box - t_box))
        if self.kl_weight > 0:
            if sc == 0 or s.cls.shape[-1] != t.cls.shape[-1]:
                raise ConfigError(f"--distill-kl needs class outputs of the same size on both models "
                                  f"(student {sc}, teacher {tc})")
            out["distill_kl"] = self.kl_weight * _soft_kl(s.cls, _resize_anchor_map(t.cls, s.cls), self.temperature)
        return out

    @property
    def trainable_variables(self) -> list[tf.Variable]:
        return list(self.adapter.trainable_variables) if self.adapter is not None else []

    def _feature_terms(self, student_feat: tf.Tensor, teacher_feat: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """(feature MSE, UHD's normalised feature L1), both through the one adapter."""
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
        zero = tf.constant(0.0, tf.float32)
        mse = self.feature_weight * tf.reduce_mean(tf.square(student_feat - teacher_feat)) \
            if self.feature_weight > 0 else zero
        l1 = zero
        if self.feat_l1_weight > 0:
            def unit(x):
                return x / tf.maximum(tf.norm(x, axis=-1, keepdims=True), 1e-6)

            l1 = self.feat_l1_weight * tf.reduce_mean(tf.abs(unit(student_feat) - unit(teacher_feat)))
        return mse, l1

    def __call__(self, student_raw: tf.Tensor, teacher_raw: tf.Tensor, student_feat: tf.Tensor | None = None,
                 teacher_feat: tf.Tensor | None = None, student_anchors: tf.Tensor | None = None,
                 teacher_anchors: tf.Tensor | None = None) -> dict[str, tf.Tensor]:
        """``*_raw`` [B, Hg, Wg, A*D]; ``*_feat`` [B, h, w, ch] backbone outputs (NHWC);
        ``*_anchors`` [A, 2] effective anchors (for ``box_l1``).

        Returns ``{distill, distill_logit, distill_feature, distill_feat_l1, distill_obj,
        distill_quality, distill_box_l1, distill_kl}`` float32 scalars; ``distill`` is their sum
        times the ramp.
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
        feature = feat_l1 = zero
        if self.uses_features:
            if student_feat is None or teacher_feat is None:
                raise ConfigError("feature distillation needs the backbone features of student and teacher")
            feature, feat_l1 = self._feature_terms(tf.cast(student_feat, tf.float32),
                                                   tf.stop_gradient(tf.cast(teacher_feat, tf.float32)))
        out = {"distill_logit": logit, "distill_feature": feature, "distill_feat_l1": feat_l1, "distill_obj": zero,
               "distill_quality": zero, "distill_box_l1": zero, "distill_kl": zero}
        if self.uses_anchor_terms:
            out.update(self._anchor_terms(tf.cast(student_raw, tf.float32),
                                          tf.stop_gradient(tf.cast(teacher_raw, tf.float32)),
                                          student_anchors,
                                          None if teacher_anchors is None else tf.stop_gradient(teacher_anchors)))
        out["distill"] = tf.add_n(list(out.values())) * self.ramp
        return out
