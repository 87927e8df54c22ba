"""utod.diagnostics: matching, curves, F1-optimal confidence and confusion matrix on hand-made
cases with known answers, AP@0.5 against pycocotools, and the files it writes."""

from __future__ import annotations

import csv
import json

import click
import numpy as np
import pytest

from utod.diagnostics import analyse, compute_curves, confusion_matrix, match_all, match_image, normalise_rows
from utod.diagnostics.report import (
    format_per_class,
    summary,
    threshold_advice,
    write_figures,
    write_per_class_csv,
)
from utod.diagnostics.threshold import CONF_THRESH, resolve_conf_thresh, stored_f1_conf
from utod.errors import ConfigError
from utod.metrics import evaluate_detections, precision_recall_at

B = np.array  # boxes: normalised cx, cy, w, h


def _gt(boxes, labels):
    return np.asarray(boxes, np.float64).reshape(-1, 4), np.asarray(labels, np.int64)


def _det(boxes, scores, labels):
    return np.asarray(boxes, np.float64).reshape(-1, 4), np.asarray(scores, np.float64), np.asarray(labels, np.int64)


G0, G1, FAR = [0.25, 0.25, 0.2, 0.2], [0.75, 0.75, 0.2, 0.2], [0.75, 0.25, 0.1, 0.1]

# one class: two objects, found at 0.9 and 0.6, and a false positive at 0.3
ONE_GT = [_gt([G0, G1], [0, 0])]
ONE_DET = [_det([G0, G1, FAR], [0.9, 0.6, 0.3], [0, 0, 0])]


def test_match_image_is_greedy_by_score_and_class_aware():
    shifted = [0.27, 0.25, 0.2, 0.2]  # IoU 0.82 with G0
    gt = _gt([G0, G1], [0, 1])
    # the lower-scored exact box comes second and finds G0 taken: a duplicate is a false positive
    assert match_image(gt, _det([G0, shifted], [0.5, 0.8], [0, 0])).tolist() == [-1, 0]
    # a box on G1 predicted as class 0 does not match G1 (class 1)
    assert match_image(gt, _det([G1], [0.9], [0])).tolist() == [-1]
    # below the IoU threshold: no match (IoU of a half-overlapping box is 1/3)
    assert match_image(gt, _det([[0.35, 0.25, 0.2, 0.2]], [0.9], [0])).tolist() == [-1]


def test_pr_f1_against_confidence_on_a_known_case():
    curves = compute_curves(match_all(ONE_GT, ONE_DET, 1))
    for conf, (p, r) in {0.95: (0, 0), 0.7: (1, 0.5), 0.5: (1, 1), 0.2: (2 / 3, 1)}.items():
        at = curves.at(conf)
        assert at["precision"][0] == pytest.approx(p)
        assert at["recall"][0] == pytest.approx(r)
        assert at["f1"][0] == pytest.approx(2 * p * r / (p + r) if p + r else 0)
    # F1 = 1 on (0.3, 0.6]: the middle of the grid plateau 0.301..0.600
    assert curves.best_conf == pytest.approx(0.45)
    assert curves.mean_f1.max() == pytest.approx(1.0)
    assert curves.ap50[0] == pytest.approx(1.0)  # recall 1 reached at precision 1


def test_f1_optimum_balances_precision_and_recall():
    # 4 objects; scores 0.9 TP, 0.8 TP, 0.7 FP, 0.6 TP, 0.5 FP, 0.4 FP
    xs = [0.125, 0.375, 0.625, 0.875]
    gts = [_gt([[x, 0.5, 0.2, 0.2] for x in xs], [0] * 4)]
    dets = [_det([[xs[0], .5, .2, .2], [xs[1], .5, .2, .2], [.5, .1, .05, .05], [xs[2], .5, .2, .2],
                  [.5, .9, .05, .05], [.1, .9, .05, .05]], [0.9, 0.8, 0.7, 0.6, 0.5, 0.4], [0] * 6)]
    c = compute_curves(match_all(gts, dets, 1))
    # F1 at 0.8: P 1, R .5 -> .667; at 0.6: P .75, R .75 -> .75 (best); at 0.4: P .5, R .75 -> .6
    assert c.at(0.6)["f1"][0] == pytest.approx(0.75)
    assert 0.5 < c.best_conf <= 0.6
    # COCO AP: precision 1 up to recall .5, then .75 up to .75, 0 beyond: (51*1 + 25*.75) / 101
    assert c.ap50[0] == pytest.approx((51 + 25 * 0.75) / 101)


def test_mean_over_classes_leaves_out_classes_without_ground_truth():
    gts = [_gt([G0], [0])]
    dets = [_det([G0, G1], [0.9, 0.8], [0, 2])]  # class 2 has no GT: its detection is counted, not averaged
    c = compute_curves(match_all(gts, dets, 3))
    assert c.valid.tolist() == [True, False, False]
    assert c.at(0.5)["mean_f1"] == pytest.approx(1.0)
    assert c.num_det.tolist() == [1, 0, 1]


def test_nothing_detected_gives_no_optimum_and_finite_numbers():
    a = analyse(ONE_GT, [_det([], [], [])], ["obj"], img_size=(64, 64), fallback_conf=0.15)
    s = summary(a, 0.15)
    assert a.best_conf is None and s["f1_conf"] is None and a.conf == 0.15
    json.dumps(s, allow_nan=False)
    assert threshold_advice(s) is None
    assert a.confusion.tolist() == [[0, 2], [0, 0]]  # both objects missed


