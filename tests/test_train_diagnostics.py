"""`utod train` writes the run-folder diagnostics; --weights, --patience, --device; the
F1-optimal confidence in the checkpoint and `--conf-thresh best` in predict."""

from __future__ import annotations

import csv
import io
import json
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from utod.cli import cli
from utod.data.synthetic import generate_shapes

DIAGNOSTIC_FILES = (
    "labels.png", "per_class_ap.csv", "PR_curve.png", "F1_curve.png", "P_curve.png", "R_curve.png",
    "confusion_matrix.png", "confusion_matrix_normalized.png", "confusion_matrix.csv", "val_batch0.jpg",
    "diagnostics.json",
)


@pytest.fixture(scope="module")
def shapes_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("shapes")
    generate_shapes(d, num_images=40, size=64, seed=3)
    return d


@pytest.fixture(scope="module")
def trained(shapes_dir, tmp_path_factory) -> tuple[Path, str]:
    """A 2-epoch run with 3 classes, width 8, 32 px (its log is returned too)."""
    import contextlib

    from utod.train.run import run_training

    run = tmp_path_factory.mktemp("diag") / "run"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        run_training({"image_dir": str(shapes_dir), "names": str(shapes_dir / "obj.names"), "epochs": 2,
                      "img_size": "32x32", "cnn_width": 8, "batch_size": 8, "lr": 0.003, "ckpt_out": str(run),
                      "cache_dir": str(run.parent / "cache")})
    return run, out.getvalue()


def test_every_diagnostic_file_is_written_and_not_empty(trained):
    run, log = trained
    for name in DIAGNOSTIC_FILES:
        assert (run / name).is_file() and (run / name).stat().st_size > 0, name
    assert not list(run.glob("*tmp*"))
    rows = list(csv.DictReader((run / "per_class_ap.csv").open()))
    assert [(r["epoch"], r["class"]) for r in rows] == [(e, c) for e in "12" for c in ("circle", "square",
                                                                                           "triangle")]
    assert "F1-optimal conf" in log and "per class" in log
    summary = json.loads((run / "diagnostics.json").read_text())
    assert set(summary["per_class"]) == {"circle", "square", "triangle"}
    matrix = list(csv.reader((run / "confusion_matrix.csv").open()))
    assert matrix[0][-1] == "background" and len(matrix) == 5


def test_the_checkpoint_stores_the_f1_optimal_confidence(trained):
    from utod.model.io import read_checkpoint_meta

    run, _ = trained
    meta = read_checkpoint_meta(run / "best.keras")
    diag = meta["extra"]["diagnostics"]
    assert {"f1_conf", "f1", "precision", "recall", "epoch"} <= set(diag)
    assert diag["epoch"] == meta["extra"]["epoch"]


