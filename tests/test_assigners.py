"""Target assigners: legacy (docs/loss.md §1.1, §12.3, §12.7) and SimOTA (YOLOX-style)."""

from __future__ import annotations

import numpy as np
import pytest
from utod_plugins.impl.assigners import LegacyAssigner, SimOTAAssigner

from utod._keras import tf
from utod.registry import build_registry

README_ANCHORS = np.array(
    [[0.043750, 0.094437], [0.141667, 0.394426], [0.193750, 0.540625], [0.254172, 0.636096],
     [0.320819, 0.708333], [0.414578, 0.762981], [0.531250, 0.833326], [0.739375, 0.916667]],
    np.float32,
)


def _assign(assigner, gts, labels=None, *, grid=(8, 8), anchors=README_ANCHORS, num_classes=1,
            has_quality=False, pred_boxes=None, cls_logits=None, max_boxes=None):
    """Run ``assigner`` on one image with the given GT list (padded to ``max_boxes``)."""
    a = len(anchors)
    h, w = grid
    m = max_boxes or max(len(gts), 1)
    boxes = np.zeros((1, m, 4), np.float32)
    lab = -np.ones((1, m), np.int32)
    mask = np.zeros((1, m), bool)
    for k, g in enumerate(gts):
        boxes[0, k] = g
        lab[0, k] = 0 if labels is None else labels[k]
        mask[0, k] = True
    if pred_boxes is None:
        pred_boxes = np.full((1, a, h, w, 4), 0.5, np.float32)
    if cls_logits is None:
        cls_logits = np.zeros((1, a, h, w, num_classes), np.float32)
    return assigner(tf.constant(pred_boxes), tf.constant(cls_logits), tf.zeros([1, a, h, w]),
                    tf.constant(boxes), tf.constant(lab), tf.constant(mask), tf.constant(anchors),
                    num_classes, has_quality)


def _positives(assignment) -> list[tuple[int, ...]]:
    return [tuple(int(v) for v in idx[1:]) for idx in np.argwhere(assignment.pos_mask.numpy() > 0.5)]


# ---------------------------------------------------------------------------------- legacy
@pytest.mark.parametrize(
    ("gt", "expected"),
    [((0.53, 0.27, 0.15, 0.40), (1, 2, 4)), ((0.10, 0.90, 0.05, 0.08), (0, 7, 0)),
     ((0.5, 0.5, 0.9, 0.95), (7, 4, 4))],
)
def test_legacy_location_and_anchor(gt, expected):
    out = _assign(LegacyAssigner(), [gt])
    assert _positives(out) == [expected]
    np.testing.assert_allclose(out.box_targets.numpy()[0][expected], gt, rtol=1e-6)
    assert out.cls_targets.numpy()[0][expected].tolist() == [1.0]
    assert out.pos_mask.shape == (1, 8, 8, 8) and out.box_targets.shape == (1, 8, 8, 8, 4)


@pytest.mark.parametrize(("cx", "col"), [(1.0, 7), (0.999, 7), (0.125, 1), (0.12499, 0), (0.0, 0)])
def test_legacy_column_from_cx(cx, col):
    out = _assign(LegacyAssigner(), [(cx, 0.5, 0.05, 0.08)])
    assert [p[2] for p in _positives(out)] == [col]


def test_legacy_wh_scale_changes_the_anchor():
    gt = (0.53, 0.27, 0.15, 0.40)
    scaled = README_ANCHORS.copy()
    scaled[1] *= 3.0  # anchor 1 no longer fits; anchor 2 is the best shape match
    assert _positives(_assign(LegacyAssigner(), [gt], anchors=scaled)) == [(2, 2, 4)]


def test_legacy_collision_later_gt_wins_box_classes_union():
    anchors = np.array([[0.3, 0.4], [0.6, 0.7]], np.float32)
    g0, g1 = (0.30, 0.60, 0.35, 0.50), (0.32, 0.62, 0.30, 0.45)
    out = _assign(LegacyAssigner(), [g0, g1], [0, 1], grid=(2, 2), anchors=anchors, num_classes=2)
    assert _positives(out) == [(0, 1, 0)]
    np.testing.assert_allclose(out.box_targets.numpy()[0, 0, 1, 0], g1, rtol=1e-6)
    assert out.cls_targets.numpy()[0, 0, 1, 0].tolist() == [1.0, 1.0]
    swapped = _assign(LegacyAssigner(), [g1, g0], [1, 0], grid=(2, 2), anchors=anchors, num_classes=2)
    np.testing.assert_allclose(swapped.box_targets.numpy()[0, 0, 1, 0], g0, rtol=1e-6)


