"""COCO metrics: exact values on hand-checkable cases, edge cases, P/R, the batch accumulator."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from utod.metrics import COCO_STAT_NAMES, Accumulator, evaluate_detections, format_report, precision_recall_at

GT1 = [0.25, 0.25, 0.2, 0.2]
GT2 = [0.7, 0.7, 0.2, 0.2]


def _gt(*boxes, labels=None):
    b = np.array(boxes, np.float32).reshape(-1, 4)
    return b, np.array(labels if labels is not None else [0] * len(b), np.int64)


def _dt(boxes, scores, labels=None):
    b = np.array(boxes, np.float32).reshape(-1, 4)
    return b, np.array(scores, np.float32), np.array(labels if labels is not None else [0] * len(b), np.int64)


def test_perfect_predictions_give_one():
    gt = [_gt(GT1, GT2, labels=[0, 1]), _gt([0.5, 0.5, 0.4, 0.3], labels=[1])]
    dt = [_dt([GT1, GT2], [0.9, 0.8], [0, 1]), _dt([[0.5, 0.5, 0.4, 0.3]], [0.95], [1])]
    res = evaluate_detections(gt, dt, 2, img_size=(64, 64), class_names=["cat", "dog"])
    assert res["map"] == pytest.approx(1.0)
    assert res["map50"] == pytest.approx(1.0)
    assert res["map75"] == pytest.approx(1.0)
    assert res["per_class"]["cat"] == {"ap": pytest.approx(1.0), "ap50": pytest.approx(1.0), "num_gt": 1}
    assert res["per_class"]["dog"]["num_gt"] == 2
    assert res["precision"] == 1.0 and res["recall"] == 1.0
    assert res["num_images"] == 2 and res["num_gt"] == 3
    json.dumps(res)  # JSON-serialisable
    assert "Average Precision" in res["summary"]


def test_spec_worked_check_uses_coco_101_point_interpolation():
    """docs/pipeline.md §4.2: TP (0.9), duplicate FP (0.8), FP with IoU 0.3 (0.7); 2 GTs.

    Recall 0.5 at precision 1, never higher. VOC all-point AP = 0.5. COCO samples the
    interpolated precision at 101 recall points 0.00..1.00: points 0.00..0.50 (51 of them)
    have precision 1, the rest 0, so AP = 51/101 = 0.50495. The matched box has IoU 1 and the
    other never reaches 0.5, so every IoU threshold gives the same and mAP@.5:.95 = 51/101.
    """
    # GT2 is 12.8 px wide at 64x64; a box shifted so that IoU is exactly 0.3 with it:
    # same height, x-overlap o with 2*w - o union: o / (2w - o) = 0.3 -> o = 0.6w/1.3.
    w = 0.2
    overlap = 0.6 * w / 1.3
    shifted = [GT2[0] + (w - overlap), GT2[1], w, w]
    gt = [_gt(GT1), _gt(GT2)]
    dt = [_dt([GT1, GT1], [0.9, 0.8]), _dt([shifted], [0.7])]
    res = evaluate_detections(gt, dt, 1, img_size=(64, 64))
    assert res["map50"] == pytest.approx(51 / 101, abs=1e-9)
    assert res["map"] == pytest.approx(51 / 101, abs=1e-9)
    assert res["per_class"]["0"]["ap50"] == pytest.approx(51 / 101, abs=1e-9)
    # P/R at 0.15: 1 TP of 3 kept detections, 1 of 2 GT found.
    assert res["precision"] == pytest.approx(1 / 3)
    assert res["recall"] == pytest.approx(0.5)


def test_localisation_quality_changes_map_but_not_map50():
    # Box shifted by 2 px on a 20 px box: IoU = 18*20 / (22*20) = 0.818 -> TP for thresholds
    # 0.50..0.80 (7 of 10), FP above.
    gt = [_gt([0.5, 0.5, 20 / 64, 20 / 64])]
    dt = [_dt([[0.5 + 2 / 64, 0.5, 20 / 64, 20 / 64]], [0.9])]
    res = evaluate_detections(gt, dt, 1, img_size=(64, 64))
    assert res["map50"] == pytest.approx(1.0)
    assert res["map"] == pytest.approx(0.7)


def test_no_ground_truth_gives_zero_not_nan():
    gt = [_gt(), _gt()]
    dt = [_dt([GT1], [0.9]), _dt([], [])]
    res = evaluate_detections(gt, dt, 1)
    assert res["map"] == 0.0 and res["map50"] == 0.0 and not math.isnan(res["map"])
    assert res["precision"] == 0.0 and res["recall"] == 0.0
    assert res["num_gt"] == 0 and res["num_images"] == 2


def test_no_detections_gives_zero():
    res = evaluate_detections([_gt(GT1)], [_dt([], [])], 1)
    assert res["map"] == 0.0 and res["map50"] == 0.0
    assert res["recall"] == 0.0 and res["precision"] == 0.0
    assert res["num_detections"] == 0


def test_empty_input_lists():
    res = evaluate_detections([], [], 3)
    assert res["map"] == 0.0 and res["num_images"] == 0


def test_images_without_gt_count_as_false_positives():
    gt = [_gt(GT1), _gt()]
    # The FP on the empty image outranks the TP: precision 0.5 at recall 1 -> AP 0.5.
    dt = [_dt([GT1], [0.5]), _dt([GT2], [0.9])]
    res = evaluate_detections(gt, dt, 1)
    assert res["map50"] == pytest.approx(0.5)
    only_matched = evaluate_detections(gt[:1], dt[:1], 1)
    assert only_matched["map50"] == pytest.approx(1.0)


def test_class_without_gt_is_left_out_of_the_mean():
    gt = [_gt(GT1, labels=[0])]
    dt = [_dt([GT1, GT2], [0.9, 0.8], [0, 1])]
    res = evaluate_detections(gt, dt, 2)
    assert res["map50"] == pytest.approx(1.0)  # COCO averages over classes that have GT
    assert res["per_class"]["1"] == {"ap": 0.0, "ap50": 0.0, "num_gt": 0}


def test_wrong_class_is_not_a_match():
    res = evaluate_detections([_gt(GT1, labels=[0])], [_dt([GT1], [0.9], [1])], 2)
    assert res["map"] == 0.0 and res["recall"] == 0.0 and res["precision"] == 0.0


def test_precision_recall_threshold_and_greedy_matching():
    gt = [_gt(GT1, GT2)]
    dt = [_dt([GT1, GT1, GT2], [0.9, 0.8, 0.1])]
    p, r, tp, kept = precision_recall_at(gt, dt, (64, 64), conf_thresh=0.5)
    assert (tp, kept) == (1, 2) and p == pytest.approx(0.5) and r == pytest.approx(0.5)
    p, r, tp, kept = precision_recall_at(gt, dt, (64, 64), conf_thresh=0.05)
    assert (tp, kept) == (2, 3) and p == pytest.approx(2 / 3) and r == pytest.approx(1.0)


def test_mismatched_lengths_and_bad_labels_raise():
    with pytest.raises(ValueError, match="detection entries"):
        evaluate_detections([_gt(GT1)], [], 1)
    with pytest.raises(ValueError, match="outside"):
        evaluate_detections([_gt(GT1, labels=[3])], [_dt([], [])], 2)
    with pytest.raises(ValueError, match="class names"):
        evaluate_detections([], [], 2, class_names=["a"])


def test_accumulator_matches_direct_evaluation_and_skips_padding():
    acc = Accumulator(2, img_size=(64, 64), class_names=["a", "b"])
    gt_boxes = np.zeros((3, 4, 4), np.float32)
    gt_labels = -np.ones((3, 4), np.int32)
    gt_boxes[0, :2] = [GT1, GT2]
    gt_labels[0, :2] = [0, 1]
    gt_boxes[1, 0] = GT2
    gt_labels[1, 0] = 1
    gt_mask = gt_labels >= 0
    dets = np.zeros((3, 5, 6), np.float32)
    dets[0, 0] = [0.9, 0, *GT1]
    dets[0, 1] = [0.8, 1, *GT2]
    dets[1, 0] = [0.7, 1, *GT1]  # wrong place -> FP
    dets[2, 0] = [0.99, 0, *GT1]  # padded image: must be ignored
    num_valid = np.array([2, 1, 1])
    acc.add(gt_boxes, gt_labels, gt_mask, dets, num_valid, image_index=np.array([0, 1, -1]))
    assert len(acc) == 2
    res = acc.compute()
    direct = evaluate_detections(
        [_gt(GT1, GT2, labels=[0, 1]), _gt(GT2, labels=[1])],
        [_dt([GT1, GT2], [0.9, 0.8], [0, 1]), _dt([GT1], [0.7], [1])],
        2, class_names=["a", "b"],
    )
    assert res["map"] == pytest.approx(direct["map"])
    assert res["per_class"] == direct["per_class"]
    assert res["num_gt"] == 3
    assert "mAP@0.5:0.95" in format_report(res)
    acc.reset()
    assert len(acc) == 0


def test_all_area_range_only_gives_the_same_numbers():
    """Training validation scores COCO's 'all' area range only: every number it keeps equals
    the full evaluation's."""
    rng = np.random.default_rng(7)
    gts, dets = [], []
    for _ in range(30):
        n = int(rng.integers(0, 5))
        boxes = np.column_stack([rng.uniform(0.2, 0.8, (n, 2)), rng.uniform(0.05, 0.5, (n, 2))])
        labels = rng.integers(0, 3, n)
        gts.append((boxes, labels))
        k = int(rng.integers(0, 12))
        pick = rng.integers(0, max(n, 1), k)
        d = boxes[pick] + rng.normal(0, 0.03, (k, 4)) if n else rng.uniform(0.1, 0.5, (k, 4))
        dl = np.where(rng.random(k) < 0.8, labels[pick] if n else 0, rng.integers(0, 3, k))
        dets.append((np.abs(d), rng.uniform(0.001, 1, k), dl))
    full = evaluate_detections(gts, dets, 3, img_size=(64, 64))
    fast = evaluate_detections(gts, dets, 3, img_size=(64, 64), size_ranges=False)
    assert full["map"] > 0.05
    for key in ("map", "map50", "map75", "ar1", "ar10", "ar100", "precision", "recall", "num_detections"):
        assert fast[key] == pytest.approx(full[key], abs=1e-12), key
    assert fast["per_class"] == full["per_class"]
    assert "map_small" not in fast and "map_small" in full


