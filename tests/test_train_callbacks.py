"""The trainer's callback protocol and its one evaluation path: hooks in order with their
data, early stop from a callback, no retracing of the eval step across validations, and a
run's validation mAP equal to `utod eval` of its checkpoints on the val split."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from utod.cli import cli
from utod.data.synthetic import generate_shapes
from utod.train.callbacks import Callback


class Recorder(Callback):
    """Records every hook; asks to stop at the end of epoch ``stop_after``."""

    def __init__(self, stop_after: int) -> None:
        self.stop_after = stop_after
        self.calls: list[tuple[str, object]] = []
        self.evals = []
        self.end = None

    def on_train_start(self, run, start):
        self.calls.append(("train_start", start.epoch))

    def on_epoch_start(self, run, epoch):
        self.calls.append(("epoch_start", epoch))

    def on_step_end(self, run, step):
        self.calls.append(("step", (step.epoch, step.step, step.global_step)))
        assert np.isfinite(step.losses["total"])

    def on_eval_end(self, run, result):
        self.calls.append(("eval", result.epoch))
        self.evals.append(result)

    def on_epoch_end(self, run, epoch):
        self.calls.append(("epoch_end", (epoch.epoch, epoch.is_best, epoch.eval is not None)))
        assert (run.run_dir / "results.csv").is_file()  # the built-ins ran first
        if epoch.epoch == self.stop_after:
            run.request_stop("enough for this test")

    def on_save(self, run, saved):
        self.calls.append(("save", saved.kind))

    def on_stop(self, run, end):
        self.calls.append(("stop", end.reason))
        self.end = end


@pytest.fixture(scope="module")
def stopped_run(tmp_path_factory):
    """A run asked for 5 epochs that a callback stops after epoch 3: (trainer, recorder, run, data)."""
    from utod.train.run import run_training

    root = tmp_path_factory.mktemp("cb")
    data = root / "shapes"
    generate_shapes(data, num_images=40, size=64, seed=3)
    rec = Recorder(stop_after=3)
    run = root / "run"
    import os

    os.environ["UTOD_CACHE_DIR"] = str(root / "cache")
    try:
        trainer = run_training({
            "image_dir": str(data), "epochs": 5, "img_size": "64x64", "cnn_width": 8, "batch_size": 8,
            "lr": 0.01, "no_aug": True, "use_ema": True, "ckpt_out": str(run), "log_interval": 1000,
            "save_interval": 0,
        }, callbacks=[rec])
    finally:
        os.environ.pop("UTOD_CACHE_DIR", None)
    return trainer, rec, run, data


def test_hooks_come_in_order_with_their_data(stopped_run):
    trainer, rec, run, _ = stopped_run
    names = [c[0] for c in rec.calls]
    assert names[0] == "train_start" and names[-1] == "stop"
    steps = [c[1] for c in rec.calls if c[0] == "step"]
    assert steps[0] == (1, 1, 1) and steps[-1] == (3, 4, 12) and len(steps) == 12
    per_epoch = [c for c in rec.calls if c[0] in ("epoch_start", "eval", "epoch_end", "save")]
    for ep in (1, 2, 3):
        start = per_epoch.index(("epoch_start", ep))
        assert [c[0] for c in per_epoch[start:start + 4]] == ["epoch_start", "eval", "epoch_end", "save"]
    assert rec.end.reason == "early_stop" and rec.end.epochs_done == 3
    assert "enough for this test" in rec.end.message
    rows = list(csv.DictReader((run / "results.csv").open()))
    assert [r["epoch"] for r in rows] == ["1", "2", "3"]

    result = rec.evals[-1]
    n = len((run / "val.txt").read_text().split())
    assert len(result.image_paths) == len(result.ground_truth) == len(result.detections) == n == 8
    for (gt_boxes, gt_labels), (boxes, scores, labels) in zip(result.ground_truth, result.detections):
        assert gt_boxes.shape == (len(gt_labels), 4) and boxes.shape == (len(scores), 4) == (len(labels), 4)
        assert np.all(np.diff(scores) <= 0) and np.all(scores >= 0.001)
    assert result.metrics["map50"] == pytest.approx(float(rows[-1]["map50"]), abs=1e-6)
    assert "per_class" in result.coco


def test_eval_step_traces_once_across_validations(stopped_run):
    trainer, rec, _, _ = stopped_run
    assert len(rec.evals) == 3
    assert trainer.steps.eval.experimental_get_tracing_count() == 1
    assert trainer.steps.train.experimental_get_tracing_count() == 1


def _eval_json(model: Path, data: Path) -> dict:
    res = CliRunner().invoke(cli, ["eval", str(model), "--image-dir", str(data), "--split", "val", "--json"])
    assert res.exit_code == 0, res.output
    return json.loads(res.output[res.output.index("{"):])


def test_validation_map_equals_utod_eval_on_the_val_split(stopped_run, monkeypatch, tmp_path):
    _, rec, run, data = stopped_run
    monkeypatch.setenv("UTOD_CACHE_DIR", str(tmp_path / "cache"))
    final = rec.evals[-1]
    got = _eval_json(run / "last.keras", data)
    assert got["num_images"] == len(final.image_paths)
    assert final.metrics["map50"] > 0  # a meaningful comparison
    for ours, theirs in (("map50", "map50"), ("map50_95", "map"), ("precision", "precision"), ("recall", "recall")):
        assert got[theirs] == pytest.approx(final.metrics[ours], abs=1e-6), ours
    best = max(rec.evals, key=lambda r: r.metrics["map50"])  # the first of equal maxima is the best
    assert _eval_json(run / "best.keras", data)["map50"] == pytest.approx(best.metrics["map50"], abs=1e-6)