def test_legacy_padding_and_empty_images():
    out = _assign(LegacyAssigner(), [], max_boxes=5)
    assert out.pos_mask.numpy().sum() == 0 and out.cls_targets.numpy().sum() == 0
    # a padded row with a real-looking box must be ignored because its mask is False
    boxes = np.zeros((2, 3, 4), np.float32)
    boxes[:, :, :] = (0.5, 0.5, 0.2, 0.2)
    mask = np.array([[True, False, False], [False, False, False]])
    labels = np.array([[0, -1, -1], [-1, -1, -1]], np.int32)
    out = LegacyAssigner()(tf.zeros([2, 8, 8, 8, 4]), tf.zeros([2, 8, 8, 8, 1]), tf.zeros([2, 8, 8, 8]),
                           tf.constant(boxes), tf.constant(labels), tf.constant(mask),
                           tf.constant(README_ANCHORS), 1, False)
    assert out.pos_mask.numpy()[0].sum() == 1 and out.pos_mask.numpy()[1].sum() == 0


def test_legacy_without_classes():
    out = _assign(LegacyAssigner(), [(0.53, 0.27, 0.15, 0.40)], num_classes=0)
    assert out.cls_targets.shape == (1, 8, 8, 8, 0) and out.pos_mask.numpy().sum() == 1


# ---------------------------------------------------------------------------------- simota
ANCHORS_1 = np.array([[0.25, 0.25]], np.float32)


def _cell_centres(h, w):
    cy, cx = np.meshgrid((np.arange(h) + 0.5) / h, (np.arange(w) + 0.5) / w, indexing="ij")
    return cx, cy




def test_simota_each_prediction_has_at_most_one_gt_and_lowest_cost_wins():
    h = w = 8
    rng = np.random.default_rng(3)
    cx, cy = _cell_centres(h, w)
    pred = np.stack([cx + rng.uniform(-0.05, 0.05, (h, w)), cy + rng.uniform(-0.05, 0.05, (h, w)),
                     np.full((h, w), 0.3), np.full((h, w), 0.3)], -1)[None, None].astype(np.float32)
    gts = [(0.45, 0.45, 0.3, 0.3), (0.5, 0.5, 0.32, 0.3), (0.55, 0.5, 0.3, 0.28)]  # heavy overlap
    sim = SimOTAAssigner()
    boxes = np.zeros((1, 4, 4), np.float32)
    boxes[0, :3] = gts
    mask = np.array([[True, True, True, False]])
    m = sim.match(tf.constant(pred), tf.zeros([1, 1, h, w, 1]), tf.constant(boxes),
                  tf.constant([[0, 0, 0, -1]]), tf.constant(mask), 1)
    claimed = m.claimed.numpy()[0]  # [M, N]
    owner = m.owner.numpy()[0]
    cost = m.cost.numpy()[0].T  # [N, M]
    assert claimed[3].sum() == 0  # padding claims nothing
    assert (claimed.sum(0) > 1).any(), "test needs at least one conflict"
    for n in range(h * w):
        gts_n = np.flatnonzero(claimed[:, n])
        if len(gts_n) == 0:
            assert owner[n] == -1
        else:
            assert owner[n] == gts_n[np.argmin(cost[n, gts_n])]
    # each GT claimed exactly its dynamic_k lowest-cost predictions
    for g in range(3):
        k = int(m.dynamic_k.numpy()[0, g])
        assert claimed[g].sum() == k
        chosen = np.flatnonzero(claimed[g])
        assert cost[chosen, g].max() <= np.sort(cost[:, g])[k - 1] + 1e-6
    out = sim(tf.constant(pred), tf.zeros([1, 1, h, w, 1]), tf.zeros([1, 1, h, w]), tf.constant(boxes),
              tf.constant([[0, 0, 0, -1]]), tf.constant(mask), tf.constant(ANCHORS_1), 1, True)
    pos = out.pos_mask.numpy().reshape(-1)
    assert pos.sum() == (owner >= 0).sum()
    targets = out.box_targets.numpy().reshape(-1, 4)
    for n in np.flatnonzero(pos):
        np.testing.assert_allclose(targets[n], gts[owner[n]], rtol=1e-6)
    assert set(np.unique(out.cls_targets.numpy())) <= {0.0, 1.0}  # quality head: class target 1.0