def _with_f1_conf(src: Path, dst: Path, conf: float) -> Path:
    """A copy of checkpoint ``src`` whose stored F1-optimal confidence is ``conf``."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for item in zin.infolist():
            data = zin.read(item.filename)
            if item.filename == "utod.json":
                meta = json.loads(data)
                meta["extra"]["diagnostics"] = {**meta["extra"].get("diagnostics", {}), "f1_conf": conf}
                data = json.dumps(meta).encode()
            zout.writestr(item, data)
    return dst


def test_predict_conf_thresh_best_uses_the_stored_value(trained, shapes_dir, tmp_path):
    run, _ = trained
    ckpt = _with_f1_conf(run / "best.keras", tmp_path / "m.keras", 0.0123)
    image = sorted(shapes_dir.glob("*.png"))[0]
    res = CliRunner().invoke(cli, ["predict", str(ckpt), str(image), "--out", str(tmp_path / "p"),
                                   "--conf-thresh", "best", "--no-draw"])
    assert res.exit_code == 0, res.output
    assert "--conf-thresh best: 0.0123" in res.output
    dets = json.loads((tmp_path / "p" / "detections.json").read_text())
    scores = [d["score"] for rec in (dets if isinstance(dets, list) else dets["images"]) for d in rec["detections"]]
    assert all(s >= 0.0123 for s in scores)
    bad = _with_f1_conf(run / "best.keras", tmp_path / "none.keras", None)
    res = CliRunner().invoke(cli, ["predict", str(bad), str(image), "--out", str(tmp_path / "q"),
                                   "--conf-thresh", "best"])
    assert res.exit_code == 2 and "--conf-thresh best" in res.output and "Traceback" not in res.output


def test_weights_with_another_class_count_fine_tunes(trained, shapes_dir, tmp_path):
    run, _ = trained
    new = tmp_path / "ft"
    res = CliRunner().invoke(cli, ["train", "--image-dir", str(shapes_dir), "--classes", "0", "--epochs", "1",
                                   "--batch-size", "8", "--weights", str(run / "best.keras"),
                                   "--ckpt-out", str(new), "--cache-dir", str(tmp_path / "cache")])
    assert res.exit_code == 0, res.output
    assert "class count 3 -> 1: the head's class output re-initialised" in res.output
    cfg = json.loads((new / "model_config.json").read_text())
    assert cfg["num_classes"] == 1 and cfg["cnn_width"] == 8 and cfg["img_size"] == [32, 32]  # the checkpoint's


def test_patience_stops_when_map_stops_improving(shapes_dir, tmp_path):
    # --lr 1e-12 without BatchNorm: the float32 weights do not change (updates below their precision),
    # so mAP@0.5 is the same every evaluation
    from utod._keras import tf

    run = tmp_path / "p"
    # --device cpu as well (in this process only where TensorFlow has no GPU to hide any more)
    device = [] if tf.config.list_physical_devices("GPU") else ["--device", "cpu"]
    res = CliRunner().invoke(cli, ["train", "--image-dir", str(shapes_dir), "--epochs", "6", "--img-size", "32",
                                   "--cnn-width", "8", "--batch-size", "8", "--lr", "1e-12", "--patience", "1",
                                   "--ckpt-out", str(run), "--cache-dir", str(tmp_path / "cache"), *device])
    assert res.exit_code == 0, res.output
    assert not device or "Device: CPU" in res.output
    assert "Early stop (--patience 1)" in res.output
    rows = list(csv.DictReader((run / "results.csv").open()))
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert (run / "best.keras").is_file() and (run / "last.keras").is_file()


def test_device_that_does_not_exist_is_one_line_exit_2(shapes_dir, tmp_path):
    res = CliRunner().invoke(cli, ["train", "--image-dir", str(shapes_dir), "--device", "7",
                                   "--ckpt-out", str(tmp_path / "r")])
    assert res.exit_code == 2
    assert "--device 7: no GPU 7 on this machine" in res.output
    assert len(res.output.strip().splitlines()) == 1
    res = CliRunner().invoke(cli, ["train", "--image-dir", str(shapes_dir), "--device", "gpu0",
                                   "--ckpt-out", str(tmp_path / "r")])
    assert res.exit_code == 2 and "--device gpu0" in res.output


def test_eval_reports_the_f1_optimal_confidence(trained, shapes_dir):
    run, _ = trained
    res = CliRunner().invoke(cli, ["eval", str(run / "best.keras"), "--data", str(shapes_dir)])
    assert res.exit_code == 0, res.output
    assert "F1-optimal conf" in res.output
    res = CliRunner().invoke(cli, ["eval", str(run / "best.keras"), "--data", str(shapes_dir), "--json"])
    out = json.loads(res.output[res.output.index("{"):])
    assert {"f1_conf", "precision", "recall", "per_class"} <= set(out["diagnostics"])


def test_export_conf_thresh_best_bakes_in_the_stored_value(trained, tmp_path):
    run, _ = trained
    ckpt = _with_f1_conf(run / "best.keras", tmp_path / "m.keras", 0.0123)
    res = CliRunner().invoke(cli, ["export", str(ckpt), "--format", "onnx", "--conf-thresh", "best",
                                   "-o", str(tmp_path / "m.onnx"), "--skip-check"])
    assert res.exit_code == 0, res.output
    assert "--conf-thresh best: 0.0123" in res.output and "conf >= 0.0123" in res.output
