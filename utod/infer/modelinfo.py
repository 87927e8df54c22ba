"""What a model file needs to be fed and read, whatever the backend: :class:`ModelInfo`
(stored as JSON in every exported file), how to build it from a Keras model, and the
decode threshold a mAP evaluation uses (TensorFlow-free)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from utod import __version__
from utod.errors import CheckpointError

RAW_LAYOUT = "raw: [B, Hg, Wg, A*(5+Q+C)] NHWC, anchor-major, per anchor tx,ty,tw,th,obj,[quality],cls..."
RAW_LAYOUT_NCHW = "raw: [B, A*(5+Q+C), Hg, Wg] NCHW, anchor-major, per anchor tx,ty,tw,th,obj,[quality],cls..."
DET_LAYOUT = ("detections: [B, K, 6] rows (score, class_id, cx, cy, w, h) normalised to the input, "
              "zero padded, sorted by score; num_detections: [B] int32")


# Decode threshold for mAP: low enough to keep (nearly) the whole precision/recall curve.
MAP_CONF_THRESH = 0.001
MAP_EXPORT_ADVICE = f"export with --conf-thresh {MAP_CONF_THRESH:g} (or --no-post) for mAP evaluation"


@dataclass
class ModelInfo:
    """Everything needed to feed a model and read its output, whatever the backend.

    img_size (H, W) pixels; input_layout "nhwc" | "nchw"; output "detections" | "raw";
    anchors / wh_scale [A, 2] (effective anchors = anchors * wh_scale, normalised w, h);
    conf_thresh / nms_iou / max_detections: the values baked into a "detections" graph.
    """

    img_size: tuple[int, int]
    num_classes: int
    class_names: list[str]
    class_ids: list[int] | None
    resize_mode: str
    anchors: list[list[float]]
    wh_scale: list[list[float]]
    has_quality: bool
    score_mode: str
    quality_power: float
    conf_thresh: float
    nms_iou: float
    max_detections: int
    input_layout: str = "nhwc"
    output: str = "raw"
    input_dtype: str = "float32"
    extra: dict[str, Any] = field(default_factory=dict)
    # recipe (docs/recipe.md): class-less head and camera-native input
    disable_cls: bool = False  # raw map has no cls channels; every detection is class 0
    in_channels: int = 3  # model input channels
    input_mode: str = "rgb"  # conversion after resize: rgb | y | y_bin | y_tri | yuv422 (resize plugin's)
    # Raw head exported as separate tensors, one per group, each with its own quantisation
    # scale (mcu, utod.deploy.groups): names in output order, e.g. ["box", "obj", "quality",
    # "cls"]; None = one concatenated "raw" tensor.
    raw_groups: list[str] | None = None

    @property
    def head_classes(self) -> int:
        """Class channels per anchor in the raw map (0 with ``disable_cls``)."""
        return 0 if self.disable_cls else self.num_classes

    @property
    def num_anchors(self) -> int:
        return len(self.anchors)

    @property
    def has_postprocess(self) -> bool:
        """True when the file outputs final detections (threshold, NMS IoU and K baked in)."""
        return self.output == "detections"

    @property
    def cuts_pr_curve(self) -> bool:
        """True when baked-in post-processing drops detections a mAP evaluation would use
        (its conf threshold is above ``MAP_CONF_THRESH``)."""
        return self.has_postprocess and self.conf_thresh > MAP_CONF_THRESH + 1e-12

    def baked_in(self) -> str:
        """One line naming the post-processing settings a "detections" model has baked in."""
        return (f"conf >= {self.conf_thresh:g}, NMS IoU {self.nms_iou:g}, "
                f"at most {self.max_detections} detections per image")

    def effective_anchors(self) -> np.ndarray:
        return np.asarray(self.anchors, np.float32) * np.asarray(self.wh_scale, np.float32)

    def to_json(self) -> str:
        d = asdict(self)
        d["img_size"] = list(self.img_size)
        return json.dumps(d)

    @classmethod
    def from_json(cls, text: str, source: str = "metadata") -> ModelInfo:
        try:
            d = json.loads(text)
            d["img_size"] = tuple(d["img_size"])
            return cls(**d)
        except (ValueError, TypeError, KeyError) as exc:
            raise CheckpointError(f"{source}: utod metadata cannot be read ({exc})") from exc

    def to_metadata(self) -> dict[str, str]:
        """String key/values for ONNX ``metadata_props`` (every field, plus a description)."""
        h, w = self.img_size
        props = {
            "utod_info": self.to_json(),
            "utod_version": __version__,
            "class_names": json.dumps(self.class_names),
            "class_ids": json.dumps(self.class_ids),
            "num_classes": str(self.num_classes),
            "img_size": f"{h}x{w}",
            "input_layout": self.input_layout,
            "input_range": ("float32 RGB in [0, 1] (pixel / 255)" if self.input_mode == "rgb" else
                            f"float32 in [0, 1], {self.in_channels} channel(s), input mode {self.input_mode}"),
            "input_mode": self.input_mode,
            "input_channels": str(self.in_channels),
            "disable_cls": str(self.disable_cls).lower(),
            "head_classes": str(self.head_classes),
            "resize_mode": self.resize_mode,
            "anchors": json.dumps(self.anchors),
            "wh_scale": json.dumps(self.wh_scale),
            "has_quality": str(self.has_quality).lower(),
            "score_mode": self.score_mode,
            "quality_power": repr(self.quality_power),
            "postprocess": "full" if self.output == "detections" else "raw",
            "conf_thresh": repr(self.conf_thresh),
            "nms_iou": repr(self.nms_iou),
            "max_detections": str(self.max_detections),
            "decode_bbox": "cx=(sigmoid(tx)+col)/Wg, cy=(sigmoid(ty)+row)/Hg, "
                           "w=anchor_w*wh_scale_w*softplus(tw), h=anchor_h*wh_scale_h*softplus(th)",
        }
        if self.output == "detections":
            props["output_layout"] = DET_LAYOUT
        else:
            props["output_layout"] = (RAW_LAYOUT_NCHW if self.input_layout == "nchw" else RAW_LAYOUT) + \
                "; anchors: [A,2]; wh_scale: [A,2]"
        return props


def resolved_score_mode(model: Any) -> str:
    """The score mode the model decodes with (config value, else the head's auto rule)."""
    from utod.model.postprocess import score_mode_for

    return score_mode_for(model)


def info_from_model(model: Any, *, output: str = "raw", input_layout: str = "nhwc",
                    conf_thresh: float | None = None, nms_iou: float | None = None,
                    max_detections: int | None = None) -> ModelInfo:
    """ModelInfo of a built/loaded Keras ``UltraTinyOD``."""
    cfg = model.config
    return ModelInfo(
        img_size=tuple(cfg.img_size),
        num_classes=int(cfg.num_classes),
        class_names=list(cfg.class_names),
        class_ids=list(cfg.class_ids) if cfg.class_ids is not None else None,
        resize_mode=cfg.resize_mode,
        anchors=np.asarray(model.anchors, np.float32).tolist(),
        wh_scale=np.asarray(model.wh_scale, np.float32).tolist(),
        has_quality=bool(model.has_quality),
        score_mode=resolved_score_mode(model),
        quality_power=float(cfg.quality_power),
        conf_thresh=float(cfg.conf_thresh if conf_thresh is None else conf_thresh),
        nms_iou=float(cfg.nms_iou if nms_iou is None else nms_iou),
        max_detections=int(cfg.max_detections if max_detections is None else max_detections),
        input_layout=input_layout,
        output=output,
        disable_cls=bool(getattr(cfg, "disable_cls", False)),
        in_channels=int(getattr(cfg, "in_channels", 3)),
        input_mode=_input_mode(cfg.resize_mode),
    )


def _input_mode(resize_mode: str) -> str:
    """The input mode the resize plugin declares ("rgb" when it declares none or is not installed)."""
    from utod.data.model_input import input_mode
    from utod.registry import PluginError, get_registry

    try:
        return input_mode(get_registry().create("resize", resize_mode))
    except PluginError:
        return "rgb"
