"""UHD recipe model options: --utod-conv, --utod-sppf-scale, --disable-cls (sizes, layout, scores)."""

from __future__ import annotations

import numpy as np
import pytest

from utod.errors import ConfigError
from utod.model.config import ModelConfig

ANCHORS = [[0.05 * (i + 1), 0.07 * (i + 1)] for i in range(8)]
REFERENCE_HEAD = dict(use_head_ese=True, iou_aware=True, large_obj_branch=True, large_obj_depth=2,
                      large_obj_ch_scale=1.25)


def _cfg(width=16, head_options=None, **kw) -> ModelConfig:
    base = dict(cnn_width=width, anchors=ANCHORS, num_classes=1, use_batchnorm=True, residual=True,
                activation="relu", head="improved", head_options=dict(REFERENCE_HEAD, **(head_options or {})))
    base.update(kw)
    return ModelConfig(**base)


def _trainable(model) -> int:
    return int(sum(np.prod(v.shape) for v in model.trainable_weights))


def _conv_bn(cin, cout, k=1):  # conv (no bias, BN on) + BN gamma/beta
    return k * k * cin * cout + 2 * cout


def _dwconv(cin, cout, k=3):  # depthwise k x k + BN, pointwise 1x1 + BN
    return k * k * cin + 2 * cin + _conv_bn(cin, cout)


def test_defaults_keep_the_spec_reference_count():
    """spec/model.md: W=16 reference configuration = 138,344 trainable (dw conv, no SPPF scaling)."""
    from utod.model.detector import build_model

    assert _trainable(build_model(_cfg(16))) == 138_344


def test_std_conv_replaces_every_dwconv_by_one_full_conv():
    """--utod-conv std: each DWConv(cin->cout) becomes one 3x3 ConvBNAct; the count changes by
    exactly the sum over the replaced blocks (backbone and head), stem unchanged."""
    from utod.model.detector import build_model

    w = 8
    dw = build_model(_cfg(w, head_options=dict(use_head_ese=False, large_obj_branch=False)))
    std = build_model(_cfg(w, head_options=dict(use_head_ese=False, large_obj_branch=False, conv="std"),
                           conv="std"))
    c = 4 * w
    backbone = [(w, 2 * w), (2 * w, 4 * w), (4 * w, 8 * w), (8 * w, 8 * w)]
    # improved + IoU-aware head: context, res_dw1, res_dw2, box x2, obj, quality x2, cls tower x2 (cls_mid)
    mid = max(8, min(c, round(c * 0.5)))
    head = [(c, c)] * 8 + [(mid, mid)] * 2
    delta = sum(_conv_bn(a, b, 3) - _dwconv(a, b) for a, b in backbone + head)
    assert _trainable(std) - _trainable(dw) == delta
    assert std.backbone.conv == "std" and std.head.conv == "std"


@pytest.mark.parametrize("scale,extra", [("none", 0), ("bn", 2 * 2 * 32), ("conv", 2 * (32 * 32 + 2 * 32))])
def test_sppf_scaling_adds_one_bn_or_1x1_conv_per_branch(scale, extra):
    """c_hidden = 4W (= 32 at W=8): bn adds 2 BN (gamma, beta), conv adds 2 x (1x1 conv + BN)."""
    from utod.model.detector import build_model

    base = _trainable(build_model(_cfg(8)))
    assert _trainable(build_model(_cfg(8, sppf_scale=scale))) - base == extra


def test_sppf_bn_scaling_is_identity_without_batchnorm():
    from utod.model.detector import build_model

    a = build_model(_cfg(8, use_batchnorm=False))
    b = build_model(_cfg(8, use_batchnorm=False, sppf_scale="bn"))
    assert a.count_params() == b.count_params()


def test_disable_cls_drops_the_cls_branch_and_channels():
    from utod.model.detector import build_model

    with_cls = build_model(_cfg(16))
    classless = build_model(_cfg(16, disable_cls=True))
    c, mid, a = 64, 32, 8
    cls_branch = _conv_bn(c, mid) + 2 * _dwconv(mid, mid) + (mid * a + a)  # reduce, 2 DWConv, cls_out
    assert _trainable(with_cls) - _trainable(classless) == cls_branch
    assert not hasattr(classless.head, "cls_out")
    raw = classless(np.zeros((2, 64, 64, 3), np.float32))
    assert raw.shape == (2, 8, 8, a * 6)  # tx ty tw th obj quality per anchor (UHD: 48 channels)
    assert classless.num_classes == 0 and classless.config.num_classes == 1


def test_disable_cls_needs_exactly_one_class():
    with pytest.raises(ConfigError, match="exactly one class"):
        _cfg(8, num_classes=2, class_names=["a", "b"], disable_cls=True)


def test_classless_score_modes_fold_and_score_from_quality():
    from utod._keras import tf
    from utod.boxes import split_raw
    from utod.model.detector import build_model
    from utod.model.postprocess import class_scores, score_mode_for

    model = build_model(_cfg(8, disable_cls=True))
    assert score_mode_for(model) == "quality"  # IoU-aware head -> quality_cls -> quality
    model.config.score_mode = "obj_quality_cls"
    assert score_mode_for(model) == "obj_quality"
    raw = tf.constant(np.random.default_rng(0).normal(size=(1, 8, 8, 48)).astype(np.float32))
    parts = split_raw(raw, 8, 0, True)
    s = class_scores(parts, "quality").numpy()
    np.testing.assert_allclose(s[..., 0], tf.sigmoid(parts.quality).numpy(), rtol=1e-6)
    s = class_scores(parts, "obj").numpy()
    np.testing.assert_allclose(s[..., 0], tf.sigmoid(parts.obj).numpy(), rtol=1e-6)


def test_new_options_round_trip_and_old_configs_still_load():
    cfg = _cfg(8, conv="std", sppf_scale="conv", disable_cls=True, in_channels=1)
    again = ModelConfig.from_dict(cfg.to_dict())
    assert (again.conv, again.sppf_scale, again.disable_cls, again.in_channels) == ("std", "conv", True, 1)
    old = {k: v for k, v in _cfg(8).to_dict().items() if k not in ("conv", "sppf_scale", "disable_cls", "in_channels")}
    assert ModelConfig.from_dict(old).head_classes == 1
    with pytest.raises(ConfigError):
        _cfg(8, conv="grouped")
    with pytest.raises(ConfigError):
        _cfg(8, sppf_scale="ln")


@pytest.mark.parametrize("channels", [1, 2])
def test_stem_takes_the_input_mode_channels(channels):
    from utod.model.detector import build_model

    model = build_model(_cfg(8, in_channels=channels, img_size=(32, 32)))
    assert model.backbone.stem.conv.kernel.shape == (3, 3, channels, 8)
    assert model(np.zeros((1, 32, 32, channels), np.float32)).shape[1:3] == (4, 4)
