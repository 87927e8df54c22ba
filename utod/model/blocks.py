"""Building blocks of UltraTinyOD (tf-keras layers, NHWC float32).

Every convolution uses ``he_normal`` kernels and "same" padding. With ``use_batchnorm`` a
convolution is followed by BatchNormalization (momentum 0.97, epsilon 1e-3) and has no
bias. Without BN the seed keeps ``use_bias=False``; utod instead gives those convolutions a
bias (zero-initialised), since otherwise they would have no offset at all. The reference
parameter counts in docs/model.md §5 are all with BN, where both choices agree.

Depthwise kernel initialisation depends on BN:

* with BN: Keras ``he_normal`` on the DepthwiseConv2D kernel [k, k, C, 1], i.e. std
  sqrt(2 / (k*k*C)) -- the same scale as the PyTorch original (kaiming fan_out of a
  [C, 1, k, k] depthwise weight counts C*k*k). The forward pass does not care (BN divides
  the scale out), but the *training speed* does: a kernel followed by BN is scale-invariant,
  so an Adam step of roughly ``lr`` per element changes it by ``lr / std`` relatively. The
  k*k fan-in below makes depthwise kernels sqrt(C) (4-11x at widths 16-128) larger, which
  cut the effective learning rate of every depthwise layer by that factor and made BN models
  learn far slower than without BN (tests/test_training_quality.py).
* without BN: He-normal with the fan-in of ONE depthwise filter (k*k)
  (``DepthwiseHeNormal``). With k*k*C every depthwise output shrinks by sqrt(C) and the
  signal vanishes through the backbone (std ~1e-5 after block4 at width 8).
"""

from __future__ import annotations

from typing import Any

from utod._keras import keras, tf

BN_MOMENTUM = 0.97
BN_EPSILON = 1e-3
PRIOR_BIAS = -4.59511985013459  # log(0.01 / 0.99): initial sigmoid output 0.01


def activation_fn(name: str):
    """``relu`` -> tf.nn.relu; ``silu``/``swish`` -> tf.nn.silu."""
    name = name.lower()
    if name == "relu":
        return tf.nn.relu
    if name in ("silu", "swish"):
        return tf.nn.silu
    raise ValueError(f"unsupported activation '{name}' (relu, silu, swish)")


class DepthwiseHeNormal(keras.initializers.Initializer):
    """He-normal (truncated, std sqrt(2 / (k*k))) for depthwise kernels [k, k, C, M]."""

    def __init__(self, seed: int | None = None) -> None:
        self.seed = seed

    def __call__(self, shape, dtype=None, **kwargs):
        fan_in = float(shape[0] * shape[1])
        return keras.initializers.TruncatedNormal(stddev=(2.0 / fan_in) ** 0.5 / 0.87962566103423978,
                                                  seed=self.seed)(shape, dtype=dtype)

    def get_config(self) -> dict[str, Any]:
        return {"seed": self.seed}


def depthwise_initializer(use_batchnorm: bool):
    """Kernel initialiser of a depthwise conv: ``he_normal`` (fan-in k*k*C) before BN,
    ``DepthwiseHeNormal`` (fan-in k*k) without BN (see the module docstring)."""
    return "he_normal" if use_batchnorm else DepthwiseHeNormal()


def batch_norm(name: str | None = None) -> keras.layers.BatchNormalization:
    return keras.layers.BatchNormalization(momentum=BN_MOMENTUM, epsilon=BN_EPSILON, name=name)


class _Block(keras.layers.Layer):
    """Base: remembers its constructor arguments for ``get_config``."""

    def __init__(self, *, activation: str = "swish", use_batchnorm: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.activation = activation
        self.use_batchnorm = bool(use_batchnorm)
        self.act_fn = activation_fn(activation)

    def get_config(self) -> dict[str, Any]:
        cfg = super().get_config()
        cfg.update(activation=self.activation, use_batchnorm=self.use_batchnorm)
        return cfg


class ConvBNAct(_Block):
    """Conv k x k stride s -> [BN] -> [Act]: [B, H, W, Cin] -> [B, H/s, W/s, filters]."""

    def __init__(self, filters: int, kernel_size: int = 1, strides: int = 1, act: bool = True,
                 dilation_rate: int = 1, **kwargs: Any):
        super().__init__(**kwargs)
        self.filters, self.kernel_size, self.strides, self.act = int(filters), int(kernel_size), int(strides), act
        self.dilation_rate = int(dilation_rate)
        self.conv = keras.layers.Conv2D(
            self.filters, self.kernel_size, strides=self.strides, padding="same", dilation_rate=self.dilation_rate,
            use_bias=not self.use_batchnorm, kernel_initializer="he_normal", name="conv",
        )
        self.bn = batch_norm("bn") if self.use_batchnorm else None

    def call(self, x, training=None):
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x, training=training)
        return self.act_fn(x) if self.act else x

    def get_config(self) -> dict[str, Any]:
        cfg = super().get_config()
        cfg.update(filters=self.filters, kernel_size=self.kernel_size, strides=self.strides, act=self.act,
                   dilation_rate=self.dilation_rate)
        return cfg


