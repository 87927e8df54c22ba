"""EMA of the weights: YOLO-style warm-up decay, the update formula, BN statistics, copy_to."""

from __future__ import annotations

import numpy as np

from utod._keras import keras, tf
from utod.train.ema import EMA


def _model():
    model = keras.Sequential([keras.layers.Dense(4), keras.layers.BatchNormalization()])
    model.build((None, 3))
    return model


def test_ema_follows_the_warmup_formula_for_every_weight():
    model = _model()
    ema = EMA(model, decay=0.9)
    shadow = [w.numpy().astype(np.float64) for w in model.weights]
    update = tf.function(ema.update)
    rng = np.random.default_rng(0)
    for u in range(1, 8):
        for w in model.weights:
            w.assign(rng.normal(size=w.shape).astype(np.float32))
        update()
        d = min(0.9, (1 + u) / (10 + u))  # u counted after the increment
        np.testing.assert_allclose(float(ema.current_decay()), d, rtol=1e-6)
        shadow = [d * s + (1 - d) * w.numpy() for s, w in zip(shadow, model.weights)]
        for e, s in zip(ema.shadow, shadow):
            np.testing.assert_allclose(e.numpy(), s, rtol=1e-5, atol=1e-6)
    assert int(ema.updates.numpy()) == 7
    # BN moving statistics are part of the average, not only trainable weights
    assert len(ema.shadow) == len(model.weights) > len(model.trainable_weights)

    other = _model()
    ema.copy_to(other)
    for t, e in zip(other.weights, ema.shadow):
        np.testing.assert_array_equal(t.numpy(), e.numpy())
