"""UHD recipe options end to end on tiny data (width 8-16, 32 px, one epoch): class-less head
with a camera-native input through train, eval, export and predict; a preset; distillation
from a wider teacher with the anchor-head terms."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from utod.cli import cli
from utod.data.synthetic import generate_shapes

TINY = ["--img-size", "32x32", "--batch-size", "8", "--epochs", "1", "--lr", "0.003"]


@pytest.fixture(scope="module")
def shapes_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("shapes")
    generate_shapes(d, num_images=24, size=48, seed=5)
    return d


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("UTOD_CACHE_DIR", str(tmp_path / "cache"))


def _invoke(*args: str):
    res = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return res


def test_classless_y_model_trains_evaluates_exports_and_predicts(shapes_dir, tmp_path):
    run = tmp_path / "run"
    res = _invoke("train", "--image-dir", str(shapes_dir), *TINY, "--cnn-width", "8", "--classes", "1",
                  "--disable-cls", "--use-improved-head", "--use-iou-aware-head", "--use-batchnorm",
                  "--utod-conv", "std", "--utod-sppf-scale", "conv", "--resize-mode", "opencv_inter_nearest_y",
                  "--auto-anchors", "--auto-anchors-alg", "sml_fixed", "--num-anchors", "4",
                  "--cls-loss-type", "ce", "--ckpt-out", str(run))
    assert res.exit_code == 0, res.output
    assert (run / "anchors.png").is_file()
    mc = json.loads((run / "model_config.json").read_text())
    assert (mc["disable_cls"], mc["in_channels"], mc["conv"], mc["sppf_scale"]) == (True, 1, "std", "conv")
    row = next(csv.DictReader((run / "results.csv").open()))
    assert float(row["train_cls"]) == 0.0  # no cls branch, no cls loss

    res = _invoke("eval", str(run / "last.keras"), "--image-dir", str(shapes_dir))
    assert res.exit_code == 0, res.output

    onnx_path = tmp_path / "m.onnx"
    res = _invoke("export", str(run / "last.keras"), "--format", "onnx", "--output", str(onnx_path),
                  "--conf-thresh", "0.001")
    assert res.exit_code == 0, res.output
    import onnx

    m = onnx.load(str(onnx_path))
    dims = [d.dim_value for d in m.graph.input[0].type.tensor_type.shape.dim]
    assert dims == [1, 32, 32, 1]
    meta = {p.key: p.value for p in m.metadata_props}
    assert (meta["disable_cls"], meta["head_classes"], meta["input_mode"], meta["input_channels"]) == \
        ("true", "0", "y", "1")
    assert json.loads(meta["utod_info"])["score_mode"] == "quality"  # folded for the class-less head

    image = next(shapes_dir.glob("*.png"))
    res = _invoke("predict", str(onnx_path), str(image), "--out", str(tmp_path / "pred"))
    assert res.exit_code == 0, res.output


def test_disable_cls_with_several_classes_is_one_line_error(shapes_dir, tmp_path):
    res = CliRunner().invoke(cli, ["train", "--image-dir", str(shapes_dir), *TINY, "--cnn-width", "8",
                                   "--disable-cls", "--ckpt-out", str(tmp_path / "x")])
    assert res.exit_code == 2
    assert "exactly one class" in res.output and "Traceback" not in res.output


def test_preset_student_distils_from_a_wider_teacher(shapes_dir, tmp_path):
    from utod.train.run import run_training

    base = {"image_dir": str(shapes_dir), "img_size": "32x32", "batch_size": 8, "epochs": 2, "num_anchors": 3,
            "val_split": 0.0}
    run_training({**base, "preset": "small-data", "cnn_width": 16, "ckpt_out": str(tmp_path / "teacher")})
    student = run_training({**base, "preset": "small-data", "cnn_width": 8, "ckpt_out": str(tmp_path / "student"),
                            "teacher_ckpt": str(tmp_path / "teacher" / "last.keras"), "distill_obj": 0.1,
                            "distill_quality": 0.1, "distill_box_l1": 0.05, "distill_kl": 0.5, "distill_feat": 0.5,
                            "distill_temperature": 1.5,
                            "distill_cosine": True, "feature_distill_weight": 0.5})
    cfg = yaml.safe_load((tmp_path / "student" / "config.yaml").read_text())
    assert (cfg["assigner"], cfg["ema_window"], cfg["cnn_width"], cfg["preset"]) == ("simota", 0.05, 8, "small-data")
    assert student.teacher.config.cnn_width == 16 and student.distill.adapter is not None
    rows = list(csv.DictReader((tmp_path / "student" / "results.csv").open()))
    d1, d2 = float(rows[0]["train_distill"]), float(rows[1]["train_distill"])
    assert d1 > 0 and d2 > 0  # ramp 0.5 in epoch 1 of 2, 1.0 in epoch 2
    assert float(student.distill.ramp.numpy()) == pytest.approx(1.0)
