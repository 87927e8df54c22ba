"""The compiled steps, in one place: the train step (forward, loss, gradients, clipping,
AdamW, EMA under the distribution strategy) and the eval step (forward, validation loss,
decode, scores, batched class-aware NMS). Both are ``tf.function``s (:class:`utod.graph.GraphFunction`: without AutoGraph unless a
plugin needs it) traced once: every
batch has the same static shapes (the pipeline pads), so nothing retraces across steps,
epochs or evaluations (tests count the traces).
"""

from __future__ import annotations

from utod._keras import tf
from utod.graph import GraphFunction
from utod.loss import LOSS_KEYS
from utod.train.components import Components
from utod.train.distribution import sum_and_clip
from utod.train.update import AdamWKernels


class CompiledSteps:
    """``train(batch) -> {loss name: scalar}`` and ``eval(batch) -> (losses, detections
    [B, K, 6], num_valid [B])`` for ``parts``. Batches are dicts of the pipeline's fixed-shape
    arrays (see :mod:`utod.data.pipeline`)."""

    def __init__(self, parts: Components, cfg, decode) -> None:
        self.train = make_train_step(parts, cfg)
        self.eval = make_eval_step(parts, decode)


def _replica_step(parts: Components, cfg, variables, kernels):
    """The per-replica forward/backward/update (mixed precision and distillation aware)."""
    model, loss_fn, opt = parts.model, parts.loss_fn, parts.optimizer
    teacher, distill = parts.teacher, parts.distill
    replicas = parts.strategy.num_replicas_in_sync
    use_feat = distill is not None and distill.uses_features

    def replica_step(batch):
        images = batch["image"]
        with tf.GradientTape() as tape:
            if use_feat:
                raw, feat = model.call_with_features(images, training=True)
            else:
                raw, feat = model(images, training=True), None
            raw = tf.cast(raw, tf.float32)
            parts_ = loss_fn(raw, batch["boxes"], batch["labels"], batch["mask"], model.effective_anchors())
            total = parts_["total"]
            out = {k: parts_[k] for k in LOSS_KEYS}
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
        # the replicas' sum, clipped by its global norm (as on one device): utod.train.distribution
        grads, out["grad_norm"] = sum_and_clip(grads, cfg.grad_clip_norm)
        if kernels is not None:  # the same AdamW, two fused kernels per variable
            kernels.apply(grads)
        else:
            opt.apply_gradients(zip(grads, variables), skip_gradients_aggregation=replicas > 1)
        return out

    return replica_step


def make_train_step(parts: Components, cfg):
    """One optimiser step on a global batch -> mean losses over replicas (EMA updated after)."""
    strategy, ema, opt = parts.strategy, parts.ema, parts.optimizer
    variables = parts.trainable_variables()  # model + distillation adapter, as the optimizer was built
    kernels = (AdamWKernels(opt, variables) if AdamWKernels.supports(
        opt, variables, replicas=strategy.num_replicas_in_sync, use_amp=cfg.use_amp) else None)
    replica_step = _replica_step(parts, cfg, variables, kernels)

    def step(batch):
        per_replica = strategy.run(replica_step, args=(batch,))
        reduced = {k: strategy.reduce(tf.distribute.ReduceOp.MEAN, v, axis=None) for k, v in per_replica.items()}
        if ema is not None:
            ema.update()
        return reduced

    # traced without AutoGraph unless a plugin needs it (start-up: utod/graph.py)
    return GraphFunction(step, jit_compile=bool(cfg.use_xla) or None, reduce_retracing=False)


def make_eval_step(parts: Components, decode):
    """Forward with the evaluated weights, validation loss, decode + NMS with ``decode``
    (a :class:`utod.evaluation.DecodeSettings`) -> (losses, detections, num_valid)."""
    from utod.model.postprocess import decode_and_nms

    model, loss_fn = parts.eval_model, parts.loss_fn

    def step(batch):
        raw = tf.cast(model(batch["image"], training=False), tf.float32)
        anchors = model.effective_anchors()
        losses = loss_fn(raw, batch["boxes"], batch["labels"], batch["mask"], anchors)
        dets, num = decode_and_nms(raw, anchors, decode, nms="kernel")  # TF's C++ NMS: same result, faster
        out = {k: losses[k] for k in LOSS_KEYS}
        out["raw_finite"] = tf.reduce_all(tf.math.is_finite(raw))  # NaN/Inf outputs are never scored
        return out, dets, num

    return GraphFunction(step, reduce_retracing=False)
