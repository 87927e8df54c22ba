"""UltraTinyOD backbone: images [B, H, W, C_in] -> features [B, H/s, W/s, 4W] (s = out stride)."""

from __future__ import annotations

from typing import Any

from utod._keras import keras
from utod.model.blocks import ConvBNAct, SPPFmin, conv_block


class Backbone(keras.layers.Layer):
    """stem ConvBNAct 3x3/2 (W) -> DWConv/2 (2W) -> DWConv (4W) -> DWConv (8W) -> DWConv (8W)
    -> SPPFmin(8W -> 4W).

    ``conv="std"`` replaces every DWConv by one full 3x3 ConvBNAct (UHD ``--utod-conv std``);
    ``sppf_scale`` is the SPPF's per-branch scaling (none | bn | conv).

    Strides of block2/block3 are 2/1 for out stride 8, 1/1 for 4 and 2/2 for 16.
    ``residual``: block3 += ConvBNAct(8W, 1x1, no act, block3 stride)(block2);
    block4 += block3.
    """

    def __init__(self, width: int, out_stride: int = 8, residual: bool = False, activation: str = "swish",
                 use_batchnorm: bool = False, conv: str = "dw", sppf_scale: str = "none", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if out_stride not in (4, 8, 16):
            raise ValueError(f"out_stride must be 4, 8 or 16, got {out_stride}")
        self.width, self.out_stride, self.residual = int(width), int(out_stride), bool(residual)
        self.activation, self.use_batchnorm = activation, bool(use_batchnorm)
        self.conv, self.sppf_scale = conv, sppf_scale
        w = self.width
        s2 = 2 if out_stride >= 8 else 1
        s3 = 2 if out_stride == 16 else 1
        common = dict(activation=activation, use_batchnorm=use_batchnorm)
        self.stem = ConvBNAct(w, 3, 2, name="stem", **common)  # a full 3x3 in both conv modes
        self.block1 = conv_block(2 * w, 3, 2, conv=conv, name="block1", **common)
        self.block2 = conv_block(4 * w, 3, s2, conv=conv, name="block2", **common)
        self.block3 = conv_block(8 * w, 3, s3, conv=conv, name="block3", **common)
        self.block4 = conv_block(8 * w, 3, 1, conv=conv, name="block4", **common)
        self.block3_skip = ConvBNAct(8 * w, 1, s3, act=False, name="block3_skip", **common) if residual else None
        self.sppf = SPPFmin(8 * w, 4 * w, scale=sppf_scale, name="sppf", **common)

    @property
    def out_channels(self) -> int:
        return 4 * self.width

    def call(self, x, training=None):
        x = self.stem(x, training=training)
        x = self.block1(x, training=training)
        x2 = self.block2(x, training=training)
        x3 = self.block3(x2, training=training)
        if self.block3_skip is not None:
            x3 = x3 + self.block3_skip(x2, training=training)
        x4 = self.block4(x3, training=training)
        if self.residual:
            x4 = x4 + x3
        return self.sppf(x4, training=training)

    def get_config(self) -> dict[str, Any]:
        cfg = super().get_config()
        cfg.update(width=self.width, out_stride=self.out_stride, residual=self.residual,
                   activation=self.activation, use_batchnorm=self.use_batchnorm, conv=self.conv,
                   sppf_scale=self.sppf_scale)
        return cfg
