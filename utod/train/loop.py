"""The training loop: one compiled train step under a ``tf.distribute.Strategy``, EMA,
validation with COCO mAP, checkpoints, resumable state, logging.

Resumable state (``<run>/train_state/``, a ``tf.train.Checkpoint``): model, optimiser (incl.
its step counter), EMA shadow and update count, completed epochs, batches done in the
current epoch, best mAP@0.5. Augmentation and shuffling are functions of (seed, epoch,
sample), so a resumed run skips the batches already done and sees exactly the data an
uninterrupted run would. The state is saved every ``--save-interval`` steps, at the end
of every epoch, and on Ctrl-C / SIGTERM; TensorFlow writes checkpoints atomically and
``.keras`` files are written to a temporary name and renamed.
"""

from __future__ import annotations

import gc
import math
import signal
import time
from pathlib import Path
from typing import Any

import numpy as np

from utod._keras import keras, tf
from utod.config import TrainConfig
from utod.errors import ConfigError
from utod.faults import fault_point
from utod.graph import GraphFunction
from utod.infer.modelinfo import MAP_CONF_THRESH  # detections kept for COCO mAP (P/R use --conf-thresh)
from utod.loss import LOSS_KEYS
from utod.train.ema import EMA
from utod.train.outputs import (
    Progress,
    ResultsCsv,
    checkpoint_name,
    plot_results,
    prune_checkpoints,
    publish_alias,
)
from utod.train.schedule import WarmupCosine
from utod.train.update import AdamWKernels


class NonFiniteLossError(RuntimeError):
    pass


