"""TrainConfig: the one description of a training run.

CLI flags, YAML config files (``--config run.yaml``) and the run folder's ``config.yaml``
(used by ``--resume``) all map onto these fields. Every field's metadata holds its help
text and CLI flag names, so the ``utod train`` command is generated from this file.
Precedence: defaults < YAML config < flags given on the command line.
No TensorFlow here.
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from utod.anchors import ALGORITHMS as ANCHOR_ALGORITHMS
from utod.defaults import (
    DEFAULT_ASSIGNER,
    DEFAULT_CLS_LOSS,
    DEFAULT_HEAD,
    DEFAULT_IOU_LOSS,
    DEFAULT_RESIZE,
    OBJ_LOSS_BCE,
    OBJ_LOSSES,
    OBJ_TARGET_AUTO,
    OBJ_TARGETS,
    SEED_IMPROVED_HEAD,
)
from utod.errors import ConfigError
from utod.presets import PRESET_NAMES


def _f(default: Any, help: str, *flags: str, group: str = "", choices: tuple[str, ...] | None = None,
       multiple: bool = False, is_flag: bool = False) -> Any:
    meta = {"help": help, "flags": flags, "group": group, "choices": choices, "multiple": multiple,
            "is_flag": is_flag}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda d=default: type(d)(d), metadata=meta)
    return field(default=default, metadata=meta)


DATA, MODEL, LOSS, OPTIM, RUN, DISTILL = "data", "model", "loss", "optimisation", "run", "distillation"


@dataclass
class TrainConfig:
    """Every setting of ``utod train`` (the seed's flags, with its names, plus utod's)."""

    # ---- data -------------------------------------------------------------------------
    image_dir: str | None = _f(None, "Image folder (recursive; labels beside images) or list file. "
                                     "Omit to train on the built-in default dataset.", group=DATA)
    # dataset descriptions (issue 16; utod/data/formats, docs/datasets.md) ---------------
    data: str | None = _f(None, "Dataset: a data.yaml (Ultralytics/Roboflow), CVAT obj.data, COCO .json, or a "
                                "folder whose layout is detected (data.yaml, obj.data, VOC Annotations/, COCO "
                                "annotations/, images/+labels/, YOLO .txt beside images). Same as --image-dir.",
                          group=DATA)
    data_format: str | None = _f(None, "Force the dataset layout instead of detecting it (a dataset_format "
                                       "plugin: `utod list-plugins --kind dataset_format`).", group=DATA)
    train_list: str | None = _f(None, "Fixed training image list (UHD): no ratio split.", group=DATA)
    val_list: str | None = _f(None, "Fixed validation image list (with --train-list).", group=DATA)
    # -------------------------------------------------------------------------------------
    names: str | None = _f(None, "Class names file (one per line).", group=DATA)
    num_classes: int | None = _f(None, "Number of classes (when not given by --classes/--names).", group=DATA)
    classes: str | None = _f(None, 'Raw class ids to train, e.g. "0,1,3" (remapped to 0..n-1).', group=DATA)
    train_split: float = _f(0.8, "Train share of the deterministic split.", group=DATA)
    val_split: float = _f(0.2, "Validation share (0 disables validation).", group=DATA)
    seed: int = _f(42, "Seed for the split, shuffling, augmentation and initialisation.", group=DATA)
    img_size: str = _f("64x64", 'Network input "HxW" (or one number for square).', group=DATA)
    max_boxes: int = _f(50, "Boxes kept per image (targets are padded to this).", group=DATA)
    num_workers: int | None = _f(None, "Parallel data workers (default: all cores).", group=DATA)
    # data workers (infer): threads share the GIL; processes scale with cores (docs/gpu.md)
    worker_mode: str = _f("threads", "Who builds training batches: worker threads (fastest on a few cores) or "
                          "worker processes (no shared GIL; for GPUs needing thousands of img/s, docs/gpu.md).",
                          group=DATA, choices=("threads", "processes"))
    resize_mode: str = _f(DEFAULT_RESIZE, "Resize backend plugin (see `utod list-plugins --kind resize`). "
                                                  "Shortcut flags such as --opencv_inter_nearest also work.",
                          group=DATA)
    aug_config: str | None = _f(None, "Augmentation YAML (seed aug.yaml format). Default: the seed's defaults.",
                                group=DATA)
    no_aug: bool = _f(False, "Disable augmentation.", group=DATA, is_flag=True)
    cache_dir: str | None = _f(None, "Folder for the decoded-image cache (default: ~/.cache/utod).", group=DATA)

    # ---- model ------------------------------------------------------------------------
    cnn_width: int = _f(64, "Backbone stem width W (published variants 16..256).", group=MODEL)
    activation: str = _f("relu", "Activation.", group=MODEL, choices=("relu", "silu", "swish"))
    use_batchnorm: bool = _f(False, "BatchNorm after every convolution.", group=MODEL, is_flag=True)
    utod_residual: bool = _f(False, "Backbone residual connections.", "--utod-residual", "--use-residual",
                             group=MODEL, is_flag=True)
    head: str | None = _f(None, f"Head plugin (default: '{SEED_IMPROVED_HEAD}' with --use-improved-head, else "
                                f"'{DEFAULT_HEAD}').",
                          group=MODEL)
    head_opt: list = _f([], "Head option key=value (repeatable).", group=MODEL, multiple=True)
    use_improved_head: bool = _f(False, "Improved head (learnable wh_scale, quality branch).", group=MODEL,
                                 is_flag=True)
    use_iou_aware_head: bool = _f(False, "IoU-aware quality branch.", group=MODEL, is_flag=True)
    use_head_ese: bool = _f(False, "ESE attention in the head.", "--use-head-ese", "--utod-head-ese", group=MODEL,
                            is_flag=True)
    quality_power: float = _f(1.0, "Exponent on sigmoid(quality) when scoring.", group=MODEL)
    cls_bottleneck_ratio: float = _f(0.5, "Class branch bottleneck ratio (clamped to [0.05, 1]).", group=MODEL)
    utod_large_obj_branch: bool = _f(False, "Large-object branch in the head.", group=MODEL, is_flag=True)
    utod_large_obj_depth: int = _f(1, "DWConv blocks in the large-object branch.", group=MODEL)
    utod_large_obj_ch_scale: float = _f(1.0, "Channel scale of the large-object branch.", group=MODEL)
    anchors: str | None = _f(None, 'Anchors "w,h;w,h;..." (normalised) or JSON [[w,h],...].', group=MODEL)
    auto_anchors: bool = _f(False, "k-means anchors from the training labels.", group=MODEL, is_flag=True)
    num_anchors: int = _f(3, "Number of anchors for --auto-anchors.", group=MODEL)
    auto_anchors_alg: str = _f("kmeans", "Auto-anchor algorithm (sml_fixed: UHD's small/medium/large medians "
                                         "plus IoU k-means, see docs/recipe.md).", group=MODEL,
                               choices=ANCHOR_ALGORITHMS)
    score_mode: str | None = _f(None, "Score used for detections (default: the head's default_score_mode; "
                                      "the built-in heads: quality_cls when IoU-aware, else obj_quality_cls).", group=MODEL,
                                choices=("obj_quality_cls", "quality_cls", "obj_cls"))
    # -- UHD recipe model options (docs/recipe.md) --
    disable_cls: bool = _f(False, "Class-less head for a single class: no cls branch, scores from objectness/"
                                  "quality only (needs exactly one class).", group=MODEL, is_flag=True)
    utod_conv: str = _f("dw", "Convolution of every DWConv block in backbone and head: dw (depthwise + 1x1) or "
                              "std (one full 3x3 conv).", group=MODEL, choices=("dw", "std"))
    utod_sppf_scale: str = _f("none", "Per-branch scaling inside the backbone's SPPF before the concat: none, "
                                      "bn (BatchNorm) or conv (1x1 conv + BN, no act).", group=MODEL,
                              choices=("none", "bn", "conv"))
    auto_anchors_plot: bool = _f(True, "Write anchors.png (label w/h histograms + anchors) into the run folder "
                                       "when anchors are computed.", group=MODEL, is_flag=True)
    conf_thresh: float = _f(0.15, "Score threshold for precision/recall and exported detections.", group=MODEL)
    nms_iou: float = _f(0.5, "IoU threshold of class-aware NMS.", group=MODEL)

    # ---- loss -------------------------------------------------------------------------
    assigner: str = _f(DEFAULT_ASSIGNER, "Target assigner plugin.", "--assigner", "--anchor-assigner", group=LOSS)
    assigner_opt: list = _f([], "Assigner option key=value (repeatable), e.g. topk=12.", group=LOSS,
                            multiple=True)
    simota_topk: int | None = _f(None, "Seed flag: same as --assigner-opt topk=N.", group=LOSS)
    iou_loss: str = _f(DEFAULT_IOU_LOSS, "Box IoU loss plugin.", group=LOSS)
    iou_loss_opt: list = _f([], "IoU loss option key=value (repeatable).", group=LOSS, multiple=True)
    cls_loss_type: str = _f(DEFAULT_CLS_LOSS, "Classification loss plugin.", "--cls-loss-type", "--cls-loss", group=LOSS)
    cls_loss_opt: list = _f([], "Classification loss option key=value (repeatable).", group=LOSS, multiple=True)
    loss_weight_box: float = _f(1.0, "Box loss weight.", "--loss-weight-box", "--w-box", group=LOSS)
    loss_weight_obj: float = _f(1.0, "Objectness loss weight (UHD recipes: 16).", "--loss-weight-obj", "--w-obj",
                                group=LOSS)
    loss_weight_cls: float = _f(1.0, "Classification loss weight.", "--loss-weight-cls", "--w-cls", group=LOSS)
    loss_weight_quality: float = _f(1.0, "Quality loss weight (UHD recipes: 16).", "--loss-weight-quality",
                                    "--w-quality", group=LOSS)
    obj_loss: str = _f(OBJ_LOSS_BCE, "Objectness loss.", group=LOSS, choices=OBJ_LOSSES)
    obj_target: str = _f(OBJ_TARGET_AUTO, "Objectness target (auto: IoU with a quality head, else binary).",
                         group=LOSS, choices=OBJ_TARGETS)

    # ---- optimisation -----------------------------------------------------------------
    epochs: int = _f(100, "Epochs.", group=OPTIM)
    batch_size: int = _f(32, "Global batch size.", group=OPTIM)
    lr: float = _f(1e-3, "Peak learning rate (AdamW).", group=OPTIM)
    weight_decay: float = _f(1e-4, "Decoupled AdamW weight decay (0 disables).", group=OPTIM)
    lr_schedule: str = _f("cosine", "Learning-rate schedule after warm-up.", group=OPTIM,
                          choices=("cosine", "constant"))
    warmup_epochs: float = _f(1.0, "Linear warm-up length in epochs (0 disables).", group=OPTIM)
    min_lr_ratio: float = _f(0.01, "Final LR of the cosine schedule as a fraction of --lr.", group=OPTIM)
    grad_clip_norm: float = _f(10.0, "Global-norm gradient clipping (0 disables).", group=OPTIM)
    use_ema: bool = _f(False, "Keep EMA weights (evaluated and saved).", group=OPTIM, is_flag=True)
    ema_decay: float = _f(0.9999, "EMA decay (with (1+u)/(10+u) warm-up).", group=OPTIM)
    # -- EMA sizing and small-data safety (docs/recipe.md) --
    ema_window: float = _f(0.0, "If > 0: EMA decay = 1 - 1/(ema_window * total steps), so the EMA averages about "
                                "that fraction of the run (overrides --ema-decay).", group=OPTIM)
    ema_warmup: bool = _f(True, "EMA decay warm-up min(decay, (1+u)/(10+u)); --no-ema-warmup keeps the decay "
                                "constant like the seed's Keras EMA.", group=OPTIM, is_flag=True)
    use_amp: bool = _f(False, "Mixed precision (float16 compute, float32 loss).", group=OPTIM, is_flag=True)
    use_xla: bool = _f(False, "Compile the train step with XLA.", group=OPTIM, is_flag=True)
    strategy: str = _f("default", "tf.distribute strategy: default (one device), mirrored (all local GPUs, or "
                                  "all CPUs as logical devices), multiworker.", group=OPTIM,
                       choices=("default", "mirrored", "multiworker"))

    # ---- distillation -----------------------------------------------------------------
    teacher_ckpt: str | None = _f(None, "Teacher UltraTinyOD checkpoint (.keras).", group=DISTILL)
    distill_weight: float = _f(0.0, "Weight of the raw-logit MSE to the teacher.", group=DISTILL)
    feature_distill_weight: float = _f(0.0, "Weight of the backbone-feature MSE to the teacher.", group=DISTILL)
    # -- UHD anchor-head distillation terms (docs/recipe.md); the teacher may be wider --
    distill_obj: float = _f(0.0, "Weight of BCE(student obj/T, sigmoid(teacher obj/T)) * T^2 over all cells.",
                            group=DISTILL)
    distill_quality: float = _f(0.0, "Weight of the same soft-target BCE on the quality logits.", group=DISTILL)
    distill_box_l1: float = _f(0.0, "Weight of the L1 between student and teacher decoded boxes (cx,cy,w,h).",
                               group=DISTILL)
    distill_kl: float = _f(0.0, "Weight of the class term: KL(softmax(teacher cls/T) || softmax(student cls/T)) * T^2 "
                                "per cell, mean over all cells (one class: the soft-target BCE of --distill-obj on "
                                "the class logit).", group=DISTILL)
    distill_feat: float = _f(0.0, "Weight of UHD's feature term: mean |n(A(student feat)) - n(teacher feat)| with n() "
                                  "the L2 normalisation over channels and A the 1x1 adapter when the widths differ.",
                             group=DISTILL)
    distill_temperature: float = _f(1.0, "Temperature T of the obj/quality/kl distillation terms.", group=DISTILL)
    distill_cosine: bool = _f(False, "Ramp every distillation term by 0.5*(1-cos(pi*(epoch+1)/epochs)).",
                              group=DISTILL, is_flag=True)

    # ---- run --------------------------------------------------------------------------
    exp_name: str | None = _f(None, "Run name: outputs go to runs/<exp-name>.", group=RUN)
    ckpt_out: str | None = _f(None, "Run folder (overrides runs/<exp-name>).", group=RUN)
    log_dir: str | None = _f(None, "TensorBoard folder (default: <run>/tensorboard).", group=RUN)
    log_interval: int = _f(10, "Steps between progress/TensorBoard updates.", group=RUN)
    eval_interval: int = _f(1, "Epochs between validations.", group=RUN)
    save_interval: int = _f(200, "Steps between resumable mid-epoch train-state saves.", group=RUN)
    keep_checkpoints: int = _f(3, "How many best_/last_ .keras files of each kind to keep.", group=RUN)
    resume: str | None = _f(None, "Run folder (or a file in it) to continue.", group=RUN)
    # -- presets (utod/presets.py, docs/recipe.md) --
    preset: str | None = _f(None, "Named group of settings applied under --config and explicit flags: "
                                  "seed, uhd, small-data (see docs/recipe.md).", group=RUN,
                            choices=PRESET_NAMES)

    # ---- fine-tuning, early stop, devices (utod/finetune.py, utod/train/early_stop.py, utod/devices.py)
    weights: str | None = _f(None, "Initialise the model from this checkpoint (.keras) to fine-tune: network "
                                   "settings not given here are the checkpoint's; with another class count the "
                                   "head's class output is re-initialised. Optimiser and epochs start fresh.",
                             group=RUN)
    patience: int = _f(0, "Stop when val mAP@0.5 has not improved for N evaluations (0: never).", group=RUN)
    device: str | None = _f(None, "Devices: cpu, one GPU index (0), or several (0,1 -> mirrored strategy). "
                                  "Default: TensorFlow's choice and --strategy.", group=RUN)

    # ------------------------------------------------------------------ derived values
    def image_hw(self) -> tuple[int, int]:
        return parse_img_size(self.img_size)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]


# Settings that fix the network, the resumable state or the data stream: a resumed run must
# keep them (the train state and the per-(seed, epoch) augmentation depend on them).
ARCHITECTURE_FIELDS = (
    "img_size", "cnn_width", "activation", "use_batchnorm", "utod_residual", "head", "head_opt",
    "use_improved_head", "use_iou_aware_head", "use_head_ese", "cls_bottleneck_ratio", "utod_large_obj_branch",
    "utod_large_obj_depth", "utod_large_obj_ch_scale", "classes", "num_classes", "names", "image_dir",
    "data", "data_format", "train_list", "val_list",
    "train_split", "val_split", "seed", "batch_size", "anchors", "auto_anchors", "num_anchors",
    "auto_anchors_alg", "use_ema", "teacher_ckpt", "distill_weight", "feature_distill_weight", "resize_mode",
    "aug_config", "no_aug", "max_boxes", "strategy",
    "disable_cls", "utod_conv", "utod_sppf_scale", "ema_window", "ema_warmup", "distill_obj", "distill_quality",
    "distill_box_l1", "distill_kl", "distill_feat", "distill_temperature", "distill_cosine", "preset",
)


def parse_img_size(text: Any) -> tuple[int, int]:
    """``"64x64"``/``"64X96"``/``"64"``/``[64, 96]`` -> (H, W); sides must be multiples of 8."""
    try:
        if isinstance(text, (list, tuple)):
            parts = [int(v) for v in text]
        else:
            s = str(text).replace(" ", "").lower()
            parts = [int(float(s))] if "x" not in s else [int(p) for p in s.split("x")]
        if len(parts) == 1:
            parts = parts * 2
        if len(parts) != 2:
            raise ValueError
    except ValueError:
        raise ConfigError(f"--img-size expects HxW like 64x64, got {text!r}") from None
    h, w = parts
    if h <= 0 or w <= 0 or h % 8 or w % 8:
        raise ConfigError(f"--img-size {h}x{w}: both sides must be positive multiples of the stride 8")
    return h, w


def load_yaml_config(path: str | Path) -> dict[str, Any]:
    """Read a run YAML: keys are TrainConfig field names (dashes allowed) or component
    blocks such as ``assigner: {name: simota, topk: 12}``. Unknown keys are an error."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {p} does not exist")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: invalid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: expected a mapping of settings at the top level")
    return normalise_config_dict(data, source=str(p))