def test_result_index_built_directly_equals_pycocotools_loadres():
    """The detections become COCO result records without ``COCO.loadRes`` (speed): COCOeval
    over them gives exactly what pycocotools gives over loadRes of the plain result list,
    unknown classes dropped."""
    import contextlib
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    from utod.metrics import _coco_inputs, cxcywh_to_pixel_xywh

    rng = np.random.default_rng(11)
    gts, dets = [], []
    for _ in range(25):
        n = int(rng.integers(1, 5))
        boxes = np.column_stack([rng.uniform(0.2, 0.8, (n, 2)), rng.uniform(0.05, 0.5, (n, 2))])
        gts.append((boxes, rng.integers(0, 2, n)))
        k = int(rng.integers(0, 15))
        d = np.abs(boxes[rng.integers(0, n, k)] + rng.normal(0, 0.015, (k, 4)))
        dets.append((d, rng.uniform(0.001, 1, k), rng.integers(-1, 3, k)))  # -1 and 2: unknown classes
    mine = evaluate_detections(gts, dets, 2, img_size=(48, 64), size_ranges=True)

    dataset, _ = _coco_inputs(gts, dets, 2, (48, 64))
    plain = [{"image_id": i, "category_id": int(c) + 1, "bbox": b.tolist(), "score": float(s)}
             for i, (bx, sc, lb) in enumerate(dets, start=1)
             for b, s, c in zip(cxcywh_to_pixel_xywh(bx, (48, 64)), sc, lb) if 0 <= c < 2]
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        gt = COCO()
        gt.dataset = dataset
        gt.createIndex()
        ev = COCOeval(gt, gt.loadRes(plain), iouType="bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    assert mine["num_detections"] == len(plain)
    for name, ref in zip(COCO_STAT_NAMES, ev.stats):  # all 12, size ranges included
        assert mine[name] == pytest.approx(max(float(ref), 0.0), abs=1e-12), name
    assert mine["summary"].splitlines() == [ln for ln in printed.getvalue().splitlines() if ln.startswith(" Average")]
    assert mine["map"] > 0.05


def _random_coco_case(seed: int):
    """Random ground truth and detections: empty images, images without detections, classes
    without ground truth, tied scores (rounded to 0.05; every other case 5 levels, with more
    than maxDets=100 detections in an image, so ties straddle the cut), zero-width boxes,
    near and far boxes."""
    rng = np.random.default_rng(seed)
    crowded = seed % 2 == 1
    gts, dets = [], []
    for _ in range(int(rng.integers(5, 20 if crowded else 40))):
        n = int(rng.integers(0, 5))
        boxes = np.column_stack([rng.uniform(0.1, 0.9, (n, 2)), rng.uniform(0.01, 0.5, (n, 2))])
        if n and crowded:
            boxes[0, 2] = 0.0
        gts.append((boxes, rng.integers(0, 3, n)))
        k = int(rng.integers(80, 160) if crowded else rng.integers(0, 30))
        src = boxes if n else np.array([[0.5, 0.5, 0.2, 0.2]])
        d = np.abs(src[rng.integers(0, len(src), k)] + rng.normal(0, 0.05, (k, 4))) + [0, 0, 0.005, 0.005]
        if crowded:
            d[::7, 2] = 0.0
        levels = 4 if crowded else 20
        dets.append((d, np.round(rng.uniform(0.0, 1.0, k) * levels) / levels + 1e-3, rng.integers(0, 4, k)))
    return gts, dets


@pytest.mark.parametrize("size_ranges", [False, True])
def test_faster_coco_eval_equals_pycocotools(size_ranges):
    """The COCOeval that runs (faster-coco-eval) against pycocotools' own, on 40 random cases
    (see ``_random_coco_case``):
    the accumulated precision [T, R, K, A, M] and recall [T, K, A, M] arrays agree to 1e-12."""
    from utod.metrics import _coco_inputs, coco_evaluator

    compared = 0
    for seed in range(40):
        gts, dets = _random_coco_case(seed)
        dataset, results = _coco_inputs(gts, dets, 4, (96, 128))
        if not results or not dataset["annotations"]:
            continue
        ref = coco_evaluator(dataset, results, 100, size_ranges, implementation="pycocotools")
        got = coco_evaluator(dataset, results, 100, size_ranges)
        for key in ("precision", "recall"):
            assert got.eval[key].shape == ref.eval[key].shape
            np.testing.assert_allclose(got.eval[key], ref.eval[key], rtol=0, atol=1e-12, err_msg=f"{seed} {key}")
        compared += 1
    assert compared >= 30


def test_scoring_pauses_the_garbage_collector_and_restores_it():
    import gc

    gts = [(np.array([[0.5, 0.5, 0.2, 0.2]]), np.array([0]))]
    dets = [(np.array([[0.5, 0.5, 0.2, 0.2]]), np.array([0.9]), np.array([0]))]
    try:
        for enabled in (True, False):
            (gc.enable if enabled else gc.disable)()
            assert evaluate_detections(gts, dets, 1, img_size=(32, 32))["map50"] == pytest.approx(1.0)
            assert gc.isenabled() is enabled
            with pytest.raises(ValueError):  # restored on errors too
                evaluate_detections(gts, [], 1)
            assert gc.isenabled() is enabled
    finally:
        gc.enable()
    from utod.metrics import paused_gc

    with paused_gc():
        assert not gc.isenabled()
    assert gc.isenabled()
