"""The head's 2x nearest upsample: the export lowering (PACK + RESHAPE, which TFLite Micro
has) gives exactly the values of the training lowering (tf.repeat), for the function and
for a whole model with the large-object branch."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.mark.parametrize("shape,out", [((2, 4, 4, 3), (8, 8)), ((1, 4, 3, 5), (7, 5)), ((3, 1, 1, 2), (1, 2))])
def test_both_lowerings_equal_repeat_and_resize_nearest(shape, out):
    from utod._keras import tf
    from utod.model.upsample import upsample_nearest_2x

    x = tf.constant(np.random.default_rng(0).normal(size=shape).astype(np.float32))
    ref = tf.repeat(tf.repeat(x, 2, axis=1), 2, axis=2)[:, :out[0], :out[1]]
    resized = tf.image.resize(x, (2 * shape[1], 2 * shape[2]), method="nearest")[:, :out[0], :out[1]]
    for training in (True, False, None):
        y = upsample_nearest_2x(x, *out, training=training)
        assert y.shape == ref.shape
        assert np.array_equal(y.numpy(), ref.numpy())
        assert np.array_equal(y.numpy(), resized.numpy())
    # same gradients too (the export lowering is only data movement)
    grads = []
    for training in (True, False):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(upsample_nearest_2x(x, *out, training=training) ** 2)
        grads.append(tape.gradient(loss, x).numpy())
    assert np.array_equal(grads[0], grads[1])


def test_export_graph_equals_training_graph_lowering(monkeypatch):
    """The reference configuration (BN, residual, improved + IoU-aware + ESE head, large-object
    branch): inference output with the export lowering vs the same weights run through the
    tf.repeat lowering, in float, within 1e-5 (in fact equal)."""
    import utod_plugins.impl.heads as heads

    from utod._keras import keras, tf
    from utod.model.config import ModelConfig
    from utod.model.detector import build_model
    from utod.model.upsample import upsample_nearest_2x

    keras.utils.set_random_seed(3)
    cfg = ModelConfig(img_size=(48, 40), num_classes=3, class_names=["a", "b", "c"], cnn_width=8,
                      activation="relu", use_batchnorm=True, residual=True, head="improved",
                      head_options={"iou_aware": True, "use_head_ese": True, "large_obj_branch": True})
    model = build_model(cfg)  # grid 6x5: odd width, the upsample is cropped
    x = tf.constant(np.random.default_rng(1).random((2, 48, 40, 3)).astype(np.float32))
    export_out = tf.function(lambda t: model(t, training=False))(x).numpy()
    monkeypatch.setattr(heads, "upsample_nearest_2x",
                        lambda y, h, w, training=None: upsample_nearest_2x(y, h, w, training=True))
    train_lowering = tf.function(lambda t: model(t, training=False))(x).numpy()
    assert np.abs(export_out - train_lowering).max() <= 1e-5