class Trainer:
    def __init__(self, *, cfg: TrainConfig, run_dir: Path, registry, model_cfg, train_items, val_items,
                 aug_ops, loss_opts, plugins, strategy, resuming: bool, log=print):
        from utod.data.pipeline import DetectionData, PipelineConfig
        from utod.loss import LossWeights, build_loss
        from utod.model.detector import build_model

        self.cfg = cfg
        self.run_dir = run_dir
        self.registry = registry
        self.model_cfg = model_cfg
        self.plugins = plugins
        self.strategy = strategy
        self.resuming = resuming
        self.log = log
        self.stop_requested = False
        self._last_plot = float("-inf")

        h, w = model_cfg.img_size
        pipe_kw = dict(img_size=(h, w), batch_size=cfg.batch_size, max_boxes=cfg.max_boxes,
                       resize_mode=cfg.resize_mode, class_ids=list(model_cfg.class_ids), seed=cfg.seed,
                       cache_dir=cfg.cache_dir, num_workers=cfg.num_workers)
        self.train_data = DetectionData(train_items, PipelineConfig(aug_ops=aug_ops, worker_mode=cfg.worker_mode,
                                                                    **pipe_kw), registry, training=True)
        self.val_data = (DetectionData(val_items, PipelineConfig(aug_ops=None, **pipe_kw), registry,
                                       training=False) if val_items else None)
        self.steps_per_epoch = int(self.train_data.steps_per_epoch)  # >= 1 (small sets are repeated)

        with strategy.scope():
            self.model = build_model(model_cfg, registry)
            self.eval_model = build_model(model_cfg, registry) if cfg.use_ema else self.model
            total_steps = self.steps_per_epoch * cfg.epochs
            self.ema = None
            if cfg.use_ema:
                from utod.ema_safety import ema_decay_for, ema_messages

                decay = ema_decay_for(cfg, total_steps)
                self.ema = EMA(self.model, decay, warmup=cfg.ema_warmup)
                if cfg.ema_window > 0:
                    log(f"EMA decay {decay:.6f} (--ema-window {cfg.ema_window:g} of {total_steps} steps)")
                for msg in ema_messages(decay, total_steps, cfg.ema_warmup):
                    log(msg)
            schedule = WarmupCosine(cfg.lr, total_steps, int(round(cfg.warmup_epochs * self.steps_per_epoch)),
                                    cfg.min_lr_ratio, cosine=cfg.lr_schedule == "cosine")
            self.schedule = schedule
            opt = keras.optimizers.AdamW(learning_rate=schedule, weight_decay=cfg.weight_decay, epsilon=1e-8)
            if cfg.use_amp:
                opt = keras.mixed_precision.LossScaleOptimizer(opt)
            self.optimizer = opt
            self.epoch_var = tf.Variable(0, dtype=tf.int64, trainable=False, name="completed_epochs")
            self.step_in_epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="step_in_epoch")
            # running sums of the epoch's step losses (LOSS_KEYS + distill), so a resumed epoch's
            # means still cover every batch of the epoch
            self.epoch_loss_sums = tf.Variable(tf.zeros([len(LOSS_KEYS) + 1], tf.float64), trainable=False,
                                               name="epoch_loss_sums")
            self.best_map = tf.Variable(-1.0, dtype=tf.float64, trainable=False, name="best_map50")

        self.loss_fn = build_loss(
            registry, assigner=cfg.assigner, assigner_options=loss_opts["assigner_options"],
            iou_loss=cfg.iou_loss, iou_options=loss_opts["iou_options"], cls_loss=cfg.cls_loss_type,
            cls_options=loss_opts["cls_options"], num_anchors=self.model.num_anchors,
            num_classes=self.model.num_classes, has_quality=self.model.has_quality,
            weights=LossWeights(box=cfg.loss_weight_box, obj=cfg.loss_weight_obj, cls=cfg.loss_weight_cls,
                                quality=cfg.loss_weight_quality),
            obj_loss=cfg.obj_loss, obj_target=cfg.obj_target,
        )
        self.teacher = None
        self.distill = None
        anchor_terms = cfg.distill_obj > 0 or cfg.distill_quality > 0 or cfg.distill_box_l1 > 0
        if cfg.teacher_ckpt and (cfg.distill_weight > 0 or cfg.feature_distill_weight > 0 or anchor_terms):
            from utod.distill import (
                DistillLoss,
                check_anchor_terms_compatible,
                check_teacher_compatible,
                raw_layout,
            )
            from utod.model.io import load_checkpoint

            with strategy.scope():
                self.teacher, _ = load_checkpoint(cfg.teacher_ckpt, registry)
                self.teacher.trainable = False
                if self.teacher.config.in_channels != model_cfg.in_channels:
                    raise ConfigError(f"--teacher-ckpt {cfg.teacher_ckpt}: teacher input has "
                                      f"{self.teacher.config.in_channels} channels, the student "
                                      f"{model_cfg.in_channels} (use the same --resize-mode input mode)")
                if cfg.distill_weight > 0:
                    check_teacher_compatible(self.model, self.teacher)
                if anchor_terms:
                    check_anchor_terms_compatible(self.model, self.teacher, cfg.distill_quality > 0)
                self.distill = DistillLoss(cfg.distill_weight, cfg.feature_distill_weight,
                                           student_channels=4 * model_cfg.cnn_width,
                                           teacher_channels=4 * self.teacher.config.cnn_width,
                                           obj_weight=cfg.distill_obj, quality_weight=cfg.distill_quality,
                                           box_l1_weight=cfg.distill_box_l1, temperature=cfg.distill_temperature,
                                           cosine=cfg.distill_cosine, student_layout=raw_layout(self.model),
                                           teacher_layout=raw_layout(self.teacher))
            log(f"Distilling from {cfg.teacher_ckpt} (W={self.teacher.config.cnn_width}; logit {cfg.distill_weight}, "
                f"feature {cfg.feature_distill_weight}, obj {cfg.distill_obj}, quality {cfg.distill_quality}, "
                f"box L1 {cfg.distill_box_l1}, T {cfg.distill_temperature}"
                f"{', cosine ramp' if cfg.distill_cosine else ''})")

        with strategy.scope():  # slots for every trained variable (model + distillation adapter)
            self.optimizer.build(self._trainable_variables())
        ckpt_items: dict[str, Any] = dict(model=self.model, optimizer=self.optimizer, epoch=self.epoch_var,
                                          step_in_epoch=self.step_in_epoch, best_map=self.best_map,
                                          epoch_loss_sums=self.epoch_loss_sums)
        if self.ema is not None:
            ckpt_items.update(ema_shadow=self.ema.shadow, ema_updates=self.ema.updates)
        if self.distill is not None and getattr(self.distill, "trainable_variables", None):
            ckpt_items["distill"] = tf.train.Checkpoint(variables=list(self.distill.trainable_variables))
        self.state = tf.train.Checkpoint(**ckpt_items)
        self.state_manager = tf.train.CheckpointManager(self.state, str(run_dir / "train_state"), max_to_keep=2)
        self.results = ResultsCsv(run_dir / "results.csv")
        log_dir = Path(cfg.log_dir) if cfg.log_dir else run_dir / "tensorboard"
        self.writer = tf.summary.create_file_writer(str(log_dir))
        self._train_step = self._make_train_step()
        self._eval_step = self._make_eval_step()

    # ------------------------------------------------------------------ compiled steps
    def _trainable_variables(self) -> list:
        vs = list(self.model.trainable_variables)
        if self.distill is not None:
            vs += list(getattr(self.distill, "trainable_variables", []) or [])
        return vs

    def _make_train_step(self):
        cfg = self.cfg
        model, loss_fn, opt = self.model, self.loss_fn, self.optimizer
        teacher, distill, ema = self.teacher, self.distill, self.ema
        strategy = self.strategy
        replicas = strategy.num_replicas_in_sync
        use_feat = distill is not None and cfg.feature_distill_weight > 0
        variables = self._trainable_variables()  # model + distillation adapter, as the optimizer was built
        kernels = (AdamWKernels(opt, variables)
                   if AdamWKernels.supports(opt, variables, replicas=replicas, use_amp=cfg.use_amp) else None)

        def replica_step(batch):
            images = batch["image"]
            with tf.GradientTape() as tape:
                if use_feat:
                    raw, feat = model.call_with_features(images, training=True)
                else:
                    raw, feat = model(images, training=True), None
                raw = tf.cast(raw, tf.float32)
                parts = loss_fn(raw, batch["boxes"], batch["labels"], batch["mask"], model.effective_anchors())
                total = parts["total"]
                out = {k: parts[k] for k in LOSS_KEYS}
                if distill is not None:
                    t_raw, t_feat = teacher.call_with_features(images, training=False)
                    d = distill(raw, tf.stop_gradient(tf.cast(t_raw, tf.float32)),
                                None if feat is None else tf.cast(feat, tf.float32),
                                tf.stop_gradient(tf.cast(t_feat, tf.float32)),
                                model.effective_anchors(), teacher.effective_anchors())
                    total = total + d["distill"]
                    out["distill"] = d["distill"]
                    out["total"] = total
                scaled = total / float(replicas)
                if cfg.use_amp:
                    scaled = opt.get_scaled_loss(scaled)
            grads = tape.gradient(scaled, variables)
            if cfg.use_amp:
                grads = opt.get_unscaled_gradients(grads)
            grads = [tf.zeros_like(v) if g is None else g for g, v in zip(grads, variables)]
            if cfg.grad_clip_norm and cfg.grad_clip_norm > 0:
                grads, _ = tf.clip_by_global_norm(grads, cfg.grad_clip_norm)
            if kernels is not None:  # the same AdamW, two fused kernels per variable
                kernels.apply(grads)
            else:
                opt.apply_gradients(zip(grads, variables))
            return out

        def step(batch):
            per_replica = strategy.run(replica_step, args=(batch,))
            reduced = {k: strategy.reduce(tf.distribute.ReduceOp.MEAN, v, axis=None)
                       for k, v in per_replica.items()}
            if ema is not None:
                ema.update()
            return reduced

        # traced without AutoGraph unless a plugin needs it (start-up: utod/graph.py)
        return GraphFunction(step, jit_compile=bool(cfg.use_xla) or None, reduce_retracing=False)

    def _make_eval_step(self):
        from utod.model.postprocess import postprocess, score_mode_for

        model, loss_fn, mcfg = self.eval_model, self.loss_fn, self.model_cfg
        score_mode = score_mode_for(model)  # the head's default_score_mode when not set

        def step(batch):
            raw = tf.cast(model(batch["image"], training=False), tf.float32)
            parts = loss_fn(raw, batch["boxes"], batch["labels"], batch["mask"], model.effective_anchors())
            dets, num = postprocess(raw, model.effective_anchors(), model.num_anchors, model.num_classes,
                                    model.has_quality, score_mode, mcfg.quality_power, MAP_CONF_THRESH,
                                    mcfg.nms_iou, mcfg.max_detections)
            return {k: parts[k] for k in LOSS_KEYS}, dets, num

        return GraphFunction(step)

    # ------------------------------------------------------------------ state
    def _restore(self) -> tuple[int, int]:
        latest = self.state_manager.latest_checkpoint
        if not latest:
            if self.resuming:
                self.log("No saved train state in this run folder; starting from epoch 1.")
            return 0, 0
        self.state.restore(latest).assert_existing_objects_matched()
        epoch, step = int(self.epoch_var.numpy()), int(self.step_in_epoch.numpy())
        self.log(f"Resumed {latest}: {epoch} epoch(s) done, {step} step(s) into epoch {epoch + 1}, "
                 f"optimizer step {int(self.optimizer.iterations.numpy())}, best mAP@0.5 "
                 f"{max(0.0, float(self.best_map.numpy())):.5f}")
        return epoch, step

    def save_state(self) -> str:
        path = self.state_manager.save(checkpoint_number=int(self.optimizer.iterations.numpy()))
        fault_point("state.saved")
        return path

    def _install_signal_handlers(self):
        """Ctrl-C / SIGTERM: finish the current step, save the state, stop. A second Ctrl-C
        interrupts at once (the state saved last, at most --save-interval steps old, remains)."""

        def handler(signum, frame):
            if self.stop_requested and signum == signal.SIGINT:
                raise KeyboardInterrupt
            self.stop_requested = True
            self.log(f"\nSignal {signum} received: saving state after this step and stopping "
                     f"(Ctrl-C again to stop at once).")

        old = {}
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                old[sig] = signal.signal(sig, handler)
            except (ValueError, OSError):  # not in the main thread
                pass
        return old

    # ------------------------------------------------------------------ loop
    def fit(self) -> dict[str, Any]:
        cfg = self.cfg
        start_epoch, skip_steps = self._restore()
        self.results.truncate_after(start_epoch)
        old_handlers = self._install_signal_handlers()
        self.last_metrics: dict[str, Any] = {}
        self.log(f"Training {cfg.epochs} epochs x {self.steps_per_epoch} steps (batch {cfg.batch_size}) on "
                 f"{self.strategy.num_replicas_in_sync} replica(s); run folder {self.run_dir}")
        batches = self._batch_stream(start_epoch, skip_steps)
        # TensorFlow and Keras leave ~10^6 long-lived Python objects; without freezing them every
        # full garbage collection walks them all (0.3-1 s per epoch measured, holding the GIL)
        # and the input threads' short-lived objects need young-generation sweeps far less often
        gc.collect()
        gc.freeze()
        gc_thresholds = gc.get_threshold()
        gc.set_threshold(20000, *gc_thresholds[1:])
        try:
            for epoch in range(start_epoch, cfg.epochs):
                train_means, img_s, seconds = self._train_epoch(epoch, skip_steps, batches)
                skip_steps = 0
                if self.stop_requested:
                    break
                ep = epoch + 1
                row: dict[str, Any] = {"epoch": ep, "time_s": seconds, "img_per_s": img_s,
                                       "lr": float(self.schedule(self.optimizer.iterations))}
                row.update({f"train_{'loss' if k == 'total' else k}": v for k, v in train_means.items()})
                metrics: dict[str, Any] = {}
                if self.val_data is not None and (ep % max(1, cfg.eval_interval) == 0 or ep == cfg.epochs):
                    metrics = self.evaluate()
                    row.update(metrics)
                    self.last_metrics = metrics
                self._end_epoch(ep, row, metrics)
        except KeyboardInterrupt:
            self.log(f"\nInterrupted at once; the state saved last remains: {self.state_manager.latest_checkpoint}")
            raise
        except NonFiniteLossError:
            raise
        except Exception:
            last = self.state_manager.latest_checkpoint
            self.log(f"\nTraining stopped by an error (below). The state saved last remains: {last or 'none yet'}"
                     + (f"; once fixed, continue with: utod train --resume {self.run_dir}" if last else ""))
            raise
        finally:
            gc.unfreeze()
            gc.set_threshold(*gc_thresholds)
            for sig, h in old_handlers.items():
                signal.signal(sig, h)
            self.close()
        if self.stop_requested:
            path = self.save_state()
            self.log(f"Stopped. State saved to {path}; continue with: utod train --resume {self.run_dir}")
            raise KeyboardInterrupt
        self.log(f"Done. Best mAP@0.5 {max(0.0, float(self.best_map.numpy())):.5f}; outputs in {self.run_dir}")
        return self.last_metrics

    def close(self) -> None:
        """Stop the data worker threads and flush TensorBoard (called when fit ends)."""
        self.writer.close()
        self.train_data.close()
        if self.val_data is not None:
            self.val_data.close()

    def _batch_stream(self, start_epoch: int, start_step: int):
        """One iterator over the training batches of every remaining epoch, starting at
        (start_epoch, start_step). Being one stream, the next epoch's first batches are built and
        prefetched while the current epoch ends (no data stall at epoch boundaries); every batch
        is still a pure function of (seed, epoch, position)."""

        def batches():
            for e in range(start_epoch, self.cfg.epochs):
                yield from self.train_data.numpy_batches(e, start_step if e == start_epoch else 0)

        if self.strategy.num_replicas_in_sync == 1:
            # one device: the worker threads already build batches ahead; feeding their numpy
            # arrays straight to the step skips a tf.data thread that competed for the CPU
            return iter(batches())
        ds = tf.data.Dataset.from_generator(batches, output_signature=self.train_data.output_signature())
        ds = self.strategy.experimental_distribute_dataset(ds.prefetch(2))
        return iter(ds)

    def _train_epoch(self, epoch: int, skip_steps: int, batches) -> tuple[dict[str, float], float, float]:
        cfg = self.cfg
        if skip_steps:
            self.log(f"Epoch {epoch + 1}: continuing after the {skip_steps} batch(es) done before the interruption")
        keys = (*LOSS_KEYS, "distill")
        restored = self.epoch_loss_sums.numpy() if skip_steps else np.zeros(len(keys))
        sums = dict(zip(keys, restored.tolist()))
        step_idx = skip_steps  # batches of this epoch done (the loss sums cover all of them)

        def record_position() -> None:  # the resumable position; only a saved state needs it
            self.step_in_epoch.assign(step_idx)
            self.epoch_loss_sums.assign([sums[k] for k in keys])

        if self.distill is not None:  # the cosine ramp is constant within an epoch
            self.distill.set_epoch(epoch, cfg.epochs)
        progress = Progress(self.steps_per_epoch, epoch + 1, cfg.epochs)
        t0 = time.perf_counter()
        images = 0
        for _ in range(self.steps_per_epoch - skip_steps):
            out = self._train_step(next(batches))
            vals = {k: float(v.numpy()) for k, v in out.items()}
            step_idx += 1
            if not math.isfinite(vals["total"]):
                progress.close()
                last = self.state_manager.latest_checkpoint or "none yet"
                raise NonFiniteLossError(
                    f"non-finite loss at step {int(self.optimizer.iterations.numpy())} (epoch {epoch + 1}, "
                    f"batch {step_idx}): " + ", ".join(f"{k}={v}" for k, v in vals.items())
                    + f". Training stopped; nothing from this step was saved. Last good train state: {last}; "
                      f"try a lower --lr or --grad-clip-norm, then --resume {self.run_dir}"
                )
            for k, v in vals.items():
                sums[k] += v
            images += cfg.batch_size
            if step_idx % max(1, cfg.log_interval) == 0 or step_idx == self.steps_per_epoch:
                progress.update(step_idx, images, {k: sums[k] / step_idx for k in ("total", "box", "obj", "cls")})
                with self.writer.as_default(step=int(self.optimizer.iterations.numpy())):
                    for k, v in vals.items():
                        tf.summary.scalar(f"train_step/{k}", v)
                    tf.summary.scalar("train_step/lr", float(self.schedule(self.optimizer.iterations)))
            if self.stop_requested:
                record_position()  # fit() saves the state after this epoch loop returns
                break
            if cfg.save_interval > 0 and step_idx % cfg.save_interval == 0 and step_idx < self.steps_per_epoch:
                record_position()
                self.save_state()
        progress.close()
        seconds = time.perf_counter() - t0
        means = {k: v / max(1, step_idx) for k, v in sums.items() if k != "distill" or self.distill is not None}
        return means, images / max(seconds, 1e-9), seconds

    def evaluate(self) -> dict[str, Any]:
        """Validation loss and COCO metrics on every validation image (EMA weights if enabled)."""
        from utod.metrics import Accumulator

        if self.ema is not None:
            self.ema.copy_to(self.eval_model)
        mcfg = self.model_cfg
        acc = Accumulator(mcfg.num_classes, img_size=tuple(mcfg.img_size), conf_thresh=mcfg.conf_thresh,
                          class_names=list(mcfg.class_names))
        sums = {k: 0.0 for k in LOSS_KEYS}
        n = 0
        for batch in self.val_data.dataset(0):
            parts, dets, num = self._eval_step(batch)
            for k in LOSS_KEYS:
                sums[k] += float(parts[k].numpy())
            n += 1
            acc.add(batch["boxes"].numpy(), batch["labels"].numpy(), batch["mask"].numpy(), dets.numpy(),
                    num.numpy(), image_index=batch["index"].numpy())
        res = acc.compute()
        out = {f"val_{'loss' if k == 'total' else k}": v / max(1, n) for k, v in sums.items()}
        out.update(map50_95=float(res["map"]), map50=float(res["map50"]), precision=float(res["precision"]),
                   recall=float(res["recall"]))
        self.log(f"  val: loss={out['val_loss']:.4f} mAP@0.5={out['map50']:.4f} mAP@0.5:0.95={out['map50_95']:.4f}"
                 f" P={out['precision']:.3f} R={out['recall']:.3f} ({res.get('num_images', '?')} images)")
        return out

    def _end_epoch(self, ep: int, row: dict[str, Any], metrics: dict[str, Any]) -> None:
        from utod.model.io import save_checkpoint

        cfg = self.cfg
        with self.writer.as_default(step=ep):
            for k, v in row.items():
                if k != "epoch" and isinstance(v, (int, float)) and math.isfinite(float(v)):
                    group = "val" if (k.startswith("val_") or k in ("map50", "map50_95", "precision", "recall")) \
                        else "train"
                    tf.summary.scalar(f"{group}/{k}", float(v))
        self.writer.flush()
        if self.ema is not None and not metrics:  # evaluate() already copied them this epoch
            self.ema.copy_to(self.eval_model)
        map50 = float(metrics.get("map50", 0.0)) if metrics else 0.0
        extra = {
            "epoch": ep, "step": int(self.optimizer.iterations.numpy()), "metrics": metrics,
            "train_config": cfg.to_dict(), "plugins": self.plugins, "use_ema": bool(cfg.use_ema),
        }
        last = self.run_dir / checkpoint_name("last", ep, map50)
        save_checkpoint(last, self.eval_model, extra)
        publish_alias(last, self.run_dir / "last.keras")
        prune_checkpoints(self.run_dir, "last", cfg.keep_checkpoints)
        if metrics and map50 > float(self.best_map.numpy()):
            self.best_map.assign(map50)
            best = self.run_dir / checkpoint_name("best", ep, map50)
            save_checkpoint(best, self.eval_model, extra)
            publish_alias(best, self.run_dir / "best.keras")
            prune_checkpoints(self.run_dir, "best", cfg.keep_checkpoints)
            self.log(f"  new best mAP@0.5 {map50:.5f} -> {checkpoint_name('best', ep, map50)}")
        self.epoch_var.assign(ep)
        self.step_in_epoch.assign(0)
        self.epoch_loss_sums.assign(tf.zeros_like(self.epoch_loss_sums))
        # the row first: a kill between the two leaves a row newer than the state, which the resume
        # drops and redoes identically; the other order would lose the row for good
        self.results.append(row)
        self.save_state()
        # Drawing costs ~1 s on 2 cores: redraw at most every 30 s, and after the last epoch.
        if ep == cfg.epochs or time.perf_counter() - self._last_plot > 30.0:
            self._last_plot = time.perf_counter()
            try:
                plot_results(self.run_dir / "results.csv", self.run_dir / "results.png")
            except Exception as exc:  # a plotting problem must never stop training
                self.log(f"  (could not draw results.png: {exc})")
