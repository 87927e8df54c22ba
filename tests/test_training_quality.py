"""Training-quality regressions: initial weight scales and what they do to Adam updates with
BatchNorm, BN train/eval statistics, and a few-step sanity run of the IoU-aware head.

Background: a convolution followed by BatchNorm is scale-invariant, so an Adam step (about
``lr`` per element, whatever the gradient's size) changes its kernel by ``lr / std(kernel)``
relatively. Depthwise kernels initialised with the single-filter fan-in k*k (the fix that
keeps a BN-free model's signal alive) were sqrt(C) times larger than in the PyTorch original
and learned sqrt(C) times slower with BN: the BN models trained far slower than without BN.
"""

from __future__ import annotations

import numpy as np
import pytest

from utod.model.config import ModelConfig

ANCHORS = [[0.2, 0.2], [0.35, 0.35], [0.5, 0.5]]


def _model(use_batchnorm: bool, width: int = 16, head: str = "utod", head_options=None, num_classes: int = 2):
    from utod.model.detector import build_model

    return build_model(ModelConfig(cnn_width=width, anchors=ANCHORS, num_classes=num_classes, activation="relu",
                                   use_batchnorm=use_batchnorm, head=head, head_options=head_options or {}))


def _kernels(model, kind: str):
    """[(name, variable)] of depthwise (``kind='dw'``) or 1x1 pointwise (``'pw'``) kernels."""
    from utod._keras import keras

    out = []
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if kind == "dw" and isinstance(layer, keras.layers.DepthwiseConv2D):
            out.append((layer.name, layer.depthwise_kernel))
        elif (kind == "pw" and type(layer) is keras.layers.Conv2D and layer.kernel_size == (1, 1)
              and layer.kernel.shape[-1] > 8):  # skip the tiny output convs
            out.append((layer.name, layer.kernel))
    return out


@pytest.mark.parametrize("use_batchnorm", [True, False])
def test_depthwise_kernel_scale(use_batchnorm):
    """BN: std sqrt(2 / (k*k*C)) like PyTorch's kaiming fan_out; no BN: sqrt(2 / (k*k))."""
    model = _model(use_batchnorm)
    kernels = _kernels(model, "dw")
    assert len(kernels) >= 6
    for name, k in kernels:
        kh, kw, c, _ = k.shape
        fan = kh * kw * c if use_batchnorm else kh * kw
        std = float(np.std(k.numpy()))
        assert 0.75 < std / np.sqrt(2.0 / fan) < 1.25, (name, tuple(k.shape), std)


def _toy_batch(rng, batch: int = 8):
    """Images [B, 64, 64, 3] in [0, 1] with one bright square each; boxes [B, 1, 4] cxcywh."""
    images = rng.uniform(0.0, 0.2, (batch, 64, 64, 3)).astype(np.float32)
    boxes = np.zeros((batch, 1, 4), np.float32)
    labels = np.zeros((batch, 1), np.int32)
    for i in range(batch):
        side = int(rng.integers(14, 30))
        x0, y0 = rng.integers(0, 64 - side, 2)
        labels[i, 0] = int(rng.integers(0, 2))
        images[i, y0:y0 + side, x0:x0 + side, labels[i, 0]] = 1.0
        boxes[i, 0] = [(x0 + side / 2) / 64, (y0 + side / 2) / 64, side / 64, side / 64]
    return images, boxes, labels, np.ones((batch, 1), bool)


def _train(model, steps: int, lr: float = 1e-3, seed: int = 0):
    """``steps`` AdamW steps on toy batches; returns the list of loss dicts (floats)."""
    from utod._keras import keras, tf
    from utod.loss import build_loss
    from utod.registry import get_registry

    loss = build_loss(get_registry(), num_anchors=model.num_anchors, num_classes=model.num_classes, has_quality=model.has_quality)
    opt = keras.optimizers.AdamW(lr, weight_decay=1e-4)
    rng = np.random.default_rng(seed)

    @tf.function
    def step(x, b, lab, m):
        with tf.GradientTape() as tape:
            parts = loss(model(x, training=True), b, lab, m, model.effective_anchors())
        grads = tape.gradient(parts["total"], model.trainable_variables)
        opt.apply_gradients(zip(grads, model.trainable_variables))
        return parts

    history = []
    for _ in range(steps):
        history.append({k: float(v) for k, v in step(*_toy_batch(rng)).items()})
    return history


