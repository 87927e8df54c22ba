"""utod.sdk.boxes (TF) and utod.sdk.boxes_np (numpy): the one home of box maths, against the
hand-checked values of docs/loss.md §12.1 and §12.3."""

from __future__ import annotations

import numpy as np
import pytest

from utod.sdk import boxes_np

P = (0.50, 0.50, 0.20, 0.30)
T = (0.55, 0.45, 0.25, 0.20)
IOU = 0.46666604444527393
GIOU = 0.37575706372888684
CIOU = 0.43389045819124544
DIOU = IOU - 0.005 / 0.165625
RTOL = 1e-5


def test_iou_family_on_the_reference_pair():
    from utod._keras import tf
    from utod.sdk import boxes

    p, t = tf.constant([P], tf.float64), tf.constant([T], tf.float64)
    assert float(boxes.iou(p, t)[0]) == pytest.approx(IOU, rel=1e-12)
    assert float(boxes.giou(p, t)[0]) == pytest.approx(GIOU, rel=1e-12)
    assert float(boxes.ciou(p, t)[0]) == pytest.approx(CIOU, rel=1e-12)
    assert float(boxes.diou(p, t)[0]) == pytest.approx(DIOU, rel=1e-9)
    assert float(boxes.iou(p, t, eps=1e-6)[0]) == pytest.approx(0.4666604445274062, rel=1e-12)  # SimOTA's eps
    g = boxes.box_geometry(p, t)
    assert float(g.inter[0]) == pytest.approx(0.035) and float(g.centre_dist2[0]) == pytest.approx(0.005)
    assert (float(g.enclose_w[0]), float(g.enclose_h[0])) == pytest.approx((0.275, 0.300))


def test_formats_conversions_and_pairwise():
    from utod._keras import tf
    from utod.sdk import boxes

    rng = np.random.default_rng(0)
    a = tf.constant(np.concatenate([rng.uniform(0.2, 0.8, (5, 2)), rng.uniform(0.05, 0.4, (5, 2))], 1), tf.float32)
    b = tf.constant(np.concatenate([rng.uniform(0.2, 0.8, (3, 2)), rng.uniform(0.05, 0.4, (3, 2))], 1), tf.float32)
    xa, xb = boxes.cxcywh_to_xyxy(a), boxes.convert(b, "cxcywh", "xyxy")
    np.testing.assert_allclose(boxes.xyxy_to_cxcywh(xa).numpy(), a.numpy(), atol=1e-6)
    np.testing.assert_allclose(boxes.iou(xa, xb[:1], fmt="xyxy").numpy(), boxes.iou(a, b[:1]).numpy(), atol=1e-6)
    grid = boxes.pairwise_iou(a, b).numpy()
    assert grid.shape == (5, 3)
    np.testing.assert_allclose(grid[:, 1], boxes.iou(a, b[1:2]).numpy(), atol=1e-7)
    batched = boxes.pairwise_iou(tf.stack([a, a]), tf.stack([b, b])).numpy()
    assert batched.shape == (2, 5, 3)
    # numpy twin (COCO semantics, no eps) agrees in every format
    an, bn = a.numpy().astype(np.float64), b.numpy().astype(np.float64)
    ref = boxes_np.pairwise_iou(an, bn, "cxcywh")
    np.testing.assert_allclose(ref, grid, atol=1e-5)
    xywh = lambda x: np.concatenate([x[:, :2] - x[:, 2:] / 2, x[:, 2:]], 1)  # noqa: E731
    np.testing.assert_allclose(boxes_np.pairwise_iou(xywh(an), xywh(bn), "xywh"), ref, atol=1e-12)
    np.testing.assert_allclose(boxes_np.pairwise_iou(boxes_np.cxcywh_to_xyxy(an), boxes_np.cxcywh_to_xyxy(bn),
                                                     "xyxy"), ref, atol=1e-6)
    assert boxes_np.pairwise_iou(np.zeros((1, 4)), np.zeros((2, 4))).tolist() == [[0.0, 0.0]]
    with pytest.raises(ValueError, match="unknown box format"):
        boxes.iou(a, b[:1], fmt="yxyx")


def test_shape_iou_matches_the_legacy_anchor_example():
    from utod._keras import tf
    from utod.sdk import boxes

    anchors = tf.constant([[0.043750, 0.094437], [0.141667, 0.394426], [0.193750, 0.540625], [0.254172, 0.636096],
                           [0.320819, 0.708333], [0.414578, 0.762981], [0.531250, 0.833326], [0.739375, 0.916667]])
    got = boxes.shape_iou(anchors, tf.constant([[0.15, 0.40]])).numpy()
    want = [0.0688602, 0.9312843, 0.5728132, 0.3711083, 0.2640301, 0.1896842, 0.1355306, 0.0885268]
    np.testing.assert_allclose(got, want, rtol=RTOL)


def test_cell_centres():
    from utod.sdk import boxes

    cx, cy = boxes.cell_centres(2, 4)
    np.testing.assert_allclose(cx.numpy(), [[0.125, 0.375, 0.625, 0.875]] * 2)
    np.testing.assert_allclose(cy.numpy(), [[0.25] * 4, [0.75] * 4])


def test_ciou_alpha_is_constant_in_backward():
    from utod._keras import tf
    from utod.sdk import boxes

    p = tf.Variable([P], dtype=tf.float64)
    with tf.GradientTape(persistent=True) as tape:
        c = boxes.ciou(p, tf.constant([T], tf.float64))
        d = boxes.diou(p, tf.constant([T], tf.float64))
    grad = tape.gradient(c, p).numpy()
    assert np.isfinite(grad).all() and not np.allclose(grad, tape.gradient(d, p).numpy())


def test_importing_the_sdk_does_not_import_tensorflow():
    import subprocess
    import sys

    code = ("import sys, utod.sdk, utod.sdk.boxes_np; from utod.sdk import Sample, Assigner, PROTOCOL_FOR_KIND; "
            "assert 'tensorflow' not in sys.modules, 'utod.sdk imported TensorFlow'")
    subprocess.run([sys.executable, "-c", code], check=True)
