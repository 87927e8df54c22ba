"""UltraTinyOD network: reference parameter counts, raw-map layout, heads as plugins."""

from __future__ import annotations

import numpy as np
import pytest

from utod.errors import CheckpointError, ConfigError
from utod.model.config import DEFAULT_ANCHORS, ModelConfig

REFERENCE_HEAD = dict(use_head_ese=True, iou_aware=True, large_obj_branch=True, large_obj_depth=2,
                      large_obj_ch_scale=1.25)
EIGHT_ANCHORS = [[0.05 * (i + 1), 0.07 * (i + 1)] for i in range(8)]


def reference_config(width: int, head: str = "improved", head_options=None) -> ModelConfig:
    return ModelConfig(cnn_width=width, anchors=EIGHT_ANCHORS, num_classes=1, use_batchnorm=True, residual=True,
                       activation="relu", head=head,
                       head_options=REFERENCE_HEAD if head_options is None else head_options)


def trainable_count(model) -> int:
    return int(sum(np.prod(v.shape) for v in model.trainable_weights))


# docs/model.md §5 reference table: (width, head, options, all, trainable). "all" there has no anchors
# variable; ours adds the non-trainable anchors [A, 2] = 16 values.
REFERENCE = [
    (16, "improved", None, 143_624, 138_344),
    (32, "improved", None, 526_792, 516_232),
    (64, "improved", None, 2_011_976, 1_990_856),
    (64, "utod", {}, 1_124_400, None),
    (64, "improved", dict(use_head_ese=True, iou_aware=True), 1_626_824, None),
]


@pytest.mark.parametrize("width,head,options,all_ref,trainable_ref", REFERENCE)
def test_reference_parameter_counts(width, head, options, all_ref, trainable_ref):
    from utod.model.detector import build_model

    model = build_model(reference_config(width, head, options))
    anchors_values = 8 * 2
    assert model.count_params() == all_ref + anchors_values
    if trainable_ref is not None:
        assert trainable_count(model) == trainable_ref


