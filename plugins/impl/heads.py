"""The built-in UltraTinyOD heads (TensorFlow side; registered in utod_plugins.heads).

features float32 [B, h, w, Cin] (NHWC) -> raw float32 [B, h, w, A * (5 + Q + K)], anchor-major,
per-anchor channels ``tx, ty, tw, th, obj, [quality], cls_0..cls_{K-1}`` (utod.boxes layout).
"""

from __future__ import annotations

from typing import Any

from utod._keras import keras, tf
from utod.model.blocks import (
    CONV_MODES,
    PRIOR_BIAS,
    ContextRFB,
    ConvBNAct,
    EfficientSE,
    conv_block,
    spatial_block,
)
from utod.model.upsample import upsample_nearest_2x
from utod.sdk import HeadContext


class UltraTinyODHead(keras.layers.Layer):
    """Plain UltraTinyOD head (single scale). Quality branch only with ``iou_aware``.

    Order: context DWConv(C) -> [improved residual block] -> [RFB] -> [large-object branch]
    -> [ESE] -> box / obj / [quality] / cls towers -> 1x1 outputs (obj and cls biases
    log(0.01/0.99), box and quality biases 0).

    iou_aware:            quality branch on, two DWConvs in the box and quality towers and an
                          extra DWConv in the cls tower; default score mode quality_cls.
    cls_bottleneck_ratio: cls tower width max(8, min(C, round(C * ratio))), ratio clamped to
                          [0.05, 1].
    large_obj_branch:     stride-2 branch of width round(C * large_obj_ch_scale) with
                          ``large_obj_depth`` DWConvs, nearest-upsampled and added back.
    use_head_ese:         efficient squeeze-excite on the shared features.
    context_rfb:          dilated + wide depthwise context block.
    conv:                 ``dw`` (DWConv blocks) or ``std`` (each DWConv, the RFB branches and the
                          large-object down-sampling conv become full convolutions).

    With ``context.num_classes == 0`` (``--disable-cls``) no cls branch is built and the raw map
    has 5 + Q channels per anchor.
    """

    improved = False

    def __init__(self, context: HeadContext, *, use_head_ese: bool = False, iou_aware: bool = False,
                 cls_bottleneck_ratio: float = 0.5, large_obj_branch: bool = False, large_obj_depth: int = 1,
                 large_obj_ch_scale: float = 1.0, context_rfb: bool = False, conv: str = "dw", name: str = "head",
                 **kwargs: Any) -> None:
        super().__init__(name=name, **kwargs)
        self.head_context = context
        self.num_anchors = int(context.num_anchors)
        self.num_classes = int(context.num_classes)
        c = self.in_channels = int(context.in_channels)
        self.use_head_ese = bool(use_head_ese)
        self.iou_aware = bool(iou_aware)
        self.cls_bottleneck_ratio = float(min(1.0, max(0.05, cls_bottleneck_ratio)))
        self.large_obj_branch = bool(large_obj_branch)
        self.large_obj_depth = max(1, int(large_obj_depth))
        self.large_obj_ch_scale = float(max(0.25, large_obj_ch_scale))
        self.context_rfb = bool(context_rfb)
        if conv not in CONV_MODES:
            raise ValueError(f"head option conv must be one of {', '.join(CONV_MODES)}, got '{conv}'")
        self.conv = conv
        self.has_quality = self.improved or self.iou_aware
        self.default_score_mode = "quality_cls" if self.iou_aware else "obj_quality_cls"
        self.cls_mid = max(8, min(c, int(round(c * self.cls_bottleneck_ratio))))
        common = dict(activation=context.activation, use_batchnorm=context.use_batchnorm)

        def dw(filters: int, n: str) -> keras.layers.Layer:
            return conv_block(filters, 3, 1, conv=conv, name=n, **common)

        def out_conv(filters: int, n: str, bias: float = 0.0) -> keras.layers.Conv2D:
            return keras.layers.Conv2D(filters, 1, padding="same", use_bias=True, kernel_initializer="he_normal",
                                       bias_initializer=keras.initializers.Constant(bias), name=n)

        towers = 2 if self.iou_aware else 1
        self.context_block = dw(c, "context")
        self.context_res = keras.Sequential(
            [dw(c, "res_dw1"), ConvBNAct(c, 1, name="res_pw", **common), dw(c, "res_dw2")], name="context_res"
        ) if self.improved else None
        self.rfb = ContextRFB(c, conv=conv, name="rfb", **common) if self.context_rfb else None
        if self.large_obj_branch:
            lc = int(round(c * self.large_obj_ch_scale))
            self.lob_down = spatial_block(c, 3, 2, conv=conv, name="lob_down", **common)
            self.lob_pw = ConvBNAct(lc, 1, name="lob_pw", **common)
            self.lob_blocks = [dw(lc, f"lob_dw{i}") for i in range(self.large_obj_depth)]
            self.lob_fuse = ConvBNAct(c, 1, name="lob_fuse", **common)
        self.ese = EfficientSE(c, name="ese") if self.use_head_ese else None
        a, k = self.num_anchors, self.num_classes
        self.box_tower = [dw(c, f"box_dw{i}") for i in range(towers)]
        self.box_out = out_conv(4 * a, "box_out")
        self.obj_tower = [dw(c, "obj_dw0")]
        self.obj_out = out_conv(a, "obj_out", PRIOR_BIAS)
        if self.has_quality:
            self.quality_tower = [dw(c, f"quality_dw{i}") for i in range(towers)]
            self.quality_out = out_conv(a, "quality_out")
        if k > 0:
            self.cls_reduce = ConvBNAct(self.cls_mid, 1, name="cls_reduce", **common)
            self.cls_tower = [dw(self.cls_mid, f"cls_dw{i}") for i in range(towers)]
            self.cls_out = out_conv(a * k, "cls_out", PRIOR_BIAS)
        if self.improved:
            self._wh_scale = self.add_weight("wh_scale", shape=(a, 2), initializer="ones", trainable=True,
                                             dtype=tf.float32)
        else:
            self._wh_scale = tf.ones((a, 2), tf.float32)

    @property
    def wh_scale(self):
        """float32 [A, 2] multiplier of the anchors' (w, h)."""
        return self._wh_scale

    @staticmethod
    def _run(layers, x, training):
        for layer in layers:
            x = layer(x, training=training)
        return x

    def call(self, x, training=None):
        groups = self.call_groups(x, training=training)
        shape = tf.shape(x)
        b, h, w = shape[0], shape[1], shape[2]
        a = self.num_anchors
        width = {"box": 4, "obj": 1, "quality": 1, "cls": self.num_classes}
        parts = [tf.reshape(g, [b, h, w, a, width[name]]) for name, g in groups.items()]
        d = 5 + int(self.has_quality) + self.num_classes
        return tf.reshape(tf.concat(parts, axis=-1), [b, h, w, a * d])

    def call_groups(self, x, training=None):
        """features [B, h, w, Cin] -> the raw head per group, before concatenation:
        ``{"box": [B,h,w,4A], "obj": [B,h,w,A], ["quality": [B,h,w,A]], ["cls": [B,h,w,A*K]]}``
        (channel a*k+j of a group is anchor a's j-th value). Export uses it to give each group
        its own output tensor (its own int8 scale)."""
        h, w = tf.shape(x)[1], tf.shape(x)[2]
        x = self.context_block(x, training=training)
        if self.context_res is not None:
            x = x + self.context_res(x, training=training)
        if self.rfb is not None:
            x = self.rfb(x, training=training)
        if self.large_obj_branch:
            y = self.lob_pw(self.lob_down(x, training=training), training=training)
            y = self._run(self.lob_blocks, y, training)
            # nearest 2x upsampling back to (h, w) (utod.model.upsample: ops TFLite Micro has,
            # XLA-compilable, the same values as tf.repeat / tf.image.resize nearest)
            y = upsample_nearest_2x(y, x.shape[1] or h, x.shape[2] or w, training=training)
            x = x + self.lob_fuse(y, training=training)
        if self.ese is not None:
            x = self.ese(x)
        groups = {"box": self.box_out(self._run(self.box_tower, x, training)),
                  "obj": self.obj_out(self._run(self.obj_tower, x, training))}
        if self.has_quality:
            groups["quality"] = self.quality_out(self._run(self.quality_tower, x, training))
        if self.num_classes > 0:
            groups["cls"] = self.cls_out(self._run(self.cls_tower, self.cls_reduce(x, training=training), training))
        return groups

    def get_config(self) -> dict[str, Any]:
        """The head's options (what ``register(... params=...)`` declares)."""
        return {
            "use_head_ese": self.use_head_ese,
            "iou_aware": self.iou_aware,
            "cls_bottleneck_ratio": self.cls_bottleneck_ratio,
            "large_obj_branch": self.large_obj_branch,
            "large_obj_depth": self.large_obj_depth,
            "large_obj_ch_scale": self.large_obj_ch_scale,
            "context_rfb": self.context_rfb,
            "conv": self.conv,
        }


class ImprovedHead(UltraTinyODHead):
    """Improved UltraTinyOD head: the plain head plus a residual [DWConv, ConvBNAct 1x1, DWConv]
    block on the shared features, a trainable per-anchor ``wh_scale`` (init 1) and the quality
    branch always on."""

    improved = True

    def __init__(self, context: HeadContext, **options: Any) -> None:
        super().__init__(context, **options)
