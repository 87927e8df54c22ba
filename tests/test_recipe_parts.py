"""UHD recipe parts without training: ce loss, sml_fixed anchors and plot, input modes,
presets, the EMA small-data warning, the anchor-head distillation terms."""

from __future__ import annotations

import math

import numpy as np
import pytest

from utod.errors import ConfigError

RNG = np.random.default_rng(0)


# ---------------------------------------------------------------- ce classification loss
def test_ce_loss_is_weighted_softmax_ce_over_positives():
    from utod._keras import tf
    from utod.registry import get_registry

    ce = get_registry().create("cls_loss", "ce")
    logits = RNG.normal(size=(2, 3, 4, 4, 5)).astype(np.float32)
    targets = np.zeros_like(logits)
    pos = np.zeros((2, 3, 4, 4), np.float32)
    for (b, a, y, x, c, w) in [(0, 0, 1, 1, 2, 1.0), (1, 2, 3, 0, 4, 0.6), (1, 1, 0, 2, 0, 0.3)]:
        targets[b, a, y, x, c] = w
        pos[b, a, y, x] = 1.0
    got = float(ce(tf.constant(logits), tf.constant(targets), tf.constant(pos)))
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    idx, w = targets.argmax(-1), targets.max(-1)
    per = -np.take_along_axis(logp, idx[..., None], -1)[..., 0]
    assert got == pytest.approx(float((per * w * pos).sum() / pos.sum()), rel=1e-5)


def test_ce_loss_with_one_class_equals_bce():
    from utod._keras import tf
    from utod.registry import get_registry

    reg = get_registry()
    logits = tf.constant(RNG.normal(size=(1, 2, 3, 3, 1)).astype(np.float32))
    targets = tf.constant((RNG.random((1, 2, 3, 3, 1)) > 0.5).astype(np.float32))
    pos = tf.constant((RNG.random((1, 2, 3, 3)) > 0.3).astype(np.float32))
    a = float(reg.create("cls_loss", "ce")(logits, targets, pos))
    b = float(reg.create("cls_loss", "bce")(logits, targets, pos))
    assert a == pytest.approx(b, rel=1e-6)


# ---------------------------------------------------------------- sml_fixed anchors
def test_sml_fixed_medians_and_proportional_extra_anchors():
    from utod.anchors import _allocate, kmeans_anchors, wh_iou

    small = RNG.uniform(0.05, 0.1, (30, 2))
    medium = RNG.uniform(0.25, 0.35, (30, 2))
    large = RNG.uniform(0.6, 0.8, (30, 2))
    wh = np.concatenate([small, medium, large]).astype(np.float32)
    assert _allocate(5, [30, 30, 30]) == [2, 2, 1]  # k=8 equal thirds: 3 + 3 + 2 anchors in total
    anchors = kmeans_anchors(wh, 8, alg="sml_fixed")
    assert anchors.shape == (8, 2)
    areas = anchors[:, 0] * anchors[:, 1]
    assert np.all(np.diff(areas) >= 0)  # sorted by area
    for group, n in ((small, 3), (medium, 3), (large, 2)):
        inside = np.all((anchors >= group.min(0) - 1e-6) & (anchors <= group.max(0) + 1e-6), axis=1)
        assert inside.sum() == n
        median = np.median(group, axis=0)
        assert np.isclose(anchors, median, atol=1e-6).all(axis=1).any()  # the group's fixed anchor
    np.testing.assert_array_equal(anchors, kmeans_anchors(wh, 8, alg="sml_fixed"))  # seeded
    assert kmeans_anchors(wh, 1, alg="sml_fixed").round(5).tolist() == [np.median(wh, 0).round(5).tolist()]
    two = kmeans_anchors(wh, 2, alg="sml_fixed")
    np.testing.assert_allclose(two, [np.median(small, 0), np.median(large, 0)], rtol=1e-5)
    assert wh_iou(wh, anchors).max(1).mean() > 0.7