class DepthwiseBNAct(_Block):
    """Depthwise k x k (stride s, dilation d) -> [BN] -> Act; channels unchanged."""

    def __init__(self, kernel_size: int = 3, strides: int = 1, dilation_rate: int = 1, **kwargs: Any):
        super().__init__(**kwargs)
        self.kernel_size, self.strides, self.dilation_rate = int(kernel_size), int(strides), int(dilation_rate)
        self.dw = keras.layers.DepthwiseConv2D(
            self.kernel_size, strides=self.strides, dilation_rate=self.dilation_rate, padding="same",
            use_bias=not self.use_batchnorm, depthwise_initializer=depthwise_initializer(self.use_batchnorm),
            name="dw",
        )
        self.bn = batch_norm("bn") if self.use_batchnorm else None

    def call(self, x, training=None):
        x = self.dw(x)
        if self.bn is not None:
            x = self.bn(x, training=training)
        return self.act_fn(x)

    def get_config(self) -> dict[str, Any]:
        cfg = super().get_config()
        cfg.update(kernel_size=self.kernel_size, strides=self.strides, dilation_rate=self.dilation_rate)
        return cfg


class DWConv(_Block):
    """Depthwise-separable block: DepthwiseBNAct(k, s) -> ConvBNAct(filters, 1x1).

    [B, H, W, Cin] -> [B, H/s, W/s, filters].
    """

    def __init__(self, filters: int, kernel_size: int = 3, strides: int = 1, **kwargs: Any):
        super().__init__(**kwargs)
        self.filters, self.kernel_size, self.strides = int(filters), int(kernel_size), int(strides)
        common = dict(activation=self.activation, use_batchnorm=self.use_batchnorm)
        self.depthwise = DepthwiseBNAct(self.kernel_size, self.strides, name="depthwise", **common)
        self.pointwise = ConvBNAct(self.filters, 1, 1, name="pointwise", **common)

    def call(self, x, training=None):
        return self.pointwise(self.depthwise(x, training=training), training=training)

    def get_config(self) -> dict[str, Any]:
        cfg = super().get_config()
        cfg.update(filters=self.filters, kernel_size=self.kernel_size, strides=self.strides)
        return cfg


SPPF_SCALES = ("none", "bn", "conv")
CONV_MODES = ("dw", "std")


