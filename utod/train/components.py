"""Step 2 of a training run: build every component of the :class:`~utod.train.plan.TrainPlan`
once — the input pipelines (with the augmenter), the model (and its EMA copy), the
optimiser and its schedule, the loss (assigner + IoU loss + cls loss), the teacher and
distillation loss, and the resumable :class:`~utod.train.state.TrainState`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from utod._keras import keras
from utod.errors import ConfigError
from utod.train.ema import EMA
from utod.train.plan import TrainPlan
from utod.train.schedule import WarmupCosine
from utod.train.state import TrainState


@dataclass
class Components:
    """The built run. ``eval_model`` is the model evaluated and saved (a separate copy that
    receives the EMA weights with ``--use-ema``, else ``model`` itself)."""

    strategy: Any
    train_data: Any  # utod.data.pipeline.DetectionData
    val_data: Any | None
    model: Any
    eval_model: Any
    ema: EMA | None
    schedule: WarmupCosine
    optimizer: Any
    loss_fn: Any  # utod.loss.DetectionLoss
    teacher: Any | None
    distill: Any | None
    state: TrainState

    @property
    def steps_per_epoch(self) -> int:
        return int(self.train_data.steps_per_epoch)  # >= 1 (small sets are repeated)

    def trainable_variables(self) -> list:
        """Model + distillation adapter variables, in the order the optimiser was built for."""
        vs = list(self.model.trainable_variables)
        if self.distill is not None:
            vs += list(getattr(self.distill, "trainable_variables", []) or [])
        return vs

    def sync_eval_model(self) -> None:
        """Put the weights to evaluate/save into ``eval_model`` (the EMA shadow, if any)."""
        if self.ema is not None:
            self.ema.copy_to(self.eval_model)

    def close(self) -> None:
        """Stop the data worker threads."""
        self.train_data.close()
        if self.val_data is not None:
            self.val_data.close()


def _pipelines(plan: TrainPlan, registry):
    from utod.data.augment import build_augmenter
    from utod.data.pipeline import DetectionData, PipelineConfig

    cfg, mcfg = plan.cfg, plan.model_cfg
    kw = dict(img_size=tuple(mcfg.img_size), batch_size=cfg.batch_size, max_boxes=cfg.max_boxes,
              resize_mode=cfg.resize_mode, class_ids=list(mcfg.class_ids), seed=cfg.seed,
              cache_dir=cfg.cache_dir, num_workers=cfg.num_workers)
    augmenter = build_augmenter(registry, plan.aug_ops) if plan.aug_ops else None
    train = DetectionData(plan.train_items, PipelineConfig(aug_ops=plan.aug_ops, worker_mode=cfg.worker_mode, **kw),
                          registry, training=True, augmenter=augmenter)
    val_kw = {**kw, "batch_size": eval_batch_size(cfg.batch_size, tuple(mcfg.img_size))}
    val = (DetectionData(plan.val_items, PipelineConfig(aug_ops=None, **val_kw), registry, training=False)
           if plan.val_items else None)
    return train, val


EVAL_PIXEL_BUDGET = 128 * 64 * 64
"""Validation batches grow towards this many input pixels (128 images of 64x64): a
forward-only step keeps no activations for a backward pass, and its fixed per-batch cost
(loss, decode, NMS, the call itself) is spread over more images. Measured for the seed
configuration (W=64, 64x64): forward 1.16 ms/image at batch 64, 1.06 at 128, 1.03 at 256."""


def eval_batch_size(train_batch: int, img_size: tuple[int, int]) -> int:
    """The validation batch for training batches of ``train_batch`` images of ``img_size``
    (H, W): ``k * train_batch`` with k in 1..4 as large as :data:`EVAL_PIXEL_BUDGET` allows
    (a multiple of the training batch, so it splits over replicas like it). Large inputs keep
    the training batch. The validation loss is the mean of per-batch losses at this size."""
    per_image = max(1, int(img_size[0]) * int(img_size[1]))
    k = EVAL_PIXEL_BUDGET // (per_image * max(1, int(train_batch)))
    return int(train_batch) * int(min(4, max(1, k)))


def _optimizer(cfg, steps_per_epoch: int):
    total_steps = steps_per_epoch * cfg.epochs
    schedule = WarmupCosine(cfg.lr, total_steps, int(round(cfg.warmup_epochs * steps_per_epoch)),
                            cfg.min_lr_ratio, cosine=cfg.lr_schedule == "cosine")
    opt = keras.optimizers.AdamW(learning_rate=schedule, weight_decay=cfg.weight_decay, epsilon=1e-8)
    if cfg.use_amp:
        opt = keras.mixed_precision.LossScaleOptimizer(opt)
    return schedule, opt


def _loss(plan: TrainPlan, registry, model):
    from utod.loss import LossWeights, build_loss

    cfg = plan.cfg
    return build_loss(
        registry, assigner=plan.assigner.name, assigner_options=plan.assigner.options,
        iou_loss=plan.iou_loss.name, iou_options=plan.iou_loss.options, cls_loss=plan.cls_loss.name,
        cls_options=plan.cls_loss.options, num_anchors=model.num_anchors, num_classes=model.num_classes,
        has_quality=model.has_quality,
        weights=LossWeights(box=cfg.loss_weight_box, obj=cfg.loss_weight_obj, cls=cfg.loss_weight_cls,
                            quality=cfg.loss_weight_quality),
        obj_loss=cfg.obj_loss, obj_target=cfg.obj_target,
    )


def _ema(cfg, model, total_steps: int, log) -> EMA | None:
    """The EMA shadow with --use-ema (decay from --ema-decay or --ema-window, warnings for
    decays a short run cannot warm up). Call under the scope."""
    if not cfg.use_ema:
        return None
    from utod.ema_safety import ema_decay_for, ema_messages

    decay = ema_decay_for(cfg, total_steps)
    if cfg.ema_window > 0:
        log(f"EMA decay {decay:.6f} (--ema-window {cfg.ema_window:g} of {total_steps} steps)")
    for msg in ema_messages(decay, total_steps, cfg.ema_warmup):
        log(msg)
    return EMA(model, decay, warmup=cfg.ema_warmup)


def _distillation(plan: TrainPlan, registry, model, log):
    """(teacher, DistillLoss) when distillation is on, else (None, None). Call under the scope."""
    cfg = plan.cfg
    anchor_terms = cfg.distill_obj > 0 or cfg.distill_quality > 0 or cfg.distill_box_l1 > 0 or cfg.distill_kl > 0
    feature_terms = cfg.feature_distill_weight > 0 or cfg.distill_feat > 0
    if not (cfg.teacher_ckpt and (cfg.distill_weight > 0 or feature_terms or anchor_terms)):
        return None, None
    from utod.distill import DistillLoss, check_anchor_terms_compatible, check_teacher_compatible, raw_layout
    from utod.model.io import load_checkpoint

    teacher, _ = load_checkpoint(cfg.teacher_ckpt, registry)
    teacher.trainable = False
    if teacher.config.in_channels != plan.model_cfg.in_channels:
        raise ConfigError(f"--teacher-ckpt {cfg.teacher_ckpt}: teacher input has {teacher.config.in_channels} "
                          f"channels, the student {plan.model_cfg.in_channels} (use the same --resize-mode input mode)")
    if cfg.distill_weight > 0:
        check_teacher_compatible(model, teacher)
    if anchor_terms:
        check_anchor_terms_compatible(model, teacher, cfg.distill_quality > 0, need_classes=cfg.distill_kl > 0)
    distill = DistillLoss(cfg.distill_weight, cfg.feature_distill_weight,
                          student_channels=4 * plan.model_cfg.cnn_width,
                          teacher_channels=4 * teacher.config.cnn_width,
                          obj_weight=cfg.distill_obj, quality_weight=cfg.distill_quality,
                          box_l1_weight=cfg.distill_box_l1, kl_weight=cfg.distill_kl,
                          feat_l1_weight=cfg.distill_feat,
                          temperature=cfg.distill_temperature,
                          cosine=cfg.distill_cosine, student_layout=raw_layout(model),
                          teacher_layout=raw_layout(teacher))
    log(f"Distilling from {cfg.teacher_ckpt} (W={teacher.config.cnn_width}; logit {cfg.distill_weight}, "
        f"feature {cfg.feature_distill_weight}, feat L1 {cfg.distill_feat}, obj {cfg.distill_obj}, quality {cfg.distill_quality}, "
        f"box L1 {cfg.distill_box_l1}, kl {cfg.distill_kl}, T {cfg.distill_temperature}{', cosine ramp' if cfg.distill_cosine else ''})")
    return teacher, distill


def build_components(plan: TrainPlan, registry, strategy, log: Callable[[str], None] = print) -> Components:
    """Build everything the plan names, each exactly once (see the module docstring)."""
    from utod.model.detector import build_model

    cfg = plan.cfg
    keras.utils.set_random_seed(cfg.seed)
    train_data, val_data = _pipelines(plan, registry)
    with strategy.scope():
        model = build_model(plan.model_cfg, registry)
        if cfg.weights and not plan.resuming:  # --weights: before the EMA shadow copies the weights
            from utod.finetune import load_initial_weights

            load_initial_weights(model, cfg.weights, log)
        eval_model = build_model(plan.model_cfg, registry) if cfg.use_ema else model
        ema = _ema(cfg, model, int(train_data.steps_per_epoch) * cfg.epochs, log)
        schedule, optimizer = _optimizer(cfg, int(train_data.steps_per_epoch))
    loss_fn = _loss(plan, registry, model)
    with strategy.scope():
        teacher, distill = _distillation(plan, registry, model, log)
    parts = Components(strategy=strategy, train_data=train_data, val_data=val_data, model=model,
                       eval_model=eval_model, ema=ema, schedule=schedule, optimizer=optimizer, loss_fn=loss_fn,
                       teacher=teacher, distill=distill, state=None)  # type: ignore[arg-type]
    with strategy.scope():  # slots for every trained variable (model + distillation adapter)
        optimizer.build(parts.trainable_variables())
        parts.state = TrainState(plan.run_dir, model=model, optimizer=optimizer, ema=ema, distill=distill)
    return parts