def test_anchor_plot_is_written(tmp_path):
    from utod.anchors import kmeans_anchors, plot_anchors

    wh = RNG.uniform(0.05, 0.9, (50, 2))
    path = tmp_path / "anchors.png"
    assert plot_anchors(wh, kmeans_anchors(wh, 4, alg="sml_fixed"), path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not plot_anchors(np.zeros((0, 2)), np.ones((2, 2)), tmp_path / "none.png")


# ---------------------------------------------------------------- input modes
def _rgb(h=4, w=6):
    return RNG.random((h, w, 3)).astype(np.float32)


def test_y_mode_is_bt601_full_range_luma_of_truncated_uint8():
    from utod.registry import get_registry

    img = _rgb()
    backend = get_registry().create("resize", "opencv_inter_nearest_y")
    out = backend.to_input(img)
    u8 = np.clip(img * 255, 0, 255).astype(np.uint8).astype(np.int64)
    y8 = (4899 * u8[..., 0] + 9617 * u8[..., 1] + 1868 * u8[..., 2] + (1 << 13)) >> 14
    assert out.shape == (4, 6, 1) and backend.channels == 1
    np.testing.assert_array_equal(np.rint(out[..., 0] * 255).astype(np.int64), y8)


@pytest.mark.parametrize("mode,levels", [("y_bin", (0.0, 1.0)), ("y_tri", (0.0, 0.5, 1.0))])
def test_binarised_and_ternarised_y(mode, levels):
    from utod.registry import get_registry

    reg = get_registry()
    img = _rgb(16, 16)
    y = reg.create("resize", "opencv_inter_nearest_y").to_input(img)[..., 0]
    out = reg.create("resize", f"opencv_inter_nearest_{mode}").to_input(img)[..., 0]
    assert set(np.unique(out).tolist()) <= set(levels)
    if mode == "y_bin":
        np.testing.assert_array_equal(out, (y >= 0.5).astype(np.float32))
    else:
        np.testing.assert_array_equal(out, np.where(y < 1 / 3, 0.0, np.where(y < 2 / 3, 0.5, 1.0)))


def test_yuv422_is_yuyv_two_channels_and_needs_an_even_width():
    import cv2

    from utod.registry import get_registry

    backend = get_registry().create("resize", "opencv_inter_nearest_yuv422")
    img = _rgb(4, 6)
    out = backend.to_input(img)
    assert out.shape == (4, 6, 2) and backend.channels == 2 and backend.input_mode == "yuv422"
    u8 = np.clip(img * 255, 0, 255).astype(np.uint8)
    yuv = cv2.cvtColor(u8, cv2.COLOR_RGB2YUV_YUYV)
    np.testing.assert_array_equal(np.rint(out * 255).astype(np.uint8), yuv)
    grey = np.full((2, 4, 3), 0.5, np.float32)  # neutral grey: U = V = 128
    np.testing.assert_allclose(backend.to_input(grey)[..., 1], 128 / 255, atol=1.5 / 255)
    with pytest.raises(ValueError, match="even input width"):
        backend.to_input(_rgb(4, 5))


def test_preprocessor_applies_the_input_mode():
    from utod.infer.preprocess import Preprocessor

    pre = Preprocessor((8, 8), "opencv_inter_nearest_y")
    batch = pre.batch([np.full((16, 16, 3), 255, np.uint8), np.zeros((8, 8, 3), np.uint8)])
    assert batch.shape == (2, 8, 8, 1)
    assert batch[0].min() == 1.0 and batch[1].max() == 0.0
    assert Preprocessor((8, 8), "opencv_inter_nearest").batch([]).shape == (0, 8, 8, 3)


# ---------------------------------------------------------------- presets
def test_every_preset_is_a_valid_config_and_flags_win(tmp_path):
    from utod.config import TrainConfig, build_config
    from utod.presets import PRESET_NAMES, preset_settings
    from utod.train.setup import resolve_config

    assert {"seed", "uhd", "small-data"} <= set(PRESET_NAMES)
    for name in PRESET_NAMES:
        settings = preset_settings(name)
        assert set(settings) <= set(TrainConfig.field_names())
        build_config(settings)  # type-checks every value
    aug = preset_settings("small-data")["aug_config"]
    assert aug.endswith("aug_small_data.yaml") and __import__("os").path.isfile(aug)

    run = resolve_config({"preset": "seed", "image_dir": "x", "lr": 0.01}, None).cfg
    assert (run.cnn_width, run.ema_decay, run.lr, run.use_head_ese) == (64, 0.9999, 0.01, True)
    yml = tmp_path / "run.yaml"
    yml.write_text("preset: uhd\ncnn_width: 24\n", encoding="utf-8")
    run = resolve_config({"image_dir": "x", "epochs": 7}, str(yml)).cfg
    assert (run.cnn_width, run.epochs, run.lr, run.disable_cls, run.utod_sppf_scale) == (24, 7, 0.03, True, "conv")
    default = resolve_config({"image_dir": "x"}, None).cfg
    assert default.cnn_width == TrainConfig().cnn_width  # no preset: defaults untouched


def test_train_help_lists_the_presets():
    from click.testing import CliRunner

    from utod.cli import cli

    out = CliRunner().invoke(cli, ["train", "--help"]).output
    for name in ("seed", "uhd", "small-data"):
        assert name in out
    assert "--disable-cls" in out and "--distill-box-l1" in out and "--utod-sppf-scale" in out


# ---------------------------------------------------------------- EMA small-data safety
def test_ema_init_share_formula_and_warning():
    from utod.ema_safety import decay_from_window, ema_messages, init_weight_share

    assert init_weight_share(0.9999, 1000, warmup=False) == pytest.approx(0.9999 ** 1000)  # 0.905
    msgs = ema_messages(0.9999, 1000, warmup=False)
    assert len(msgs) == 1 and msgs[0].startswith("WARNING") and "90%" in msgs[0]
    # with the warm-up: prod_{u=1..T} min(d, (1+u)/(10+u)) = prod (1+u)/(10+u) while below d
    expected = math.prod((1 + u) / (10 + u) for u in range(1, 51))
    assert init_weight_share(0.9999, 50) == pytest.approx(expected, rel=1e-9)
    note = ema_messages(0.9999, 1000)
    assert len(note) == 1 and note[0].startswith("Note") and "never reached" in note[0]
    assert ema_messages(0.99, 100000) == []
    assert decay_from_window(0.05, 2000) == pytest.approx(1 - 1 / 100)


# ---------------------------------------------------------------- anchor-head distillation
def _layout_raw(a=2, h=3, w=3, q=True, b=2):
    return RNG.normal(size=(b, h, w, a * (5 + int(q)))).astype(np.float32)


def _bce(x, t):
    return np.maximum(x, 0) - x * t + np.log1p(np.exp(-np.abs(x)))


def _sig(x):
    return 1 / (1 + np.exp(-x))


def test_obj_quality_box_terms_match_their_formulas():
    from utod._keras import tf
    from utod.distill import DistillLoss

    s, t = _layout_raw(), _layout_raw()
    sa = np.array([[0.2, 0.3], [0.5, 0.4]], np.float32)
    ta = np.array([[0.25, 0.2], [0.6, 0.6]], np.float32)
    temp = 1.5
    d = DistillLoss(0.0, 0.0, obj_weight=0.1, quality_weight=0.2, box_l1_weight=0.05, temperature=temp,
                    student_layout=(2, 0, True), teacher_layout=(2, 0, True))
    out = d(tf.constant(s), tf.constant(t), student_anchors=tf.constant(sa), teacher_anchors=tf.constant(ta))
    sv, tv = s.reshape(2, 3, 3, 2, 6), t.reshape(2, 3, 3, 2, 6)
    obj = temp ** 2 * _bce(sv[..., 4] / temp, _sig(tv[..., 4] / temp)).mean()
    qual = temp ** 2 * _bce(sv[..., 5] / temp, _sig(tv[..., 5] / temp)).mean()

    def decode(v, anchors):
        gx, gy = np.meshgrid(np.arange(3), np.arange(3))
        cx = (_sig(v[..., 0]) + gx[None, :, :, None]) / 3
        cy = (_sig(v[..., 1]) + gy[None, :, :, None]) / 3
        sp = lambda z: np.minimum(np.log1p(np.exp(z)), 4.0)  # noqa: E731
        return np.stack([cx, cy, anchors[:, 0] * sp(v[..., 2]), anchors[:, 1] * sp(v[..., 3])], -1)

    box = np.abs(decode(sv, sa) - decode(tv, ta)).mean()
    assert float(out["distill_obj"]) == pytest.approx(0.1 * obj, rel=1e-5)
    assert float(out["distill_quality"]) == pytest.approx(0.2 * qual, rel=1e-5)
    assert float(out["distill_box_l1"]) == pytest.approx(0.05 * box, rel=1e-5)
    assert float(out["distill"]) == pytest.approx(0.1 * obj + 0.2 * qual + 0.05 * box, rel=1e-5)


@pytest.mark.parametrize("classes", [3, 1])
def test_kl_term_matches_its_formula(classes):
    """--distill-kl: T^2 * mean over cells of KL(softmax(t/T) || softmax(s/T)); with one class
    the soft-target BCE (a softmax over one class carries nothing)."""
    from utod._keras import tf
    from utod.distill import DistillLoss

    rng = np.random.default_rng(5)
    d_per_anchor = 4 + 1 + 1 + classes
    s, t = (rng.normal(0, 2, (2, 3, 3, 2 * d_per_anchor)).astype(np.float32) for _ in range(2))
    temp = 2.0
    d = DistillLoss(0.0, 0.0, kl_weight=0.7, temperature=temp, student_layout=(2, classes, True),
                    teacher_layout=(2, classes, True))
    out = d(tf.constant(s), tf.constant(t))
    sc = s.reshape(2, 3, 3, 2, d_per_anchor)[..., 6:] / temp
    tc = t.reshape(2, 3, 3, 2, d_per_anchor)[..., 6:] / temp
    if classes == 1:
        expected = temp ** 2 * _bce(sc, _sig(tc)).mean()
    else:
        def log_softmax(x):
            x = x - x.max(-1, keepdims=True)
            return x - np.log(np.exp(x).sum(-1, keepdims=True))

        lt, ls = log_softmax(tc.astype(np.float64)), log_softmax(sc.astype(np.float64))
        expected = temp ** 2 * (np.exp(lt) * (lt - ls)).sum(-1).mean()
    assert float(out["distill_kl"]) == pytest.approx(0.7 * expected, rel=1e-5)
    assert float(out["distill"]) == pytest.approx(0.7 * expected, rel=1e-5)
    if classes > 1:  # identical class logits: no divergence
        assert float(d(tf.constant(s), tf.constant(s))["distill_kl"]) == pytest.approx(0.0, abs=1e-6)


def test_normalised_feature_l1_term_goes_through_the_adapter():
    """--distill-feat (UHD): mean |n(A(s)) - n(t)| with n() the L2 normalisation over channels;
    the student's 8 channels reach the teacher's 16 through the trainable 1x1 adapter."""
    from utod._keras import tf
    from utod.distill import DistillLoss

    rng = np.random.default_rng(9)
    s_feat = rng.normal(size=(2, 4, 4, 8)).astype(np.float32)
    t_feat = rng.normal(size=(2, 4, 4, 16)).astype(np.float32)
    raw = tf.zeros([2, 4, 4, 12])
    d = DistillLoss(0.0, 0.0, feat_l1_weight=0.5, student_channels=8, teacher_channels=16)
    assert d.uses_features and d.adapter is not None
    s_var = tf.Variable(s_feat)
    with tf.GradientTape() as tape:
        out = d(raw, raw, s_var, tf.constant(t_feat))
    kernel, bias = (v.numpy() for v in d.adapter.weights)
    projected = s_feat @ kernel[0, 0] + bias

    def unit(x):
        return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-6)

    expected = 0.5 * np.abs(unit(projected) - unit(t_feat)).mean()
    assert float(out["distill_feat_l1"]) == pytest.approx(expected, rel=1e-5)
    assert float(out["distill_feature"]) == 0.0 and float(out["distill"]) == pytest.approx(expected, rel=1e-5)
    grads = tape.gradient(out["distill"], [s_var, *d.trainable_variables])
    assert all(g is not None and float(tf.reduce_sum(tf.abs(g))) > 0 for g in grads)


