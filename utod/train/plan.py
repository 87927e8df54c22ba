"""Step 1 of a training run: resolve everything once into a frozen, TensorFlow-free
:class:`TrainPlan` — the settings, the data (classes, scanned items, split), every
component choice with its validated options, and the model configuration.

Nothing here builds a TensorFlow object; every choice and option is checked here, before
any time goes into the data, so a typo costs nothing. :func:`write_run_files` then records
the plan in the run folder (config.yaml, plugins.json, model_config.json, the split,
data_issues.txt).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from utod.config import TrainConfig, save_config
from utod.errors import DataError
from utod.seed_compat import assigner_options_from_flags, head_name
from utod.train.setup import check_new_run_dir, head_options, plugins_used, resolve_config, write_json


@dataclass(frozen=True)
class ComponentChoice:
    """One plugin the run uses: registry kind, name and validated options."""

    kind: str
    name: str
    options: dict[str, Any]


@dataclass(frozen=True)
class TrainPlan:
    """Everything a run needs, resolved once. ``cfg`` is the final TrainConfig (defaults <
    YAML < CLI, or the resumed run's config < CLI); ``model_cfg`` a ModelConfig."""

    cfg: TrainConfig
    run_dir: Path
    resuming: bool
    image_dir: str
    class_ids: list[int]
    class_names: list[str]
    train_items: list[Any]  # DatasetItem
    val_items: list[Any]
    data_issues: list[str]
    aug_ops: list[tuple[str, dict]]  # checked, in order ([] = no augmentation)
    assigner: ComponentChoice
    iou_loss: ComponentChoice
    cls_loss: ComponentChoice
    head: ComponentChoice
    resize: ComponentChoice
    plugins: list[dict[str, Any]]  # provenance: kind, name, provider, version
    model_cfg: Any  # utod.model.config.ModelConfig
    anchor_source: str

    @property
    def has_validation(self) -> bool:
        return bool(self.val_items)


def _component_choices(cfg: TrainConfig, registry) -> dict[str, Any]:
    """Every component and option the run will build, checked (no TensorFlow). The options are
    kept as given; the registry coerces them when the component is built."""
    from utod.data.augment import load_aug_config
    from utod.registry import parse_option_pairs, validate_options

    aug_ops = [] if cfg.no_aug else load_aug_config(cfg.aug_config)
    for name, params in aug_ops:
        validate_options(registry.get("augmentation", name), dict(params))
    hname = head_name(cfg)
    head = ComponentChoice("head", hname, head_options(cfg, registry.get("head", hname).params))
    validate_options(registry.get("head", hname), head.options)
    resize = ComponentChoice("resize", cfg.resize_mode, {})
    registry.get("resize", cfg.resize_mode)
    a_opts = assigner_options_from_flags(cfg, registry.get("assigner", cfg.assigner).params,
                                         parse_option_pairs(cfg.assigner_opt, "--assigner-opt"))
    losses = {}
    for key, kind, name, opts in (("assigner", "assigner", cfg.assigner, a_opts),
                                  ("iou_loss", "iou_loss", cfg.iou_loss,
                                   parse_option_pairs(cfg.iou_loss_opt, "--iou-loss-opt")),
                                  ("cls_loss", "cls_loss", cfg.cls_loss_type,
                                   parse_option_pairs(cfg.cls_loss_opt, "--cls-loss-opt"))):
        validate_options(registry.get(kind, name), opts)
        losses[key] = ComponentChoice(kind, name, opts)
    return dict(aug_ops=list(aug_ops), head=head, resize=resize, plugins=plugins_used(registry, cfg, aug_ops),
                **losses)


def _data_folder(cfg: TrainConfig, used_default_data: bool, log: Callable[[str], None]) -> str:
    """The image folder (generating the built-in dataset when none is given); may set
    ``cfg.names`` from the folder's obj.names / classes.txt."""
    image_dir = cfg.image_dir
    if used_default_data and not image_dir:
        from utod.data.synthetic import ensure_default_dataset

        root = ensure_default_dataset()
        image_dir = str(root)
        if not cfg.names and (root / "obj.names").is_file():
            cfg.names = str(root / "obj.names")
        log(f"No --image-dir given: training on the built-in generated dataset at {root}")
    if not image_dir:
        raise DataError("--image-dir is required")
    if not (cfg.names or cfg.num_classes or cfg.classes):
        found = [Path(image_dir) / n for n in ("obj.names", "classes.txt") if (Path(image_dir) / n).is_file()]
        if found:
            cfg.names = str(found[0])
            log(f"Class names from {found[0]} (pass --names, --num-classes or --classes to override)")
    return image_dir


def resolve_anchors(cfg: TrainConfig, train_items, class_ids, log) -> tuple[list[list[float]] | None, str]:
    """Anchors from --anchors, k-means over the training boxes (--auto-anchors), or None
    (the model's defaults); with where they came from."""
    if cfg.anchors:
        from utod.anchors import parse_anchors

        return parse_anchors(cfg.anchors), "--anchors"
    if cfg.auto_anchors:
        from utod.anchors import kmeans_anchors, mean_best_iou

        wh = [it.boxes[np.isin(it.labels, class_ids)][:, 2:4] for it in train_items if len(it.boxes)]
        arr = np.concatenate(wh, 0) if wh else np.zeros((0, 2), np.float32)
        arr = arr[(arr[:, 0] > 0) & (arr[:, 1] > 0)]
        if len(arr) == 0:
            log("Auto-anchors: no boxes in the training split; using the default anchors.")
            return None, "default (no labels for auto-anchors)"
        anchors = kmeans_anchors(arr, cfg.num_anchors, alg=cfg.auto_anchors_alg, seed=0)
        log(f"Auto-anchors ({cfg.auto_anchors_alg}, k={cfg.num_anchors}): mean best IoU "
            f"{mean_best_iou(arr, anchors):.3f} over {len(arr)} boxes")
        return [[float(a), float(b)] for a, b in anchors], f"auto ({cfg.auto_anchors_alg})"
    return None, "default"


def _model_config(cfg: TrainConfig, classes, class_ids, head: ComponentChoice, anchors):
    from utod.model.config import ModelConfig

    h, w = cfg.image_hw()
    kw: dict[str, Any] = dict(
        img_size=(h, w), num_classes=len(class_ids), class_names=list(classes.names), class_ids=class_ids,
        cnn_width=cfg.cnn_width, activation=cfg.activation, use_batchnorm=cfg.use_batchnorm,
        residual=cfg.utod_residual, head=head.name, head_options=dict(head.options), resize_mode=cfg.resize_mode,
        score_mode=cfg.score_mode, quality_power=cfg.quality_power, conf_thresh=cfg.conf_thresh,
        nms_iou=cfg.nms_iou,
    )
    if anchors is not None:
        kw["anchors"] = anchors
    return ModelConfig(**kw)


def make_plan(cli_given: dict[str, Any], config_file: str | None, registry,
              log: Callable[[str], None] = print) -> TrainPlan:
    """Resolve settings, components, data and model configuration (see the module docstring)."""
    from utod.data.classes import resolve_classes
    from utod.data.dataset import scan_dataset
    from utod.data.split import split_items

    resolved = resolve_config(cli_given, config_file)
    cfg, run_dir = resolved.cfg, resolved.run_dir
    parts = _component_choices(cfg, registry)
    if not resolved.resuming:
        check_new_run_dir(run_dir)
    image_dir = _data_folder(cfg, resolved.used_default_data, log)
    classes = resolve_classes(cfg.classes, cfg.num_classes, cfg.names)
    class_ids = list(classes.class_ids)
    scan = scan_dataset(image_dir, class_ids=class_ids if classes.subset else None, num_classes=len(class_ids),
                        log=log)
    log(scan.summary.format())
    train_items, val_items = split_items(scan.items, cfg.train_split, cfg.val_split, cfg.seed)
    log(f"Split (seed {cfg.seed}): {len(train_items)} train, {len(val_items)} val images")
    if len(train_items) < 1:
        raise DataError("the training split is empty")
    anchors, anchor_source = resolve_anchors(cfg, train_items, class_ids, log)
    model_cfg = _model_config(cfg, classes, class_ids, parts["head"], anchors)
    log(f"Anchors ({anchor_source}): {np.round(np.asarray(model_cfg.anchors), 5).tolist()}")
    return TrainPlan(cfg=cfg, run_dir=run_dir, resuming=resolved.resuming, image_dir=image_dir,
                     class_ids=class_ids, class_names=list(classes.names), train_items=train_items,
                     val_items=val_items, data_issues=list(scan.issues), model_cfg=model_cfg,
                     anchor_source=anchor_source, **parts)


def write_run_files(plan: TrainPlan, log: Callable[[str], None] = print) -> None:
    """Record the plan in the run folder. config.yaml is written on resume too, so a raised
    --epochs sticks for the next --resume."""
    from utod.data.split import write_split

    run_dir = plan.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    if plan.data_issues:
        (run_dir / "data_issues.txt").write_text("\n".join(plan.data_issues) + "\n", encoding="utf-8")
        log(f"{len(plan.data_issues)} data issue(s) listed in {run_dir / 'data_issues.txt'}")
    write_split(run_dir, plan.train_items, plan.val_items)
    save_config(dataclasses.replace(plan.cfg, resume=None), run_dir / "config.yaml")
    write_json(run_dir / "plugins.json", plan.plugins)
    write_json(run_dir / "model_config.json", plan.model_cfg.to_dict())