_COMPONENT_KEYS = {"assigner": "assigner_opt", "iou_loss": "iou_loss_opt", "cls_loss_type": "cls_loss_opt",
                   "head": "head_opt"}


def normalise_config_dict(data: dict[str, Any], source: str = "config") -> dict[str, Any]:
    names = set(TrainConfig.field_names())
    out: dict[str, Any] = {}
    for raw_key, value in data.items():
        key = str(raw_key).strip().lstrip("-").replace("-", "_")
        if key == "cls_loss":
            key = "cls_loss_type"
        if key not in names:
            close = difflib.get_close_matches(key, sorted(names), n=1)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            raise ConfigError(f"{source}: unknown setting '{raw_key}'.{hint}")
        if key in _COMPONENT_KEYS and isinstance(value, dict):
            opts = dict(value)
            name = opts.pop("name", None)
            if name is not None:
                out[key] = name
            out[_COMPONENT_KEYS[key]] = [f"{k}={_yaml_scalar(v)}" for k, v in opts.items()]
            continue
        if key.endswith("_opt") and isinstance(value, dict):
            value = [f"{k}={_yaml_scalar(v)}" for k, v in value.items()]
        out[key] = value
    return out


def _yaml_scalar(v: Any) -> str:
    return yaml.safe_dump(v, default_flow_style=True).strip().removesuffix("...").strip()