def test_kl_term_needs_class_outputs():
    from types import SimpleNamespace

    from utod.distill import check_anchor_terms_compatible

    classless = SimpleNamespace(num_anchors=3, num_classes=0, has_quality=True)
    with pytest.raises(ConfigError, match="--distill-kl compares class outputs, and the student has none"):
        check_anchor_terms_compatible(classless, classless, False, need_classes=True)


def test_cosine_ramp_scales_every_term_per_epoch():
    from utod._keras import tf
    from utod.distill import DistillLoss, cosine_ramp

    assert cosine_ramp(0, 100) == pytest.approx(0.5 * (1 - math.cos(math.pi / 100)))
    assert cosine_ramp(49, 100) == pytest.approx(0.5)
    assert cosine_ramp(99, 100) == pytest.approx(1.0)
    s, t = tf.constant(_layout_raw()), tf.constant(_layout_raw())
    d = DistillLoss(1.0, 0.0, obj_weight=0.5, cosine=True, student_layout=(2, 0, True),
                    teacher_layout=(2, 0, True))
    full = float(d(s, t)["distill_logit"]) + float(d(s, t)["distill_obj"])
    step = tf.function(lambda a, b: d(a, b)["distill"])
    d.set_epoch(1, 4)
    assert float(step(s, t)) == pytest.approx(full * cosine_ramp(1, 4), rel=1e-5)
    d.set_epoch(3, 4)
    assert float(step(s, t)) == pytest.approx(full, rel=1e-5)  # same traced function, new ramp
    assert step.experimental_get_tracing_count() == 1