class SPPFmin(_Block):
    """Minimal SPPF: x = ConvBNAct(Cin/2, 1x1); y = MaxPool5x5/1(x);
    concat[scale_x(x), scale_y(y)] -> ConvBNAct(filters, 1x1).

    ``scale`` (UHD ``--utod-sppf-scale``): ``none`` identity; ``bn`` a separate BatchNorm on
    each branch (identity without ``use_batchnorm``); ``conv`` a separate ConvBNAct 1x1
    without activation on each branch. The pool is taken before the scaling.
    """

    def __init__(self, in_channels: int, filters: int, pool_size: int = 5, scale: str = "none", **kwargs: Any):
        super().__init__(**kwargs)
        self.in_channels, self.filters, self.pool_size = int(in_channels), int(filters), int(pool_size)
        if scale not in SPPF_SCALES:
            raise ValueError(f"SPPF scale must be one of {', '.join(SPPF_SCALES)}, got '{scale}'")
        self.scale = scale
        common = dict(activation=self.activation, use_batchnorm=self.use_batchnorm)
        hidden = max(1, self.in_channels // 2)
        self.reduce = ConvBNAct(hidden, 1, name="reduce", **common)
        self.pool = keras.layers.MaxPool2D(self.pool_size, strides=1, padding="same", name="pool")
        self.scale_x = self.scale_y = None
        if scale == "conv":
            self.scale_x = ConvBNAct(hidden, 1, act=False, name="scale_x", **common)
            self.scale_y = ConvBNAct(hidden, 1, act=False, name="scale_y", **common)
        elif scale == "bn" and self.use_batchnorm:
            self.scale_x, self.scale_y = batch_norm("scale_x"), batch_norm("scale_y")
        self.fuse = ConvBNAct(self.filters, 1, name="fuse", **common)

    def call(self, x, training=None):
        x = self.reduce(x, training=training)
        y = self.pool(x)
        if self.scale_x is not None:
            x, y = self.scale_x(x, training=training), self.scale_y(y, training=training)
        return self.fuse(tf.concat([x, y], axis=-1), training=training)

    def get_config(self) -> dict[str, Any]:
        cfg = super().get_config()
        cfg.update(in_channels=self.in_channels, filters=self.filters, pool_size=self.pool_size, scale=self.scale)
        return cfg


def conv_block(filters: int, kernel_size: int = 3, strides: int = 1, *, conv: str = "dw", name: str,
               activation: str = "swish", use_batchnorm: bool = False) -> keras.layers.Layer:
    """UHD ``--utod-conv``: ``dw`` -> :class:`DWConv` (depthwise k x k + 1x1); ``std`` -> one full
    k x k :class:`ConvBNAct` with the same stride and output channels."""
    if conv not in CONV_MODES:
        raise ValueError(f"conv mode must be one of {', '.join(CONV_MODES)}, got '{conv}'")
    common = dict(activation=activation, use_batchnorm=use_batchnorm, name=name)
    if conv == "std":
        return ConvBNAct(filters, kernel_size, strides, **common)
    return DWConv(filters, kernel_size, strides, **common)


def spatial_block(channels: int, kernel_size: int = 3, strides: int = 1, dilation_rate: int = 1, *,
                  conv: str = "dw", name: str, activation: str = "swish",
                  use_batchnorm: bool = False) -> keras.layers.Layer:
    """A channel-preserving k x k conv + [BN] + Act: depthwise (``dw``) or full (``std``)."""
    common = dict(activation=activation, use_batchnorm=use_batchnorm, name=name)
    if conv == "std":
        return ConvBNAct(channels, kernel_size, strides, dilation_rate=dilation_rate, **common)
    return DepthwiseBNAct(kernel_size, strides, dilation_rate, **common)


class EfficientSE(keras.layers.Layer):
    """Efficient squeeze-excite: x * sigmoid(Conv1x1(mean_HW(x))) (conv with bias, same channels)."""

    def __init__(self, channels: int, **kwargs: Any):
        super().__init__(**kwargs)
        self.channels = int(channels)
        self.fc = keras.layers.Conv2D(self.channels, 1, padding="same", use_bias=True,
                                      kernel_initializer="he_normal", name="fc")

    def call(self, x):
        w = tf.reduce_mean(x, axis=[1, 2], keepdims=True)
        return x * tf.sigmoid(self.fc(w))

    def get_config(self) -> dict[str, Any]:
        cfg = super().get_config()
        cfg.update(channels=self.channels)
        return cfg


class ContextRFB(_Block):
    """Receptive-field block: x + ConvBNAct(C, 1x1)(concat[DW3x3 dil 2 (x), DW5x5 (x)]),
    each depthwise branch followed by [BN] + Act (full convs with ``conv="std"``). Channels
    unchanged."""

    def __init__(self, channels: int, dilation_rate: int = 2, conv: str = "dw", **kwargs: Any):
        super().__init__(**kwargs)
        self.channels, self.dilation_rate, self.conv = int(channels), int(dilation_rate), conv
        common = dict(activation=self.activation, use_batchnorm=self.use_batchnorm)
        self.dilated = spatial_block(self.channels, 3, 1, self.dilation_rate, conv=conv, name="dilated", **common)
        self.wide = spatial_block(self.channels, 5, 1, conv=conv, name="wide", **common)
        self.fuse = ConvBNAct(self.channels, 1, name="fuse", **common)

    def call(self, x, training=None):
        b = tf.concat([self.dilated(x, training=training), self.wide(x, training=training)], axis=-1)
        return x + self.fuse(b, training=training)

    def get_config(self) -> dict[str, Any]:
        cfg = super().get_config()
        cfg.update(channels=self.channels, dilation_rate=self.dilation_rate, conv=self.conv)
        return cfg