def build_config(overrides: dict[str, Any]) -> TrainConfig:
    """A TrainConfig from defaults plus ``overrides`` (field -> value), type-checked."""
    cfg = TrainConfig()
    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    for key, value in overrides.items():
        f = fields[key]
        setattr(cfg, key, _coerce_field(f, value))
    return cfg


def _coerce_field(f: dataclasses.Field, value: Any) -> Any:
    if value is None:
        return None
    default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
    kind = type(default) if default is not None else None
    ann = str(f.type)
    try:
        if kind is bool or ann.startswith("bool"):
            if isinstance(value, str):
                return value.strip().lower() in ("1", "true", "yes", "on")
            return bool(value)
        if kind is list or ann.startswith("list"):
            return list(value) if isinstance(value, (list, tuple)) else [value]
        if kind is int or ann.startswith("int"):
            return int(value)
        if kind is float or ann.startswith("float"):
            return float(value)
        if ann.startswith("str"):
            return value if isinstance(value, str) else str(value)
    except (TypeError, ValueError):
        raise ConfigError(f"setting '{f.name}' expects {ann}, got {value!r}") from None
    return value


def save_config(cfg: TrainConfig, path: str | Path) -> None:
    """Write ``cfg`` as YAML atomically (a kill mid-write leaves the old file intact)."""
    from utod.atomic import write_text

    write_text(path, yaml.safe_dump(cfg.to_dict(), sort_keys=False))
