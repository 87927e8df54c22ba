"""``utod train`` end to end: set up the run, then hand over to :class:`Trainer`."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from utod.atomic import check_writable_dir, clean_stale_temps
from utod.config import save_config
from utod.errors import DataError
from utod.runfolder import check_epochs_left, drop_undecodable, saved_split
from utod.runlock import RunLock
from utod.seed_compat import assigner_options_from_flags, head_name
from utod.train.distribution import (
    configure_devices,
    make_strategy,
    release_write_dir,
    worker_role,
    write_dir_for,
)
from utod.train.setup import (
    ResolvedRun,
    check_new_run_dir,
    head_options,
    plugins_used,
    resolve_config,
    write_json,
)


def log(msg: str) -> None:
    print(msg, flush=True)


def _resolve_anchors(cfg, train_items, class_ids, run_dir: Path | None = None) -> tuple[list[list[float]] | None, str]:
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


def run_training(cli_given: dict[str, Any], config_file: str | None = None):
    """Resolve the run, build everything, train. Returns the finished :class:`Trainer`
    (``trainer.last_metrics`` holds the final validation metrics). The run folder is locked
    (:class:`utod.runlock.RunLock`) from its first write to the end."""
    resolved: ResolvedRun = resolve_config(cli_given, config_file)  # every setting validated here
    # only the chief writes the run folder; other workers of a multi-worker run write to their own
    role = worker_role(resolved.cfg.strategy)
    write_dir = write_dir_for(resolved.run_dir, role, resolved.resuming)
    if not role.is_chief:
        log(f"Worker {role.task_type}:{role.task_id} of {role.num_workers}: the chief writes the run folder "
            f"{resolved.run_dir}; this worker writes to {write_dir}")
    lock = RunLock(write_dir, log=log)
    try:
        return _run_training(resolved, lock, write_dir, role.is_chief)
    finally:
        lock.release()
        release_write_dir(write_dir, resolved.run_dir)


def _run_training(resolved: ResolvedRun, lock: RunLock, run_dir: Path, is_chief: bool):
    cfg = resolved.cfg
    # the strategy first: logical devices and collective ops are fixed when TensorFlow starts
    configure_devices(cfg.strategy)
    strategy = make_strategy(cfg.strategy)
    from utod._keras import keras
    from utod.data.augment import build_augmenter, load_aug_config
    from utod.data.model_input import input_channels
    from utod.model.config import ModelConfig
    from utod.registry import get_registry, parse_option_pairs, validate_options, warn_failures

    registry = get_registry()
    warn_failures(registry)

    # Every component choice and option is checked before any time goes into the data.
    aug_ops = [] if cfg.no_aug else load_aug_config(cfg.aug_config)
    build_augmenter(registry, aug_ops)
    hname = head_name(cfg)
    hopts = head_options(cfg, registry.get("head", hname).params)
    validate_options(registry.get("head", hname), hopts)
    registry.get("resize", cfg.resize_mode)
    assigner_opts = assigner_options_from_flags(cfg, registry.get("assigner", cfg.assigner).params,
                                                parse_option_pairs(cfg.assigner_opt, "--assigner-opt"))
    loss_opts = {
        "assigner_options": assigner_opts,
        "iou_options": parse_option_pairs(cfg.iou_loss_opt, "--iou-loss-opt"),
        "cls_options": parse_option_pairs(cfg.cls_loss_opt, "--cls-loss-opt"),
    }
    used = plugins_used(registry, cfg, aug_ops)
    for kind, name, opts in (("assigner", cfg.assigner, assigner_opts),
                             ("iou_loss", cfg.iou_loss, loss_opts["iou_options"]),
                             ("cls_loss", cfg.cls_loss_type, loss_opts["cls_options"])):
        validate_options(registry.get(kind, name), opts)

    if not resolved.resuming:
        if is_chief:
            check_new_run_dir(run_dir)
    else:
        check_epochs_left(run_dir, cfg.epochs)
    lock.acquire()  # creates the folder; a second `utod train` into it is refused here
    check_writable_dir(run_dir)
    clean_stale_temps(run_dir, log=log)  # left by a run killed mid-write
    keep_split = None
    if resolved.resuming:  # the saved split is the truth on resume
        keep_split = saved_split(run_dir)
        if keep_split is None:
            raise DataError(f"cannot resume {run_dir}: train.txt (the run's split) is missing; nothing was changed")

    data = None
    if resolved.used_default_data:
        from utod.data.synthetic import ensure_default_dataset

        root = ensure_default_dataset()
        data = str(root)
        log(f"No --data / --image-dir given: training on the built-in generated dataset at {root}")
    keras.utils.set_random_seed(cfg.seed)
    from utod.data.loading import load_training_data

    loaded = load_training_data(cfg, run_dir, data=data, log=log, keep_split=keep_split)
    classes, train_items, val_items = loaded.classes, loaded.train, loaded.val
    class_ids = list(classes.class_ids)
    # undecodable images: reported, counted and out of the split; the trainer gets the lists its
    # data pipeline's cache was just built for (it drops the same images itself, no second decode)
    all_train, all_val = train_items, val_items
    train_items, val_items = drop_undecodable(train_items, val_items, cfg, registry, run_dir, loaded.dataset,
                                              log, rewrite_split=keep_split is None)
    if not train_items:
        raise DataError("the training split is empty: none of its images can be decoded")

    # ---- model configuration ----------------------------------------------------------
    anchors, anchor_source = _resolve_anchors(cfg, train_items, class_ids, run_dir)
    h, w = cfg.image_hw()
    mkw: dict[str, Any] = dict(
        img_size=(h, w), num_classes=len(class_ids), class_names=list(classes.names), class_ids=class_ids,
        cnn_width=cfg.cnn_width, activation=cfg.activation, use_batchnorm=cfg.use_batchnorm,
        residual=cfg.utod_residual, head=hname, head_options=hopts, resize_mode=cfg.resize_mode,
        score_mode=cfg.score_mode, quality_power=cfg.quality_power, conf_thresh=cfg.conf_thresh,
        nms_iou=cfg.nms_iou,
        # recipe options: backbone conv mode / SPPF scaling, class-less head, input channels of the input mode
        conv=cfg.utod_conv, sppf_scale=cfg.utod_sppf_scale, disable_cls=cfg.disable_cls,
        in_channels=input_channels(registry.create("resize", cfg.resize_mode)),
    )
    if anchors is not None:
        mkw["anchors"] = anchors
    model_cfg = ModelConfig(**mkw)
    log(f"Anchors ({anchor_source}): {np.round(np.asarray(model_cfg.anchors), 5).tolist()}")

    # Written on resume too, so a raised --epochs sticks for the next --resume.
    save_config(dataclasses.replace(cfg, resume=None), run_dir / "config.yaml")
    write_json(run_dir / "plugins.json", used)
    write_json(run_dir / "model_config.json", model_cfg.to_dict())

    if cfg.use_amp:
        keras.mixed_precision.set_global_policy("mixed_float16")
        log("Mixed precision: float16 compute, float32 loss and weights.")

    from utod.train.loop import Trainer

    try:
        trainer = Trainer(
            cfg=cfg, run_dir=run_dir, registry=registry, model_cfg=model_cfg, train_items=all_train,
            val_items=all_val if val_items else [], aug_ops=aug_ops, loss_opts=loss_opts, plugins=used,
            strategy=strategy, resuming=resolved.resuming, log=log,
        )
        trainer.fit()
    finally:
        if cfg.use_amp:  # the policy is process-wide: do not leak it into later work
            keras.mixed_precision.set_global_policy("float32")
    return trainer