def test_simota_centre_prior_is_respected():
    """Predictions far from the GT are ignored even when they overlap it best."""
    h = w = 8
    cx, cy = _cell_centres(h, w)
    pred = np.stack([cx, cy, np.full((h, w), 0.05), np.full((h, w), 0.05)], -1)
    gt = (0.2, 0.2, 0.1, 0.1)
    pred[7, 7] = gt  # a perfect box in the far corner cell
    pred = pred[None, None].astype(np.float32)
    sim = SimOTAAssigner(center_radius=1.0)
    out = _assign(sim, [gt], grid=(h, w), anchors=ANCHORS_1, pred_boxes=pred)
    positives = _positives(out)
    assert positives and (0, 7, 7) not in positives
    for _, j, i in positives:
        assert abs((i + 0.5) / w - gt[0]) < 1.0 / w and abs((j + 0.5) / h - gt[1]) < 1.0 / h
    # with a radius that covers the whole image the perfect far box is taken
    wide = _assign(SimOTAAssigner(center_radius=8.0), [gt], grid=(h, w), anchors=ANCHORS_1, pred_boxes=pred)
    assert (0, 7, 7) in _positives(wide)


def test_simota_dynamic_k_grows_with_iou_quality():
    h = w = 8
    cx, cy = _cell_centres(h, w)
    good, poor = (0.3, 0.3, 0.4, 0.4), (0.8, 0.8, 0.15, 0.15)
    pred = np.stack([cx, cy, np.full((h, w), 0.02), np.full((h, w), 0.02)], -1)
    near_good = (np.abs(cx - good[0]) < 0.2) & (np.abs(cy - good[1]) < 0.2)
    pred[near_good] = good  # many predictions that match the first GT almost exactly
    pred = pred[None, None].astype(np.float32)
    out = _assign(SimOTAAssigner(), [good, poor], grid=(h, w), anchors=ANCHORS_1, pred_boxes=pred)
    targets = out.box_targets.numpy()[0, 0]
    pos = out.pos_mask.numpy()[0, 0] > 0.5
    n_good = int((pos & np.isclose(targets[..., 0], good[0])).sum())
    n_poor = int((pos & np.isclose(targets[..., 0], poor[0])).sum())
    # 9 near-perfect predictions (IoU 0.999994, eps in the union) + a tiny 10th (IoU 0.0025):
    # floor(8.9974) = 8,
    # while the poor GT only reaches the minimum of 1.
    assert n_good == 8 and n_poor == 1


def test_simota_class_target_is_detached_iou_without_quality():
    h = w = 4
    cx, cy = _cell_centres(h, w)
    pred = np.stack([cx, cy, np.full((h, w), 0.3), np.full((h, w), 0.2)], -1)[None, None].astype(np.float32)
    gt = (0.4, 0.4, 0.3, 0.3)
    pred_t = tf.Variable(pred)
    with tf.GradientTape() as tape:
        out = _assign(SimOTAAssigner(), [gt], grid=(h, w), anchors=ANCHORS_1, pred_boxes=pred_t)
        total = tf.reduce_sum(out.cls_targets)
    assert tape.gradient(total, pred_t) is None
    pos = out.pos_mask.numpy()[0, 0] > 0.5
    cls = out.cls_targets.numpy()[0, 0, ..., 0]
    ious = []
    for j, i in np.argwhere(pos):
        p = pred[0, 0, j, i]
        ix = max(0.0, min(p[0] + p[2] / 2, gt[0] + gt[2] / 2) - max(p[0] - p[2] / 2, gt[0] - gt[2] / 2))
        iy = max(0.0, min(p[1] + p[3] / 2, gt[1] + gt[3] / 2) - max(p[1] - p[3] / 2, gt[1] - gt[3] / 2))
        inter = ix * iy
        ious.append(inter / (p[2] * p[3] + gt[2] * gt[3] - inter + 1e-6))
    np.testing.assert_allclose(cls[pos], ious, rtol=1e-5)
    assert (cls[~pos] == 0).all()


def test_simota_no_boxes():
    out = _assign(SimOTAAssigner(), [], grid=(4, 4), anchors=ANCHORS_1, max_boxes=3)
    assert out.pos_mask.numpy().sum() == 0 and out.cls_targets.numpy().sum() == 0


def test_assigners_registered_with_options():
    reg = build_registry()
    assert isinstance(reg.create("assigner", "legacy"), LegacyAssigner)
    sim = reg.create("assigner", "simota", {"topk": 5, "center_radius": 1.5})
    assert isinstance(sim, SimOTAAssigner) and sim.topk == 5 and sim.center_radius == 1.5 and sim.iou_weight == 3.0
