"""AdamWKernels (TensorFlow's fused ApplyAdam kernels) computes what tf-keras AdamW computes."""

from __future__ import annotations

import numpy as np
import pytest

from utod._keras import keras, tf
from utod.train.schedule import WarmupCosine
from utod.train.update import AdamWKernels


def _setup(exclude_bias: bool, schedule: bool):
    model = keras.Sequential([keras.layers.Dense(6), keras.layers.BatchNormalization(), keras.layers.Dense(3)])
    model.build((None, 5))
    lr = WarmupCosine(0.05, 20, 3, 0.1) if schedule else 0.02
    opt = keras.optimizers.AdamW(learning_rate=lr, weight_decay=0.3, epsilon=1e-8)
    if exclude_bias:
        opt.exclude_from_weight_decay(var_names=["bias"])
    opt.build(model.trainable_variables)
    return model, opt


@pytest.mark.parametrize("exclude_bias,schedule", [(False, True), (True, True), (False, False)])
def test_kernels_match_keras_adamw(exclude_bias, schedule):
    ref_model, ref_opt = _setup(exclude_bias, schedule)
    model, opt = _setup(exclude_bias, schedule)
    for a, b in zip(model.weights, ref_model.weights):
        a.assign(b)
    start = [v.numpy().copy() for v in model.trainable_variables]
    kernels = AdamWKernels(opt, model.trainable_variables)

    @tf.function
    def ref_step(grads):
        ref_opt.apply_gradients(zip(grads, ref_model.trainable_variables))

    @tf.function
    def step(grads):
        kernels.apply(grads)

    for i in range(6):
        grads = [tf.random.stateless_normal(v.shape, seed=[i, j]) * (j + 1.0)
                 for j, v in enumerate(model.trainable_variables)]
        ref_step(grads)
        step(grads)
    assert int(opt.iterations.numpy()) == int(ref_opt.iterations.numpy()) == 6
    np.testing.assert_allclose(float(opt.learning_rate.numpy()), float(ref_opt.learning_rate.numpy()), rtol=1e-6)
    # the kernel forms 1 - beta_2 in float32 (0.00099998713), Keras in float64 (0.001): 1.3e-5 relative
    for a, b in zip(opt.variables, ref_opt.variables):  # iterations, lr, moments, velocities
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=5e-5, atol=1e-7, err_msg=a.name)
    for a, b, s in zip(model.trainable_variables, ref_model.trainable_variables, start):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=5e-5, atol=1e-6, err_msg=a.name)
        assert not np.allclose(a.numpy(), s)  # the step really moved every variable


def test_supports_only_what_it_reproduces(monkeypatch):
    model, opt = _setup(False, True)
    tv = model.trainable_variables
    assert AdamWKernels.supports(opt, tv, replicas=1, use_amp=False)
    assert not AdamWKernels.supports(opt, tv, replicas=2, use_amp=False)
    assert not AdamWKernels.supports(opt, tv, replicas=1, use_amp=True)
    assert not AdamWKernels.supports(keras.optimizers.Adam(1e-3), tv, replicas=1, use_amp=False)
    assert not AdamWKernels.supports(keras.optimizers.AdamW(1e-3, amsgrad=True), tv, replicas=1, use_amp=False)
    assert not AdamWKernels.supports(keras.optimizers.AdamW(1e-3, clipnorm=1.0), tv, replicas=1, use_amp=False)
    monkeypatch.setenv("UTOD_FAST_ADAMW", "0")
    assert not AdamWKernels.supports(opt, tv, replicas=1, use_amp=False)
    monkeypatch.delenv("UTOD_FAST_ADAMW")
    with pytest.raises(ValueError, match="not built"):
        AdamWKernels(opt, [tf.Variable(tf.zeros([2]))])