def test_bn_depthwise_kernels_learn_as_fast_as_pointwise():
    """With BN, the relative change of the scale-invariant depthwise kernels per Adam step must
    not lag far behind the pointwise kernels' (it was ~3x behind with the k*k fan-in)."""
    model = _model(True)
    dw, pw = _kernels(model, "dw"), _kernels(model, "pw")
    before = {id(v): v.numpy().copy() for _, v in dw + pw}
    _train(model, steps=5)

    def rel_change(kernels):
        return float(np.median([np.linalg.norm(v.numpy() - before[id(v)]) / np.linalg.norm(before[id(v)])
                                for _, v in kernels]))

    dw_rel, pw_rel = rel_change(dw), rel_change(pw)
    assert dw_rel > 0.7 * pw_rel, (dw_rel, pw_rel)


def test_bn_moving_statistics_momentum():
    """Every BN has keras momentum 0.97 (PyTorch 0.03) and epsilon 1e-3, and training-mode calls
    move the statistics exactly that way: after n calls on a fixed batch (weights fixed)
    ``moving = 0.97**n * initial + (1 - 0.97**n) * batch statistic``. (The moving variance starts
    at 1 while BN-fed depthwise outputs have variances ~1e-3..1e-1, so eval-mode outputs only
    match train-mode ones after a few hundred steps: 0.97**300 ~ 1e-4.)"""
    from utod._keras import keras, tf

    model = _model(True, num_classes=1)
    bns = [layer for layer in model._flatten_layers(include_self=False, recursive=True)
           if isinstance(layer, keras.layers.BatchNormalization)]
    assert bns and all(abs(b.momentum - 0.97) < 1e-9 and abs(b.epsilon - 1e-3) < 1e-12 for b in bns)
    probe = model.backbone.stem.bn  # its input (the stem conv of the images) is easy to recompute
    images, *_ = _toy_batch(np.random.default_rng(1), batch=8)
    n = 20
    for _ in range(n):
        model(images, training=True)
    x = model.backbone.stem.conv(images)
    mean, var = (t.numpy() for t in tf.nn.moments(x, axes=[0, 1, 2]))
    count = np.prod(x.shape[:3])
    keep = 0.97 ** n
    np.testing.assert_allclose(probe.moving_mean.numpy(), (1 - keep) * mean, rtol=1e-3, atol=1e-5)
    expected_var = keep * 1.0 + (1 - keep) * var * count / (count - 1)  # unbiased batch variance
    np.testing.assert_allclose(probe.moving_variance.numpy(), expected_var, rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize("use_batchnorm", [True, False])
def test_iou_aware_head_trains(use_batchnorm):
    """The improved + IoU-aware head (quality branch, default score mode quality_cls) takes
    finite steps and its total loss falls over a few dozen steps on toy squares; the quality
    output receives gradient. (Objectness/quality losses alone are not monotone this early:
    their positive targets are the rising IoUs.)"""
    model = _model(use_batchnorm, head="improved", head_options={"iou_aware": True})
    assert model.has_quality and model.head.default_score_mode == "quality_cls"
    q_kernel = model.head.quality_out.kernel
    q_before = q_kernel.numpy().copy()
    hist = _train(model, steps=30, lr=3e-3)
    assert all(np.isfinite(h["total"]) for h in hist)
    first, last = np.mean([h["total"] for h in hist[:5]]), np.mean([h["total"] for h in hist[-5:]])
    assert last < 0.7 * first, (first, last)
    assert np.abs(q_kernel.numpy() - q_before).max() > 1e-3