def test_curves_agree_with_the_trainers_precision_recall_and_cocoeval_ap():
    rng = np.random.default_rng(3)
    gts, dets = [], []
    for _ in range(25):
        n = rng.integers(0, 4)
        gb = np.column_stack([rng.uniform(.2, .8, (n, 2)), rng.uniform(.1, .3, (n, 2))])
        gl = rng.integers(0, 3, n)
        db = np.concatenate([gb + rng.normal(0, 0.03, gb.shape), np.column_stack(
            [rng.uniform(.2, .8, (3, 2)), rng.uniform(.1, .3, (3, 2))])])
        dl = np.concatenate([np.where(rng.random(n) < .8, gl, rng.integers(0, 3, n)), rng.integers(0, 3, 3)])
        gts.append(_gt(gb, gl))
        dets.append(_det(db, rng.random(len(dl)), dl))
    size = (64, 96)
    c = compute_curves(match_all(gts, dets, 3, img_size=size))
    coco = evaluate_detections(gts, dets, 3, img_size=size, conf_thresh=0.5)
    for k in range(3):
        assert c.ap50[k] == pytest.approx(coco["per_class"][str(k)]["ap50"], abs=1e-12)
    # one class: P/R at a threshold equal utod.metrics.precision_recall_at
    one_gt = [(g[0], np.zeros_like(g[1])) for g in gts]
    one_dt = [(d[0], d[1], np.zeros_like(d[2])) for d in dets]
    c1 = compute_curves(match_all(one_gt, one_dt, 1, img_size=size))
    for t in (0.1, 0.37, 0.8):
        p, r, _, _ = precision_recall_at(one_gt, one_dt, size, t)
        assert c1.at(t)["precision"][0] == pytest.approx(p) and c1.at(t)["recall"][0] == pytest.approx(r)


def test_confusion_matrix_counts_confusions_misses_and_false_positives():
    gts = [_gt([G0, G1, FAR], [0, 1, 1])]
    # G0 found as class 0; G1 found as class 0 (confusion); FAR missed; a false positive of class 1;
    # one detection below the threshold is ignored
    dets = [_det([G0, G1, [0.5, 0.9, 0.1, 0.1], FAR], [0.9, 0.8, 0.7, 0.1], [0, 0, 1, 1])]
    m = confusion_matrix(gts, dets, 2, conf=0.5)
    #            pred 0  pred 1  missed
    assert m.tolist() == [[1, 0, 0],   # true 0
                          [1, 0, 1],   # true 1
                          [0, 1, 0]]   # background (false positives)
    assert normalise_rows(m).tolist() == [[1, 0, 0], [0.5, 0, 0.5], [0, 1, 0]]


def test_confusion_prefers_the_right_class_before_the_best_overlap():
    # a wrong-class box overlaps G0 best, a right-class box a little less: the diagonal gets it
    gts = [_gt([G0], [0])]
    dets = [_det([G0, [0.26, 0.25, 0.2, 0.2]], [0.9, 0.8], [1, 0])]
    m = confusion_matrix(gts, dets, 2, conf=0.5)
    assert m[0, 0] == 1 and m[2, 1] == 1 and m.sum() == 2


def test_threshold_advice_when_scores_sit_below_conf_thresh():
    dets = [_det([G0, G1], [0.08, 0.06], [0, 0])]
    s = summary(analyse(ONE_GT, dets, ["obj"], img_size=(64, 64), fallback_conf=0.15), 0.15)
    assert s["at_conf_thresh"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0}
    assert s["f1"] == pytest.approx(1.0) and 0.0 < s["f1_conf"] <= 0.06
    hint = threshold_advice(s)
    assert "highest score 0.080" in hint and f"--conf-thresh {s['f1_conf']:.3f}" in hint
    assert "obj" in format_per_class(s)


def test_files_are_written_and_per_class_rows_replace_a_redone_epoch(tmp_path):
    a = analyse(ONE_GT, ONE_DET, ["obj"], img_size=(64, 64), fallback_conf=0.15,
                coco_per_class={"obj": {"ap": 0.6, "ap50": 1.0, "num_gt": 2}})
    paths = write_figures(tmp_path, a)
    assert all(p.stat().st_size > 0 for p in paths)
    s = summary(a, 0.15)
    for epoch in (1, 2, 2):
        write_per_class_csv(tmp_path, epoch, s)
    rows = list(csv.DictReader((tmp_path / "per_class_ap.csv").open()))
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert float(rows[0]["ap50_95"]) == 0.6 and float(rows[0]["f1"]) == 1.0
    assert not list(tmp_path.glob("*tmp*"))


def test_conf_thresh_best_reads_the_checkpoint_metadata():
    assert CONF_THRESH.convert("best", None, None) == "best"
    assert CONF_THRESH.convert("F1", None, None) == "best"
    assert CONF_THRESH.convert("0.25", None, None) == 0.25
    with pytest.raises(click.BadParameter):
        CONF_THRESH.convert("1.5", None, None)
    meta = {"extra": {"diagnostics": {"f1_conf": 0.231}}}
    assert stored_f1_conf(meta) == 0.231
    assert resolve_conf_thresh("best", meta, "m.keras") == 0.231
    assert resolve_conf_thresh(0.4, meta, "m.keras") == 0.4
    with pytest.raises(ConfigError, match="m.keras"):
        resolve_conf_thresh("best", {"extra": {}}, "m.keras")