def test_teacher_of_another_grid_width_and_anchors_is_resized():
    from utod._keras import tf
    from utod.distill import DistillLoss

    s = tf.constant(_layout_raw(h=4, w=4))
    t = tf.constant(_layout_raw(h=8, w=8))
    d = DistillLoss(0.0, 0.0, obj_weight=1.0, box_l1_weight=1.0, student_layout=(2, 0, True),
                    teacher_layout=(2, 0, True))
    out = d(s, t, student_anchors=tf.ones((2, 2)) * 0.3, teacher_anchors=tf.ones((2, 2)) * 0.5)
    assert float(out["distill_box_l1"]) > 0 and np.isfinite(float(out["distill"]))
    t_obj = tf.image.resize(tf.reshape(t, [2, 8, 8, 2, 6])[..., 4], [4, 4]).numpy()  # [B, h, w, A], bilinear
    s_obj = s.numpy().reshape(2, 4, 4, 2, 6)[..., 4]
    assert float(out["distill_obj"]) == pytest.approx(_bce(s_obj, _sig(t_obj)).mean(), rel=1e-5)


def test_anchor_terms_need_matching_anchor_count_and_classes():
    from types import SimpleNamespace

    from utod.distill import check_anchor_terms_compatible

    s = SimpleNamespace(num_anchors=3, num_classes=0, has_quality=True)
    check_anchor_terms_compatible(s, SimpleNamespace(num_anchors=3, num_classes=0, has_quality=True), True)
    with pytest.raises(ConfigError, match="anchors: student 3, teacher 8"):
        check_anchor_terms_compatible(s, SimpleNamespace(num_anchors=8, num_classes=0, has_quality=True), False)
    with pytest.raises(ConfigError, match="head classes"):
        check_anchor_terms_compatible(s, SimpleNamespace(num_anchors=3, num_classes=1, has_quality=True), False)
    with pytest.raises(ConfigError, match="quality"):
        check_anchor_terms_compatible(s, SimpleNamespace(num_anchors=3, num_classes=0, has_quality=False), True)
    from utod.distill import DistillLoss

    with pytest.raises(ConfigError, match="temperature"):
        DistillLoss(0.0, 0.0, obj_weight=1.0, temperature=0.0)
