"""The third-party example package (examples/utod-example-plugin), loaded through a fake
``utod`` entry point exactly as if it were pip-installed, and used through the toolkit."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from utod.cli import cli
from utod.components import Sample
from utod.registry import (
    ComponentOptionError,
    build_registry,
    parse_option_pairs,
    set_registry,
    validate_options,
)

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
PACKAGE = EXAMPLES / "utod-example-plugin"
PROJECT = tomllib.loads((PACKAGE / "pyproject.toml").read_text(encoding="utf-8"))["project"]
PROVIDER, VERSION = PROJECT["name"], PROJECT["version"]
ENTRY_POINTS = PROJECT["entry-points"]["utod"]
IMPL_MODULES = ("utod_example_plugin.iou", "utod_example_plugin.atss", "utod_example_plugin.gridmask")

# docs/loss.md §12.1 box pair: p = (0.50, 0.50, 0.20, 0.30), t = (0.55, 0.45, 0.25, 0.20).
P_BOX, T_BOX = (0.50, 0.50, 0.20, 0.30), (0.55, 0.45, 0.25, 0.20)
IOU_PT = 0.46666604444527393  # inter 0.035 / (0.075 + 1e-7)
DIOU_PT = IOU_PT - 0.005 / 0.165625  # rho^2 = 0.005, enclosing 0.275 x 0.300 -> c^2 = 0.165625
EIOU_PT = DIOU_PT - 0.05 ** 2 / 0.275 ** 2 - 0.10 ** 2 / 0.300 ** 2


@pytest.fixture
def example_registry(fake_distributions, monkeypatch):
    """The real installed plugins plus utod-example-plugin (its src on sys.path, its entry
    points from its own pyproject.toml), installed as the process-wide registry."""
    monkeypatch.syspath_prepend(str(PACKAGE / "src"))
    for mod in [m for m in sys.modules if m.startswith("utod_example_plugin")]:
        monkeypatch.delitem(sys.modules, mod)
    fake_distributions([(PROVIDER, VERSION, ENTRY_POINTS)], keep_real=True)
    reg = build_registry()
    set_registry(reg)
    yield reg
    set_registry(None)


def test_list_plugins_shows_the_example_components(example_registry):
    assert not [m for m in IMPL_MODULES if m in sys.modules], "registration must stay lazy"
    result = CliRunner().invoke(cli, ["list-plugins", "--json"])
    assert result.exit_code == 0, result.output
    rows = [r for r in json.loads(result.output) if r["provider"] == PROVIDER]
    assert {(r["kind"], r["name"]) for r in rows} == {
        ("iou_loss", "diou"), ("iou_loss", "eiou"), ("assigner", "atss"), ("augmentation", "GridMask")}
    assert all(r["version"] == VERSION and r["plugin"] == "example" and r["status"] == "ok" for r in rows), rows
    atss = next(r for r in rows if r["name"] == "atss")
    assert atss["params"] == {"topk": 9, "center_in_gt": True, "iou_cls_target": False}
    assert not [m for m in IMPL_MODULES if m in sys.modules]
    assert not [f for f in example_registry.failures if f.provider == PROVIDER]
    table = CliRunner().invoke(cli, ["list-plugins", "--kind", "assigner"]).output
    assert any(line.split()[:3] == ["assigner", "atss", PROVIDER] for line in table.splitlines())


# --------------------------------------------------------------------------- IoU losses
@pytest.mark.parametrize(("name", "expected"), [("diou", DIOU_PT), ("eiou", EIOU_PT)])
def test_iou_loss_values(example_registry, name, expected):
    from utod._keras import tf

    fn = example_registry.create("iou_loss", name)
    same = fn(tf.constant([P_BOX, T_BOX]), tf.constant([P_BOX, T_BOX])).numpy()
    np.testing.assert_allclose(same, 1.0, atol=1e-5)
    np.testing.assert_allclose(fn(tf.constant(P_BOX), tf.constant(T_BOX)).numpy(), expected, rtol=1e-5)
    # symmetric, and disjoint boxes far apart are negative
    np.testing.assert_allclose(fn(tf.constant(T_BOX), tf.constant(P_BOX)).numpy(), expected, rtol=1e-5)
    far = fn(tf.constant([0.1, 0.1, 0.1, 0.1]), tf.constant([0.9, 0.9, 0.1, 0.1])).numpy()
    assert far < -0.5


@pytest.mark.parametrize("name", ["diou", "eiou"])
def test_iou_loss_broadcasts_and_is_differentiable_in_tf_function(example_registry, name):
    from utod._keras import tf

    fn = example_registry.create("iou_loss", name, {"eps": "1e-6"})
    assert fn.eps == pytest.approx(1e-6)
    pred = tf.Variable(tf.random.uniform([2, 3, 4, 4, 4], 0.2, 0.6, seed=1))
    target = tf.constant(T_BOX)

    @tf.function
    def loss_and_grad():
        with tf.GradientTape() as tape:
            sim = fn(pred, target)
            loss = tf.reduce_mean(1.0 - sim)
        return sim, tape.gradient(loss, pred)

    sim, grad = loss_and_grad()
    assert sim.shape == (2, 3, 4, 4)
    assert np.isfinite(grad.numpy()).all() and np.abs(grad.numpy()).sum() > 0
    with pytest.raises(ComponentOptionError, match="eps must be > 0"):
        example_registry.create("iou_loss", name, {"eps": 0})


def test_eiou_penalises_shape_mismatch_more_than_diou(example_registry):
    from utod._keras import tf

    # Same centre, different shape: DIoU is plain IoU, EIoU subtracts the size gaps.
    p, t = tf.constant([0.5, 0.5, 0.4, 0.1]), tf.constant([0.5, 0.5, 0.1, 0.4])
    diou = float(example_registry.create("iou_loss", "diou")(p, t))
    eiou = float(example_registry.create("iou_loss", "eiou")(p, t))
    iou = 0.01 / (0.04 + 0.04 - 0.01 + 1e-7)
    assert diou == pytest.approx(iou, rel=1e-5)
    assert eiou == pytest.approx(iou - 0.09 / 0.16 - 0.09 / 0.16, rel=1e-5)


# --------------------------------------------------------------------------- assigner
B, A, H, W, M, C = 3, 3, 8, 8, 4, 2
ANCHORS = np.array([[0.1, 0.1], [0.3, 0.2], [0.6, 0.6]], np.float32)


def _targets():
    boxes = np.zeros((B, M, 4), np.float32)
    labels = np.full((B, M), -1, np.int32)
    mask = np.zeros((B, M), bool)
    boxes[0, 0], labels[0, 0] = (0.5, 0.5, 0.3, 0.3), 0  # covers the 4 central cell centres
    boxes[0, 1], labels[0, 1] = (0.2, 0.8, 0.05, 0.05), 1  # tiny: contains no cell centre
    boxes[1, 0], labels[1, 0] = (0.9, 0.1, 0.7, 0.15), 1  # wide strip along the top row
    mask[0, :2] = mask[1, 0] = True  # image 2 has no box
    return boxes, labels, mask


def _assign(assigner, boxes, labels, mask, num_classes=C, has_quality=False):
    from utod._keras import tf

    pred = tf.random.uniform([B, A, H, W, 4], 0.05, 0.95, seed=3)
    return assigner(pred, tf.zeros([B, A, H, W, num_classes]), tf.zeros([B, A, H, W]), tf.constant(boxes),
                    tf.constant(labels), tf.constant(mask), tf.constant(ANCHORS), num_classes, has_quality)


def test_atss_assigns_the_expected_locations(example_registry):
    boxes, labels, mask = _targets()
    out = _assign(example_registry.create("assigner", "atss"), boxes, labels, mask)
    assert out.pos_mask.shape == (B, A, H, W)
    assert out.box_targets.shape == (B, A, H, W, 4) and out.cls_targets.shape == (B, A, H, W, C)
    pos = out.pos_mask.numpy()
    assert set(np.unique(pos)) <= {0.0, 1.0}
    got = {tuple(int(v) for v in idx) for idx in np.argwhere(pos > 0)}
    assert got == {(0, 1, 3, 3), (0, 1, 3, 4), (0, 1, 4, 3), (0, 1, 4, 4),  # anchor 0.3x0.2 at the centre
                   (0, 0, 6, 1),  # the tiny box keeps its best candidate (smallest anchor, its cell)
                   (1, 1, 0, 5), (1, 1, 0, 6), (1, 1, 0, 7)}
    assert pos[2].sum() == 0  # no box, no positive
    boxes_t, cls_t = out.box_targets.numpy(), out.cls_targets.numpy()
    for b, a, j, i in got:
        owner = {(0, 6, 1): 1}.get((b, j, i), 0)
        np.testing.assert_allclose(boxes_t[b, a, j, i], boxes[b, owner])
        np.testing.assert_array_equal(cls_t[b, a, j, i], np.eye(C)[labels[b, owner]])
    assert cls_t[pos == 0].sum() == 0


def test_atss_options_change_the_assignment(example_registry):
    boxes, labels, mask = _targets()
    loose = _assign(example_registry.create("assigner", "atss", {"center_in_gt": False, "topk": 25}),
                    boxes, labels, mask).pos_mask.numpy()
    strict = _assign(example_registry.create("assigner", "atss"), boxes, labels, mask).pos_mask.numpy()
    assert loose.sum() > strict.sum() and (loose >= strict).all()
    soft = _assign(example_registry.create("assigner", "atss", {"iou_cls_target": True}), boxes, labels, mask)
    cls = soft.cls_targets.numpy()
    assert (cls >= 0).all() and (cls <= 1).all() and cls.max() < 1.0 and cls.sum() > 0
    with pytest.raises(ComponentOptionError, match="topk must be >= 1"):
        example_registry.create("assigner", "atss", {"topk": 0})
    with pytest.raises(ComponentOptionError, match="Did you mean 'topk'"):
        example_registry.create("assigner", "atss", {"top_k": 3})


def test_atss_in_tf_function_with_no_boxes_and_no_classes(example_registry):
    from utod._keras import tf

    assigner = tf.function(example_registry.create("assigner", "atss", {"topk": 4}))
    empty = _assign(assigner, np.zeros((B, 0, 4), np.float32), np.zeros((B, 0), np.int32), np.zeros((B, 0), bool))
    assert empty.pos_mask.shape == (B, A, H, W) and float(tf.reduce_sum(empty.pos_mask)) == 0.0
    boxes, labels, mask = _targets()
    out = _assign(assigner, boxes, labels, np.zeros_like(mask))  # padded but all masked
    assert float(tf.reduce_sum(out.pos_mask)) == 0.0
    no_cls = _assign(example_registry.create("assigner", "atss"), boxes, labels, mask, num_classes=0)
    assert no_cls.cls_targets.shape == (B, A, H, W, 0) and float(tf.reduce_sum(no_cls.pos_mask)) == 8.0


# --------------------------------------------------------------------------- augmentation
def _sample(size=32):
    boxes = np.array([[0.5, 0.5, 1.0, 1.0], [0.25, 0.25, 0.2, 0.2]], np.float32)
    return Sample(np.full((size, size, 3), 0.8, np.float32), boxes, np.array([3, 7], np.int32))


def test_gridmask_blanks_a_grid_and_keeps_boxes(example_registry):
    aug = example_registry.create("augmentation", "GridMask", {"period": [0.25, 0.25], "ratio": 0.5, "fill": 0.0})
    assert aug.prob == 0.5  # the pipeline draws the gate from the declared default
    sample = _sample()
    out = aug(sample, np.random.default_rng(0))
    assert out.image.shape == (32, 32, 3) and out.image.dtype == np.float32
    blank = (out.image == 0.0).all(axis=-1)
    assert blank.mean() == pytest.approx(0.25)  # period 8 px, squares of 4 px
    assert set(np.unique(out.image)) == {0.0, np.float32(0.8)}
    period_rows = blank.any(axis=1)
    assert (period_rows[:24] == period_rows[8:]).all()  # repeats every 8 pixels
    np.testing.assert_array_equal(out.boxes, sample.boxes)
    np.testing.assert_array_equal(out.labels, sample.labels)
    assert (sample.image == 0.8).all()  # input untouched
    again = aug(_sample(), np.random.default_rng(0)).image
    np.testing.assert_array_equal(again, out.image)  # all randomness comes from rng
    others = {aug(_sample(), np.random.default_rng(s)).image.tobytes() for s in range(8)}
    assert len(others) > 1


def test_gridmask_drops_mostly_hidden_boxes(example_registry):
    from utod_example_plugin.gridmask import visible_fraction

    hidden = np.zeros((8, 8), bool)
    hidden[:4, :4] = True
    boxes = np.array([[0.25, 0.25, 0.5, 0.5], [0.5, 0.5, 1.0, 1.0], [0.75, 0.75, 0.5, 0.5]], np.float32)
    np.testing.assert_allclose(visible_fraction(hidden, boxes), [0.0, 0.75, 1.0])
    aug = example_registry.create("augmentation", "GridMask",
                                  {"period": 0.5, "ratio": 0.5, "min_visibility": 0.8})
    out = aug(_sample(16), np.random.default_rng(1))
    # the full-image box is 75 % visible -> dropped; labels stay aligned with boxes
    assert len(out.boxes) == len(out.labels) and 3 not in out.labels.tolist()
    with pytest.raises(ComponentOptionError, match="ratio must be in"):
        example_registry.create("augmentation", "GridMask", {"ratio": 1.5})


# --------------------------------------------------------------------------- the toolkit
def test_example_aug_yaml_builds_an_augmenter(example_registry):
    aug_mod = pytest.importorskip("utod.data.augment")
    ops = aug_mod.load_aug_config(EXAMPLES / "configs" / "aug.yaml", registry=example_registry)
    names = [name for name, _ in ops]
    assert "GridMask" in names
    augmenter = aug_mod.build_augmenter(example_registry, ops)
    out = augmenter(_sample(64), np.random.default_rng(0))
    assert out.image.shape == (64, 64, 3) and len(out.boxes) == len(out.labels)


def test_example_run_yaml_selects_the_example_components(example_registry):
    config = pytest.importorskip("utod.config")
    cfg = config.build_config(config.load_yaml_config(EXAMPLES / "configs" / "run.yaml"))
    assert (cfg.assigner, cfg.iou_loss) == ("atss", "diou")
    for kind, name, pairs in (("assigner", cfg.assigner, cfg.assigner_opt),
                              ("iou_loss", cfg.iou_loss, cfg.iou_loss_opt)):
        comp = example_registry.get(kind, name)
        assert comp.provider == PROVIDER
        validate_options(comp, parse_option_pairs(pairs))
    assert validate_options(example_registry.get("assigner", "atss"), parse_option_pairs(cfg.assigner_opt)) == {
        "topk": 12}


def test_build_loss_composes_the_example_components(example_registry):
    loss_mod = pytest.importorskip("utod.loss")
    from utod._keras import tf

    loss = loss_mod.build_loss(example_registry, assigner="atss", assigner_options={"topk": 6}, iou_loss="diou",
                               cls_loss="bce", num_anchors=A, num_classes=C, has_quality=False)
    boxes, labels, mask = _targets()
    raw = tf.Variable(tf.random.normal([B, H, W, A * (5 + C)], stddev=0.5, seed=5))
    with tf.GradientTape() as tape:
        parts = loss(raw, tf.constant(boxes), tf.constant(labels), tf.constant(mask), tf.constant(ANCHORS))
    grad = tape.gradient(parts["total"], raw)
    values = {k: float(v) for k, v in parts.items()}
    assert all(np.isfinite(v) for v in values.values()), values
    assert values["box"] > 0 and values["cls"] > 0 and values["obj"] > 0
    assert np.isfinite(grad.numpy()).all() and np.abs(grad.numpy()).sum() > 0
    # 1 - DIoU averaged over exactly the 8 ATSS positives of _targets
    assert values["box"] < 2.0


@pytest.mark.slow
def test_example_package_builds_a_wheel_with_the_entry_point(tmp_path):
    import shutil
    import subprocess
    import zipfile

    src = tmp_path / "pkg"
    shutil.copytree(PACKAGE, src, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                    "-w", str(tmp_path / "dist"), str(src)], check=True, timeout=300)
    (wheel,) = (tmp_path / "dist").glob("utod_example_plugin-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        entry_points = zf.read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "[utod]\nexample = utod_example_plugin.plugin" in entry_points
    for module in ("plugin", "iou", "atss", "gridmask"):
        assert f"utod_example_plugin/{module}.py" in names
