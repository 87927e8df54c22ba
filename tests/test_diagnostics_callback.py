"""DiagnosticsCallback and EarlyStopping driven through the trainer's hooks with stand-in
run objects (no training): what each hook writes, logs, stores and requests."""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import cv2
import numpy as np

from utod.diagnostics.callback import CHECKPOINT_EXTRA, DiagnosticsCallback, contiguous_labels
from utod.train.early_stop import EarlyStopping


@dataclass
class FakeRun:
    run_dir: Path
    plan: Any
    cfg: Any
    eval_model: Any
    logs: list[str] = field(default_factory=list)
    extras: dict[str, Any] = field(default_factory=dict)
    stop_reason: str | None = None

    def log(self, msg: str) -> None:
        self.logs.append(msg)

    def request_stop(self, reason: str) -> None:
        self.stop_reason = self.stop_reason or reason


def _run(tmp_path: Path) -> FakeRun:
    paths = []
    for i in range(5):
        p = tmp_path / f"img{i}.png"
        cv2.imwrite(str(p), np.full((48, 48, 3), 40 * i, np.uint8))
        paths.append(str(p))
    items = [SimpleNamespace(image_path=p, boxes=np.array([[0.5, 0.5, 0.4, 0.4], [0.2, 0.2, 0.1, 0.1]]),
                             labels=np.array([7, 3])) for p in paths]
    plan = SimpleNamespace(train_items=items, class_ids=[3, 7], class_names=["a", "b"],
                           model_cfg=SimpleNamespace(img_size=(32, 32), resize_mode="opencv_inter_nearest"))
    model = SimpleNamespace(effective_anchors=lambda: np.array([[0.1, 0.1], [0.4, 0.4]], np.float32))
    return FakeRun(tmp_path / "run", plan, SimpleNamespace(conf_thresh=0.15), model)


def _result(epoch: int, paths: list[str], score: float, map50: float = 0.5):
    gt = (np.array([[0.5, 0.5, 0.4, 0.4]]), np.array([1]))
    det = (np.array([[0.5, 0.5, 0.4, 0.4]]), np.array([score]), np.array([1]))
    coco = {"per_class": {"a": {"ap": 0.0, "ap50": 0.0, "num_gt": 0}, "b": {"ap": 0.7, "ap50": 1.0, "num_gt": 5}}}
    return SimpleNamespace(epoch=epoch, metrics={"map50": map50, "map50_95": 0.4}, coco=coco, image_paths=paths,
                           ground_truth=[gt] * len(paths), detections=[det] * len(paths), img_size=(32, 32),
                           class_names=["a", "b"])


def test_contiguous_labels_maps_raw_ids_and_drops_others():
    items = [SimpleNamespace(boxes=np.zeros((3, 4)), labels=np.array([7, 5, 3]))]
    boxes, labels = contiguous_labels(items, [3, 7])
    assert labels.tolist() == [1, 0] and boxes.shape == (2, 4)


def test_hooks_write_the_files_store_the_threshold_and_advise(tmp_path):
    run = _run(tmp_path)
    run.run_dir.mkdir()
    paths = [it.image_path for it in run.plan.train_items]
    cb = DiagnosticsCallback(mosaics=2, mosaic_images=4, min_draw_interval_s=3600)
    cb.on_train_start(run, SimpleNamespace(epoch=0, step=0))
    assert (run.run_dir / "labels.png").stat().st_size > 0

    # epoch 1: the only detection scores 0.08 < --conf-thresh 0.15 -> P/R 0 there, a hint
    cb.on_eval_end(run, _result(1, paths, 0.08))
    stored = run.extras[CHECKPOINT_EXTRA]["diagnostics"]
    assert 0 < stored["f1_conf"] <= 0.08 and stored["f1"] == 1.0 and stored["epoch"] == 1
    assert any("hint:" in m and "--conf-thresh" in m for m in run.logs)
    cb.on_epoch_end(run, SimpleNamespace(epoch=1, is_best=True, eval=None, last_epoch=False))
    for name in ("PR_curve.png", "confusion_matrix.png", "val_batch0.jpg", "val_batch1.jpg", "diagnostics.json"):
        assert (run.run_dir / name).stat().st_size > 0, name
    assert not (run.run_dir / "val_batch2.jpg").exists()  # 5 images: 2 mosaics of up to 4
    first = (run.run_dir / "PR_curve.png").stat().st_mtime_ns

    # epoch 2: new best, but drawn only once training stops (interval not reached)
    cb.on_eval_end(run, _result(2, paths, 0.9))
    cb.on_epoch_end(run, SimpleNamespace(epoch=2, is_best=True, eval=None, last_epoch=True))
    assert (run.run_dir / "PR_curve.png").stat().st_mtime_ns == first
    cb.on_stop(run, SimpleNamespace(reason="finished"))
    assert (run.run_dir / "PR_curve.png").stat().st_mtime_ns != first
    assert '"epoch": 2' in (run.run_dir / "diagnostics.json").read_text()
    assert any("Best epoch 2 per class" in m for m in run.logs)
    rows = list(csv.DictReader((run.run_dir / "per_class_ap.csv").open()))
    assert [(r["epoch"], r["class"]) for r in rows] == [("1", "a"), ("1", "b"), ("2", "a"), ("2", "b")]
    assert float(rows[-1]["ap50_95"]) == 0.7


def test_early_stopping_counts_evaluations_and_rebuilds_from_results_csv(tmp_path):
    run = _run(tmp_path)
    run.run_dir.mkdir()
    es = EarlyStopping(2)
    es.on_train_start(run, SimpleNamespace(epoch=0))

    def end(ep, m, last=False):
        es.on_epoch_end(run, SimpleNamespace(epoch=ep, eval=SimpleNamespace(metrics={"map50": m}), last_epoch=last))

    end(1, 0.3)
    end(2, 0.5)
    es.on_epoch_end(run, SimpleNamespace(epoch=3, eval=None, last_epoch=False))  # not validated: not counted
    end(4, 0.5)
    assert run.stop_reason is None
    end(5, 0.4)
    assert run.stop_reason and "best 0.50000 at epoch 2" in run.stop_reason

    # resume after epoch 4: results.csv says one evaluation since the best; the next flat one stops
    (run.run_dir / "results.csv").write_text("epoch,map50\n1,0.3\n2,0.5\n3,\n4,0.5\n5,0.4\n")
    again = _run(tmp_path)
    again.run_dir = run.run_dir
    es2 = EarlyStopping(2)
    es2.on_train_start(again, SimpleNamespace(epoch=4))
    assert (es2.best, es2.best_epoch, es2.since_best) == (0.5, 2, 1)
