"""Learning-rate schedule: linear warm-up, then cosine decay (or constant), per step."""

from __future__ import annotations

import math

from utod._keras import keras, tf


class WarmupCosine(keras.optimizers.schedules.LearningRateSchedule):
    """``lr(step)``: linear from ``lr * warmup_start`` to ``lr`` over ``warmup_steps``, then
    cosine from ``lr`` to ``lr * min_ratio`` at ``total_steps`` (``cosine=False``: constant)."""

    def __init__(self, lr: float, total_steps: int, warmup_steps: int = 0, min_ratio: float = 0.01,
                 cosine: bool = True, warmup_start: float = 0.1):
        super().__init__()
        self.lr = float(lr)
        self.total_steps = max(1, int(total_steps))
        self.warmup_steps = max(0, int(warmup_steps))
        self.min_ratio = float(min_ratio)
        self.cosine = bool(cosine)
        self.warmup_start = float(warmup_start)

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        lr = tf.constant(self.lr, tf.float32)
        if self.cosine:
            span = float(max(1, self.total_steps - self.warmup_steps))
            progress = tf.clip_by_value((step - self.warmup_steps) / span, 0.0, 1.0)
            low = self.lr * self.min_ratio
            main = low + (self.lr - low) * 0.5 * (1.0 + tf.cos(math.pi * progress))
        else:
            main = lr
        if self.warmup_steps > 0:
            frac = tf.clip_by_value(step / float(self.warmup_steps), 0.0, 1.0)
            warm = lr * (self.warmup_start + (1.0 - self.warmup_start) * frac)
            return tf.where(step < self.warmup_steps, warm, main)
        return main

    def get_config(self):
        return {"lr": self.lr, "total_steps": self.total_steps, "warmup_steps": self.warmup_steps,
                "min_ratio": self.min_ratio, "cosine": self.cosine, "warmup_start": self.warmup_start}
