"""ModelConfig: everything needed to rebuild an UltraTinyOD network and decode its output.

It is stored verbatim (``to_dict``) in every checkpoint, so a checkpoint rebuilds the same
network through the head plugin it names. Importing this module never imports TensorFlow.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from utod.defaults import DEFAULT_HEAD, DEFAULT_RESIZE
from utod.errors import CheckpointError, ConfigError

DEFAULT_ANCHORS: list[list[float]] = [[8 / 64, 16 / 64], [12 / 64, 28 / 64], [20 / 64, 40 / 64]]
"""The seed's default anchors: normalised (w, h), fractions of the network input."""

ACTIVATIONS = ("relu", "silu", "swish")
STRIDES = (4, 8, 16)
SCORE_MODES = ("obj_quality_cls", "quality_cls", "obj_cls")
CONV_MODES = ("dw", "std")
SPPF_SCALES = ("none", "bn", "conv")


@dataclass
class ModelConfig:
    """Architecture + decode settings of one UltraTinyOD model.

    img_size:       network input (H, W) in pixels; both divisible by ``stride``.
    num_classes:    C, number of detection classes (0 = class-agnostic, objectness only).
    class_names:    C names (default ``class0..``).
    class_ids:      raw dataset label id of each contiguous class index, or None (identity).
    anchors:        A anchors as normalised (w, h) fractions of the input size.
    cnn_width:      W; backbone channels W, 2W, 4W, 8W; head channels 4W.
    activation:     relu | silu | swish (swish == silu).
    use_batchnorm:  BatchNormalization after every convolution (convs then have no bias).
    residual:       the backbone's block3/block4 skip connections.
    head:           registry name of the head plugin; ``head_options`` its options.
    resize_mode:    registry name of the resize backend used for training and deployment.
    score_mode:     obj_quality_cls | quality_cls | obj_cls, or None = auto (the head's
                    declared ``default_score_mode``).
    quality_power:  P in sigma(quality)**P.
    conf_thresh, nms_iou, max_detections: post-processing defaults.
    stride:         output stride of the backbone (4, 8 or 16; default 8).
    conv:           backbone blocks: ``dw`` (depthwise + 1x1) or ``std`` (full 3x3) (UHD --utod-conv;
                    the head has its own ``conv`` option).
    sppf_scale:     SPPF per-branch scaling: none | bn | conv (UHD --utod-sppf-scale).
    disable_cls:    class-less head (UHD --disable-cls): exactly one class, the head has no cls
                    branch (``head_classes == 0``), detections are class 0 scored from
                    objectness/quality; the score mode folds accordingly (``quality_cls`` ->
                    quality only, ``obj_quality_cls`` -> obj * quality, ``obj_cls`` -> obj).
    in_channels:    model input channels (3 for RGB; 1 for the Y modes, 2 for YUV422), set from
                    the resize/input plugin named by ``resize_mode``.
    """

    img_size: tuple[int, int] = (64, 64)
    num_classes: int = 1
    class_names: list[str] | None = None
    class_ids: list[int] | None = None
    anchors: list[list[float]] = field(default_factory=lambda: [list(a) for a in DEFAULT_ANCHORS])
    cnn_width: int = 64
    activation: str = "swish"
    use_batchnorm: bool = False
    residual: bool = False
    head: str = DEFAULT_HEAD
    head_options: dict[str, Any] = field(default_factory=dict)
    resize_mode: str = DEFAULT_RESIZE
    score_mode: str | None = None
    quality_power: float = 1.0
    conf_thresh: float = 0.15
    nms_iou: float = 0.5
    max_detections: int = 100
    stride: int = 8
    conv: str = "dw"
    sppf_scale: str = "none"
    disable_cls: bool = False
    in_channels: int = 3

    def __post_init__(self) -> None:
        self.img_size = _pair(self.img_size)
        self.num_classes = int(self.num_classes)
        if self.num_classes < 0:
            raise ConfigError(f"num_classes must be >= 0, got {self.num_classes}")
        if self.class_names is None:
            self.class_names = [f"class{i}" for i in range(self.num_classes)]
        self.class_names = [str(n) for n in self.class_names]
        if len(self.class_names) != self.num_classes:
            raise ConfigError(
                f"class_names has {len(self.class_names)} names but num_classes is {self.num_classes}"
            )
        if self.class_ids is not None:
            self.class_ids = [int(i) for i in self.class_ids]
            if len(self.class_ids) != self.num_classes:
                raise ConfigError(
                    f"class_ids has {len(self.class_ids)} ids but num_classes is {self.num_classes}"
                )
        self.anchors = _anchors(self.anchors)
        self.cnn_width = int(self.cnn_width)
        if self.cnn_width < 1:
            raise ConfigError(f"cnn_width must be >= 1, got {self.cnn_width}")
        self.activation = str(self.activation).lower()
        if self.activation not in ACTIVATIONS:
            raise ConfigError(f"activation must be one of {', '.join(ACTIVATIONS)}, got '{self.activation}'")
        self.use_batchnorm = bool(self.use_batchnorm)
        self.residual = bool(self.residual)
        self.head = str(self.head)
        self.head_options = dict(self.head_options or {})
        if self.score_mode is not None and self.score_mode not in SCORE_MODES:
            raise ConfigError(f"score_mode must be one of {', '.join(SCORE_MODES)} or None, got '{self.score_mode}'")
        self.quality_power = float(self.quality_power)
        self.conf_thresh = float(self.conf_thresh)
        self.nms_iou = float(self.nms_iou)
        self.max_detections = int(self.max_detections)
        if self.max_detections < 1:
            raise ConfigError(f"max_detections must be >= 1, got {self.max_detections}")
        self.stride = int(self.stride)
        if self.stride not in STRIDES:
            raise ConfigError(f"stride must be one of {STRIDES}, got {self.stride}")
        self.conv = str(self.conv)
        if self.conv not in CONV_MODES:
            raise ConfigError(f"conv must be one of {', '.join(CONV_MODES)}, got '{self.conv}'")
        self.sppf_scale = str(self.sppf_scale)
        if self.sppf_scale not in SPPF_SCALES:
            raise ConfigError(f"sppf_scale must be one of {', '.join(SPPF_SCALES)}, got '{self.sppf_scale}'")
        self.disable_cls = bool(self.disable_cls)
        if self.disable_cls and self.num_classes != 1:
            raise ConfigError(f"--disable-cls needs exactly one class, got {self.num_classes} "
                              f"(select one with --classes ID)")
        self.in_channels = int(self.in_channels)
        if self.in_channels < 1:
            raise ConfigError(f"in_channels must be >= 1, got {self.in_channels}")
        h, w = self.img_size
        if h % self.stride or w % self.stride:
            raise ConfigError(f"img_size {h}x{w} must be divisible by the stride {self.stride}")

    @property
    def num_anchors(self) -> int:
        return len(self.anchors)

    @property
    def head_classes(self) -> int:
        """Class channels per anchor in the raw map: 0 with ``disable_cls``, else ``num_classes``."""
        return 0 if self.disable_cls else self.num_classes

    @property
    def grid_size(self) -> tuple[int, int]:
        """Output grid (Hg, Wg) for ``img_size``."""
        return self.img_size[0] // self.stride, self.img_size[1] // self.stride

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (tuples become lists)."""
        d = asdict(self)
        d["img_size"] = list(self.img_size)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        """Inverse of :meth:`to_dict`. Missing keys take their defaults; unknown keys are a
        :class:`CheckpointError` naming them."""
        if not isinstance(d, dict):
            raise CheckpointError(f"model config must be a mapping, got {type(d).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise CheckpointError(
                f"model config has unknown keys: {', '.join(unknown)} (written by a newer utod?). "
                f"Known keys: {', '.join(sorted(known))}"
            )
        try:
            return cls(**d)
        except (TypeError, ValueError, ConfigError) as exc:
            raise CheckpointError(f"invalid model config: {exc}") from exc


def _pair(value: Any) -> tuple[int, int]:
    if isinstance(value, int):
        return (value, value)
    try:
        h, w = (int(v) for v in value)
    except (TypeError, ValueError):
        raise ConfigError(f"img_size must be an int or (H, W), got {value!r}") from None
    if h < 1 or w < 1:
        raise ConfigError(f"img_size must be positive, got {value!r}")
    return (h, w)


def _anchors(value: Any) -> list[list[float]]:
    try:
        out = [[float(w), float(h)] for w, h in value]
    except (TypeError, ValueError):
        raise ConfigError(f"anchors must be a list of (w, h) pairs, got {value!r}") from None
    if not out:
        raise ConfigError("anchors must not be empty")
    for w, h in out:
        if not (w > 0 and h > 0 and math.isfinite(w) and math.isfinite(h)):
            raise ConfigError(f"anchors must be positive normalised (w, h), got {value!r}")
    return out
