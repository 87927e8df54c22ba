"""tf-keras AdamW applied with TensorFlow's fused training kernels.

tf-keras runs AdamW as ~15 small TensorFlow ops per variable (weight decay, two moment updates,
bias correction, the step). The UltraTinyOD model has ~250 variables, and on a 2-core CPU that
op dispatch is ~2 % of a W=64 train step (bench/bench_train.py). TensorFlow's own kernels do
the same arithmetic in two ops per variable:

    ResourceApplyGradientDescent(w, alpha = weight_decay * lr, delta = w)   # w -= w * wd * lr
    ResourceApplyAdam(w, m, v, beta_1^t, beta_2^t, lr, beta_1, beta_2, epsilon, g)
        # m += (g - m)(1 - beta_1);  v += (g^2 - v)(1 - beta_2)
        # w -= lr * sqrt(1 - beta_2^t) / (1 - beta_1^t) * m / (sqrt(v) + epsilon)

which is tf-keras ``AdamW.apply_gradients`` step for step (decoupled decay with the current
learning rate before the Adam step, bias-corrected step size, epsilon outside the square root;
the one rounding difference: the kernel forms ``1 - beta`` in float32, Keras in float64, which
for beta_2 = 0.999 is 1.3e-5 relative in the second-moment rate),
on the optimiser's own state (``iterations``, current learning rate, moments), so checkpoints,
resume and the reported learning rate are those of the Keras optimiser.

``AdamWKernels.supports(...)`` says when it applies (one replica, no loss scaling, a plain
tf-keras AdamW on float32 variables; ``UTOD_FAST_ADAMW=0`` turns it off); otherwise the trainer
calls ``optimizer.apply_gradients``. tests/test_update.py checks it against tf-keras.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from utod._keras import keras, tf


class AdamWKernels:
    """``apply(grads)`` = ``optimizer.apply_gradients(zip(grads, variables))`` for a plain AdamW.

    ``variables``: the ones ``optimizer`` was built for; ``grads``: same order, no ``None``.
    Call ``apply`` inside the compiled train step; build it only where ``supports`` is True.
    """

    def __init__(self, optimizer, variables: Sequence[tf.Variable]) -> None:
        self.optimizer = optimizer
        self.variables = list(variables)
        index = optimizer._index_dict  # one momentum / velocity slot per built variable
        keys = [optimizer._var_key(v) for v in self.variables]
        missing = [v.name for v, k in zip(self.variables, keys) if k not in index]
        if missing:
            raise ValueError(f"the optimizer was not built for {missing[:3]}")
        self.momentums = [optimizer._momentums[index[k]] for k in keys]
        self.velocities = [optimizer._velocities[index[k]] for k in keys]
        self.decayed = [optimizer._use_weight_decay(v) for v in self.variables]

    @staticmethod
    def supports(optimizer, variables: Sequence[tf.Variable], *, replicas: int, use_amp: bool) -> bool:
        """True when ``apply`` computes exactly what ``optimizer.apply_gradients`` would."""
        if os.environ.get("UTOD_FAST_ADAMW", "1") == "0" or replicas != 1 or use_amp:
            return False
        if type(optimizer) is not keras.optimizers.AdamW:
            return False
        plain = (not optimizer.amsgrad and optimizer.clipnorm is None and optimizer.clipvalue is None
                 and optimizer.global_clipnorm is None and not optimizer.use_ema)
        internals = all(hasattr(optimizer, a) for a in ("_momentums", "_velocities", "_index_dict", "_var_key",
                                                          "_use_weight_decay", "_learning_rate"))
        return plain and internals and all(v.dtype == tf.float32 for v in variables)

    def _learning_rate(self) -> tf.Tensor:
        """The learning rate of this step, recorded where ``optimizer.learning_rate`` reads it."""
        opt = self.optimizer
        schedule = opt._learning_rate
        if isinstance(schedule, keras.optimizers.schedules.LearningRateSchedule):
            lr = tf.cast(schedule(opt.iterations), tf.float32)
            current = getattr(opt, "_current_learning_rate", None)
            if current is not None:
                current.assign(tf.cast(lr, current.dtype))
            return lr
        return tf.cast(schedule, tf.float32)

    def apply(self, grads: Sequence[tf.Tensor]) -> None:
        opt = self.optimizer
        lr = self._learning_rate()
        step = tf.cast(opt.iterations + 1, tf.float32)
        beta_1 = tf.constant(float(opt.beta_1), tf.float32)
        beta_2 = tf.constant(float(opt.beta_2), tf.float32)
        epsilon = tf.constant(float(opt.epsilon), tf.float32)
        beta_1_power, beta_2_power = tf.pow(beta_1, step), tf.pow(beta_2, step)
        decay = tf.cast(opt.weight_decay or 0.0, tf.float32) * lr
        for g, w, m, v, decayed in zip(grads, self.variables, self.momentums, self.velocities, self.decayed):
            if decayed and opt.weight_decay:
                tf.raw_ops.ResourceApplyGradientDescent(var=w.handle, alpha=decay, delta=w.read_value())
            tf.raw_ops.ResourceApplyAdam(var=w.handle, m=m.handle, v=v.handle, beta1_power=beta_1_power,
                                         beta2_power=beta_2_power, lr=lr, beta1=beta_1, beta2=beta_2,
                                         epsilon=epsilon, grad=g)
        opt.iterations.assign_add(1)
