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
from utod.train.setup import check_new_run_dir, head_options, plugins_used, write_json


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
    data_source: str  # what was read (folder, description file, lists)
    class_ids: list[int]
    class_names: list[str]
    train_items: list[Any]  # DatasetItem
    val_items: list[Any]
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


def _load_data(cfg: TrainConfig, run_dir: Path, resuming: bool, used_default_data: bool, registry,
               log: Callable[[str], None]):
    """The dataset (:func:`utod.data.loading.load_training_data`: any layout, classes, split,
    guard rails; it records train.txt / val.txt, data_issues.txt and dataset.json in the run
    folder; a resumed run keeps its saved split), generating the built-in dataset when none is
    given. Undecodable images are reported and left out of the split
    (:func:`utod.runfolder.drop_undecodable`, which builds the image cache the pipelines reuse).
    Returns (loaded, decodable train items, decodable val items)."""
    from utod.data.loading import load_training_data
    from utod.runfolder import drop_undecodable, saved_split

    keep_split = None
    if resuming:  # the saved split is the truth on resume
        keep_split = saved_split(run_dir)
        if keep_split is None:
            raise DataError(f"cannot resume {run_dir}: train.txt (the run's split) is missing; nothing was changed")
    data = None
    if used_default_data:
        from utod.data.synthetic import ensure_default_dataset

        root = ensure_default_dataset()
        data = str(root)
        log(f"No --data / --image-dir given: training on the built-in generated dataset at {root}")
    loaded = load_training_data(cfg, run_dir, data=data, log=log, keep_split=keep_split)
    train, val = drop_undecodable(loaded.train, loaded.val, cfg, registry, run_dir, loaded.dataset, log,
                                  rewrite_split=keep_split is None)
    if not train:
        raise DataError("the training split is empty: none of its images can be decoded")
    return loaded, train, val


def resolve_anchors(cfg: TrainConfig, train_items, class_ids, log,
                    run_dir: Path | None = None) -> tuple[list[list[float]] | None, str]:
    """Anchors from --anchors, k-means over the training boxes (--auto-anchors; their plot in
    ``run_dir``/anchors.png with --auto-anchors-plot), or None (the model's defaults); with
    where they came from."""
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
        if cfg.auto_anchors_plot and run_dir is not None:
            from utod.anchors import plot_anchors

            try:
                plot_anchors(arr, anchors, run_dir / "anchors.png", f"Auto-anchors w/h ({cfg.auto_anchors_alg})")
            except Exception as exc:  # a plotting problem must never stop training
                log(f"  (could not draw anchors.png: {exc})")
        return [[float(a), float(b)] for a, b in anchors], f"auto ({cfg.auto_anchors_alg})"
    return None, "default"


def _model_config(cfg: TrainConfig, classes, class_ids, head: ComponentChoice, anchors, in_channels: int):
    from utod.model.config import ModelConfig

    h, w = cfg.image_hw()
    kw: dict[str, Any] = dict(
        img_size=(h, w), num_classes=len(class_ids), class_names=list(classes.names), class_ids=class_ids,
        cnn_width=cfg.cnn_width, activation=cfg.activation, use_batchnorm=cfg.use_batchnorm,
        residual=cfg.utod_residual, head=head.name, head_options=dict(head.options), resize_mode=cfg.resize_mode,
        score_mode=cfg.score_mode, quality_power=cfg.quality_power, conf_thresh=cfg.conf_thresh,
        nms_iou=cfg.nms_iou,
        # recipe options: backbone conv mode / SPPF scaling, class-less head, input channels of the input mode
        conv=cfg.utod_conv, sppf_scale=cfg.utod_sppf_scale, disable_cls=cfg.disable_cls, in_channels=in_channels,
    )
    if anchors is not None:
        kw["anchors"] = anchors
    return ModelConfig(**kw)


def make_plan(resolved, registry, lock, log: Callable[[str], None] = print, *, run_dir: Path | None = None,
              is_chief: bool = True) -> TrainPlan:
    """Components, data and model configuration for the resolved settings
    (:func:`utod.train.setup.resolve_config`; see the module docstring). ``lock``: the
    :class:`utod.runlock.RunLock` of the folder this process writes, acquired here before the
    first write; ``run_dir``: that folder (default the run folder; a non-chief worker of a
    multi-worker run writes its own, :mod:`utod.train.distribution`)."""
    from utod.atomic import check_writable_dir, clean_stale_temps
    from utod.runfolder import check_epochs_left

    cfg, run_dir = resolved.cfg, Path(run_dir or resolved.run_dir)
    parts = _component_choices(cfg, registry)
    if not resolved.resuming:
        if is_chief:
            check_new_run_dir(run_dir)
    else:
        check_epochs_left(run_dir, cfg.epochs)
    lock.acquire()  # creates the folder; a second `utod train` into it is refused here
    check_writable_dir(run_dir)
    clean_stale_temps(run_dir, log=log)  # left by a run killed mid-write
    loaded, train_items, val_items = _load_data(cfg, run_dir, resolved.resuming, resolved.used_default_data,
                                                registry, log)
    classes = loaded.classes
    class_ids = list(classes.class_ids)
    anchors, anchor_source = resolve_anchors(cfg, train_items, class_ids, log, run_dir)
    from utod.data.model_input import input_channels

    model_cfg = _model_config(cfg, classes, class_ids, parts["head"], anchors,
                              input_channels(registry.create("resize", cfg.resize_mode)))
    log(f"Anchors ({anchor_source}): {np.round(np.asarray(model_cfg.anchors), 5).tolist()}")
    return TrainPlan(cfg=cfg, run_dir=run_dir, resuming=resolved.resuming, data_source=loaded.dataset.source.describe(),
                     class_ids=class_ids, class_names=list(classes.names),
                     # the lists the pipelines' image cache was built for (they drop undecodable images themselves)
                     train_items=loaded.train, val_items=loaded.val if val_items else [], model_cfg=model_cfg,
                     anchor_source=anchor_source, **parts)


def write_run_files(plan: TrainPlan, log: Callable[[str], None] = print) -> None:
    """Record the plan in the run folder (the data loader already wrote the split,
    data_issues.txt and dataset.json). config.yaml is written on resume too, so a raised
    --epochs sticks for the next --resume."""
    run_dir = plan.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(dataclasses.replace(plan.cfg, resume=None), run_dir / "config.yaml")
    write_json(run_dir / "plugins.json", plan.plugins)
    write_json(run_dir / "model_config.json", plan.model_cfg.to_dict())