@pytest.mark.parametrize(
    "head,options,classes,batch,size,quality",
    [
        ("utod", {}, 1, 1, (64, 64), False),
        ("utod", {"iou_aware": True}, 3, 4, (64, 64), True),
        ("improved", {}, 3, 1, (96, 128), True),
        ("improved", {"context_rfb": True, "large_obj_branch": True, "use_head_ese": True}, 1, 4, (96, 128), True),
        ("utod", {}, 0, 2, (64, 64), False),
    ],
)
def test_raw_output_shape_and_layout(head, options, classes, batch, size, quality):
    from utod._keras import tf
    from utod.model.detector import build_model

    cfg = ModelConfig(cnn_width=8, num_classes=classes, head=head, head_options=options)
    model = build_model(cfg)
    assert model.has_quality is quality
    d = 5 + int(quality) + classes
    images = tf.random.uniform([batch, *size, 3], seed=1)
    raw = model(images, training=False)
    assert raw.dtype == tf.float32
    assert tuple(raw.shape) == (batch, size[0] // 8, size[1] // 8, 3 * d)
    raw2, feats = model.call_with_features(images)
    assert tuple(feats.shape) == (batch, size[0] // 8, size[1] // 8, 4 * 8)
    np.testing.assert_allclose(raw.numpy(), raw2.numpy(), rtol=1e-5, atol=1e-5)
    # output biases: obj (and cls) start at log(0.01/0.99); quality and box at 0
    per_anchor = model.head.obj_out.bias.numpy()
    np.testing.assert_allclose(per_anchor, np.log(0.01 / 0.99), rtol=1e-6)
    if classes:
        np.testing.assert_allclose(model.head.cls_out.bias.numpy(), np.log(0.01 / 0.99), rtol=1e-6)
    # anchor-major layout: channel a*D + 4 of the raw map is the obj output of anchor a
    blocks = raw.numpy().reshape(batch, size[0] // 8, size[1] // 8, 3, d)
    x = model.head.context_block(model.backbone(images))
    if model.head.context_res is not None:
        x = x + model.head.context_res(x)
    if model.head.rfb is None and not model.head.large_obj_branch and model.head.ese is None:
        obj = model.head.obj_out(model.head._run(model.head.obj_tower, x, False)).numpy()
        np.testing.assert_allclose(blocks[..., 4], obj, rtol=1e-4, atol=1e-5)


def test_anchors_and_wh_scale():
    from utod._keras import tf
    from utod.model.detector import build_model

    plain = build_model(ModelConfig(cnn_width=8))
    assert not plain.anchors.trainable
    np.testing.assert_allclose(plain.anchors.numpy(), DEFAULT_ANCHORS, rtol=1e-6)
    np.testing.assert_allclose(plain.effective_anchors().numpy(), DEFAULT_ANCHORS, rtol=1e-6)
    assert not any("wh_scale" in v.name for v in plain.trainable_weights)

    improved = build_model(ModelConfig(cnn_width=8, head="improved"))
    assert any("wh_scale" in v.name for v in improved.trainable_weights)
    improved.head.wh_scale.assign(tf.fill([3, 2], 2.0))
    np.testing.assert_allclose(improved.effective_anchors().numpy(), 2 * np.array(DEFAULT_ANCHORS), rtol=1e-6)


def test_batchnorm_settings_and_bias_without_bn():
    from utod.model.detector import build_model

    bn_model = build_model(ModelConfig(cnn_width=8, use_batchnorm=True))
    bn = bn_model.backbone.stem.bn
    assert bn.momentum == pytest.approx(0.97) and bn.epsilon == pytest.approx(1e-3)
    assert not bn_model.backbone.stem.conv.use_bias
    plain = build_model(ModelConfig(cnn_width=8))
    assert plain.backbone.stem.bn is None and plain.backbone.stem.conv.use_bias


def test_head_is_built_through_registry_and_rejects_bad_options():
    from utod.model.detector import build_model
    from utod.registry import ComponentOptionError, UnknownComponentError, get_registry

    reg = get_registry()
    assert {"utod", "improved"} <= set(reg.names("head"))
    with pytest.raises(ComponentOptionError, match="iou_awre"):
        build_model(ModelConfig(cnn_width=8, head_options={"iou_awre": True}))
    with pytest.raises(UnknownComponentError, match="fancy"):
        build_model(ModelConfig(cnn_width=8, head="fancy"))


def test_swish_and_relu_differ_and_silu_equals_swish():
    from utod._keras import keras, tf
    from utod.model.detector import build_model

    x = tf.random.uniform([1, 64, 64, 3], seed=3)
    outs = {}
    for act in ("relu", "silu", "swish"):
        keras.utils.set_random_seed(7)
        outs[act] = build_model(ModelConfig(cnn_width=8, activation=act))(x).numpy()
    np.testing.assert_allclose(outs["silu"], outs["swish"], rtol=1e-5, atol=1e-6)
    assert not np.allclose(outs["relu"], outs["silu"])


def test_config_round_trip_and_validation():
    cfg = ModelConfig(img_size=(96, 128), num_classes=2, class_ids=[3, 7], head="improved",
                      head_options={"iou_aware": True})
    d = cfg.to_dict()
    assert d["img_size"] == [96, 128] and d["class_names"] == ["class0", "class1"]
    assert ModelConfig.from_dict(d) == cfg
    assert ModelConfig.from_dict({"num_classes": 3}).class_names == ["class0", "class1", "class2"]
    with pytest.raises(CheckpointError, match="bogus"):
        ModelConfig.from_dict({**d, "bogus": 1})
    with pytest.raises(ConfigError, match="divisible"):
        ModelConfig(img_size=(60, 64))
    with pytest.raises(ConfigError, match="activation"):
        ModelConfig(activation="gelu")
    with pytest.raises(ConfigError, match="class_names"):
        ModelConfig(num_classes=2, class_names=["a"])
    assert ModelConfig(anchors=EIGHT_ANCHORS).num_anchors == 8


@pytest.mark.slow
def test_reference_parameter_count_w256():
    from utod.model.detector import build_model

    model = build_model(reference_config(256))
    assert model.count_params() == 31_050_824 + 16
    assert trainable_count(model) == 30_966_344


@pytest.mark.parametrize("stride,grid", [(4, 16), (16, 4)])
def test_other_output_strides(stride, grid):
    from utod._keras import tf
    from utod.model.detector import build_model

    model = build_model(ModelConfig(cnn_width=8, stride=stride))
    assert tuple(model(tf.zeros([1, 64, 64, 3])).shape) == (1, grid, grid, 3 * 6)


@pytest.mark.parametrize("h,w", [(8, 8), (5, 7), (6, 3)])
def test_large_object_upsampling_is_nearest(h, w):
    """The head upsamples the stride-2 branch by repetition (XLA-friendly). That is nearest
    resizing in PyTorch's legacy convention, src = floor(dst * in / out), the original's
    F.interpolate(nearest); for even sizes it also equals tf.image.resize(nearest)."""
    from utod._keras import tf

    hi, wi = (h + 1) // 2, (w + 1) // 2
    y = tf.random.uniform([2, hi, wi, 3])
    rep = tf.repeat(tf.repeat(y, 2, axis=1), 2, axis=2)[:, :h, :w].numpy()
    rows = (np.arange(h) * hi) // h
    cols = (np.arange(w) * wi) // w
    np.testing.assert_array_equal(rep, y.numpy()[:, rows][:, :, cols])
    if h % 2 == 0 and w % 2 == 0:
        np.testing.assert_array_equal(rep, tf.image.resize(y, (h, w), method="nearest").numpy())
