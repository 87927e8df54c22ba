"""Exponential moving average of model weights, with the YOLO-style warm-up.

After every successful optimiser step ``u += 1``, ``d = min(decay, (1 + u) / (10 + u))`` and
every floating-point model weight (trainable weights and BatchNorm moving statistics)
follows ``e <- d * e + (1 - d) * w``. The shadow is plain ``tf.Variable`` state, so it is saved
and restored with the resumable train state and updated inside the compiled train step.
"""

from __future__ import annotations

from utod._keras import tf


class EMA:
    """EMA shadow of ``model.weights``.

    Create it (under the distribution strategy's scope) after the model is built.
    """

    def __init__(self, model, decay: float = 0.9999, warmup: bool = True):
        self.decay = float(decay)
        self.warmup = bool(warmup)  # False: constant decay (the seed's Keras EMA)
        self._model = model
        self.updates = tf.Variable(0, dtype=tf.int64, trainable=False, name="ema_updates")
        self.shadow = [
            tf.Variable(w, trainable=False, name=f"ema_{i}", dtype=w.dtype)
            for i, w in enumerate(model.weights)
        ]

    def current_decay(self) -> tf.Tensor:
        u = tf.cast(self.updates, tf.float32)
        if not self.warmup:
            return tf.constant(self.decay, tf.float32)
        return tf.minimum(tf.constant(self.decay, tf.float32), (1.0 + u) / (10.0 + u))

    def update(self) -> None:
        """One EMA step from the model's current weights (call after the optimiser step).

        Written as ``e -= (1 - d) * (e - w)``; on plain (not distributed) float32 variables that
        is TensorFlow's fused ``ResourceApplyGradientDescent`` kernel, 2 ops per weight
        instead of 5 (the model has ~300 weights counting BN statistics)."""
        self.updates.assign_add(1)
        rate = 1.0 - self.current_decay()
        for e, w in zip(self.shadow, self._model.weights):
            if not e.dtype.is_floating:
                e.assign(w)
            elif e.dtype == tf.float32 and not isinstance(e, tf.distribute.DistributedValues):
                tf.raw_ops.ResourceApplyGradientDescent(var=e.handle, alpha=rate,
                                                        delta=e.read_value() - tf.cast(w, tf.float32))
            else:
                e.assign_sub(tf.cast(rate, e.dtype) * (e - tf.cast(w, e.dtype)))

    def copy_to(self, target_model) -> None:
        """Write the EMA weights into ``target_model`` (same architecture)."""
        for t, e in zip(target_model.weights, self.shadow):
            t.assign(tf.cast(e, t.dtype))
