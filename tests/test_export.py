"""Export of a tiny model to ONNX (post / raw, NHWC / NCHW) and TFLite, parity with Keras,
metadata round trip, CLI errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from utod.cli import cli


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A width-8, 2-class IoU-aware model (seeded random weights, spread scores) saved as a checkpoint."""
    from utod._keras import keras
    from utod.model.config import ModelConfig
    from utod.model.detector import build_model
    from utod.model.io import save_checkpoint

    keras.utils.set_random_seed(11)  # random weights, but the same ones every run
    cfg = ModelConfig(img_size=(64, 64), num_classes=2, class_names=["cat", "dog"], class_ids=[3, 5],
                      cnn_width=8, activation="relu", use_batchnorm=True, head="improved",
                      head_options={"iou_aware": True}, conf_thresh=0.001, max_detections=20)
    model = build_model(cfg)
    # a fresh head predicts its prior (every score ~equal, ties decide top-K): spread the outputs
    rng = np.random.default_rng(0)
    for w in model.trainable_weights:
        if "wh_scale" not in w.name:
            w.assign(w.numpy() + rng.normal(0.0, 0.2, w.shape).astype(np.float32))
    folder = tmp_path_factory.mktemp("export")
    ckpt = save_checkpoint(folder / "tiny.keras", model, {"epoch": 3})
    return model, ckpt, folder


def test_onnx_post_nhwc_matches_keras_and_carries_metadata(tiny):
    from utod.export import check_parity, export_onnx, read_onnx_metadata, synthetic_images
    from utod.infer.modelinfo import ModelInfo, info_from_model
    from utod.infer.onnx_backend import OnnxDetector

    model, _, folder = tiny
    path = folder / "post.onnx"
    export_onnx(model, path, post=True)
    det = OnnxDetector(str(path))
    assert det.session.get_inputs()[0].name == "images"
    assert det.session.get_inputs()[0].shape == [1, 64, 64, 3]
    assert [o.name for o in det.session.get_outputs()] == ["detections", "num_detections"]
    images = synthetic_images(det.info, 3)
    report = check_parity(det, model, images)
    assert report.ok, report.format()
    assert report.total > 0 and report.matched == report.total, report.format()  # spread scores: no ties
    props = read_onnx_metadata(path)
    assert json.loads(props["class_names"]) == ["cat", "dog"]
    assert json.loads(props["class_ids"]) == [3, 5]
    assert props["img_size"] == "64x64" and props["input_layout"] == "nhwc"
    assert props["score_mode"] == "quality_cls" and props["has_quality"] == "true"
    assert props["resize_mode"] == "opencv_inter_nearest" and props["postprocess"] == "full"
    assert np.allclose(json.loads(props["anchors"]), model.config.anchors)
    assert "utod_version" in props and "detections" in props["output_layout"]
    # full round trip of the description
    assert ModelInfo.from_json(props["utod_info"]) == info_from_model(model, output="detections")


def test_onnx_raw_nchw_dynamic_batch(tiny):
    from utod.export import check_parity, export_onnx, synthetic_images
    from utod.infer.onnx_backend import OnnxDetector

    model, _, folder = tiny
    path = folder / "raw_nchw.onnx"
    export_onnx(model, path, post=False, nchw=True, batch=None)
    det = OnnxDetector(str(path))
    shape = det.session.get_inputs()[0].shape
    assert shape[1:] == [3, 64, 64] and not isinstance(shape[0], int)
    x = synthetic_images(det.info, 2)
    out = det.forward(x)
    a, d = model.num_anchors, 5 + 1 + 2
    assert out["raw"].shape == (2, a * d, 8, 8)  # NCHW raw
    assert np.allclose(out["anchors"], np.asarray(model.anchors))
    assert np.allclose(out["wh_scale"], np.asarray(model.wh_scale))
    report = check_parity(det, model, x)
    assert report.ok and report.max_abs_diff < 1e-4, report.format()


def test_tflite_float_raw_parity_and_metadata(tiny):
    from utod.export import check_parity, export_tflite, synthetic_images
    from utod.infer.tflite_backend import TfliteDetector

    model, _, folder = tiny
    path = folder / "m_raw.tflite"
    info = export_tflite(model, path, post=False)
    det = TfliteDetector(str(path))
    assert det.info == info and info.output == "raw"
    assert det.info.class_names == ["cat", "dog"]
    images = synthetic_images(info, 2)
    report = check_parity(det, model, images)
    assert report.ok and report.max_abs_diff < 1e-4, report.format()
    # raw TFLite is decoded outside with the Keras path's post-processing
    assert len(det.detect(images, conf_thresh=0.0)) == 2


@pytest.mark.slow
def test_tflite_float_post_parity(tiny):
    from utod.export import check_parity, export_tflite, synthetic_images
    from utod.infer.tflite_backend import TfliteDetector

    model, _, folder = tiny
    path = folder / "m.tflite"
    info = export_tflite(model, path, post=True)
    assert info.output == "detections"  # the model's NMS converts to builtin ops
    det = TfliteDetector(str(path))
    report = check_parity(det, model, synthetic_images(info, 2))
    assert report.ok, report.format()


@pytest.mark.slow
def test_tflite_int8_runs_close_to_float(tiny):
    from utod.export import check_parity, export_tflite, synthetic_images
    from utod.infer.tflite_backend import TfliteDetector

    model, _, folder = tiny
    path = folder / "m_int8.tflite"
    images = synthetic_images(model_info(model), 8)
    info = export_tflite(model, path, int8=True, calibration_images=images)
    det = TfliteDetector(str(path))
    assert det.input_detail["dtype"] == np.int8 and info.output == "raw"
    report = check_parity(det, model, images[:2], tolerance=float("inf"))
    assert report.max_abs_diff < 0.5, report.format()


def model_info(model):
    from utod.infer.modelinfo import info_from_model

    return info_from_model(model)


def test_cli_export_default_output_runs_parity_check(tiny):
    _, ckpt, folder = tiny
    res = CliRunner().invoke(cli, ["export", str(ckpt), "--no-post", "--check-images", "2"])
    assert res.exit_code == 0, res.output
    assert (folder / "tiny_raw.onnx").exists()
    assert "parity vs Keras on 2 images" in res.output and "-> OK" in res.output


def test_cli_export_user_errors(tmp_path, tiny):
    _, ckpt, _ = tiny
    runner = CliRunner()
    res = runner.invoke(cli, ["export", str(tmp_path / "missing.keras")])
    assert res.exit_code == 2 and "not exist" in res.output and "Traceback" not in res.output
    res = runner.invoke(cli, ["export", str(ckpt), "--int8"])
    assert res.exit_code == 2 and "--int8" in res.output
    bad = tmp_path / "bad.keras"
    bad.write_text("not a zip")
    res = runner.invoke(cli, ["export", str(bad)])
    assert res.exit_code == 2 and "not a utod checkpoint" in res.output
    res = runner.invoke(cli, ["export", str(ckpt), "--format", "tflite", "--int8"])
    assert res.exit_code == 2 and "--image-dir" in res.output


def test_match_detections_counts_boundary_misses():
    from utod.export import match_detections

    box = np.array([[0.5, 0.5, 0.2, 0.2]], np.float32)
    ref = [(np.concatenate([box, box + 0.3]), np.array([0.9, 0.1], np.float32), np.array([0, 1]))]
    same = [(ref[0][0].copy(), ref[0][1].copy(), ref[0][2].copy())]
    assert match_detections(ref, same)[:2] == (2, 2)
    moved = [(ref[0][0] + 0.01, ref[0][1], ref[0][2])]
    matched, total, _, boundary = match_detections(ref, moved)
    assert matched == 0 and total == 2 and boundary == 1  # only the lowest-scored one is a boundary miss


def test_cli_export_simplify_keeps_parity_and_metadata(tiny):
    from utod.export import export_onnx, onnx_node_count, read_onnx_metadata

    model, ckpt, folder = tiny
    plain, slim = folder / "plain.onnx", folder / "slim.onnx"
    export_onnx(model, plain, post=True)
    res = CliRunner().invoke(cli, ["export", str(ckpt), "--simplify", "-o", str(slim), "--check-images", "3"])
    assert res.exit_code == 0, res.output
    assert "simplified with onnxslim" in res.output
    assert "-> OK" in res.output and "matched 0/" not in res.output  # parity checked after simplification
    assert onnx_node_count(slim) <= onnx_node_count(plain)
    props = read_onnx_metadata(slim)
    assert json.loads(props["class_names"]) == ["cat", "dog"] and props["postprocess"] == "full"
    assert "onnxslim" in json.loads(props["utod_info"])["extra"]["simplified"]


def test_simplify_without_onnxslim_is_a_clear_error(tiny, monkeypatch, tmp_path):
    import sys

    _, ckpt, _ = tiny
    monkeypatch.setitem(sys.modules, "onnxslim", None)  # `import onnxslim` now raises ImportError
    out = tmp_path / "x.onnx"
    res = CliRunner().invoke(cli, ["export", str(ckpt), "--simplify", "-o", str(out)])
    assert res.exit_code == 2, res.output
    assert "--simplify needs onnxslim" in res.output and "pip install" in res.output
    assert "Traceback" not in res.output and not out.exists()
    res = CliRunner().invoke(cli, ["export", str(ckpt), "--simplify", "--format", "tflite"])
    assert res.exit_code == 2 and "--simplify applies to --format onnx" in res.output


def test_quantisation_report_lines_and_empty_items():
    from utod.errors import ConfigError
    from utod.export import QuantisationReport, compare_quantised

    def res(m, m50):
        return {"map": m, "map50": m50}

    rep = QuantisationReport(12, 0.001, res(0.40, 0.80), res(0.35, 0.78), "val split of d")
    lines = rep.format().splitlines()
    assert lines[0] == "mAP on 12 images (val split of d), decode conf >= 0.001:"
    assert "float (Keras)" in lines[1] and "0.4000" in lines[1] and "0.8000" in lines[1]
    assert "int8 (TFLite)" in lines[2] and "0.3500" in lines[2] and "0.7800" in lines[2]
    assert "-0.0500" in lines[3] and "-0.0200" in lines[3]
    assert rep.map50_drop == pytest.approx(0.02)
    # 2 points mAP@0.5 and 5 @0.5:0.95 lost: over the targets, so int8 points to --int16
    assert "loses 2.00 points mAP@0.5 and 5.00 points" in rep.advice() and "--int16" in rep.advice()
    int16 = QuantisationReport(12, 0.001, res(0.40, 0.80), res(0.35, 0.78), "val split of d", label="16x8")
    assert "16x8 (TFLite)" in int16.format() and "--int16" not in int16.advice()
    assert QuantisationReport(12, 0.001, res(0.40, 0.80), res(0.39, 0.795)).advice() is None  # 0.5 / 1.0 points
    assert QuantisationReport(12, 0.001, res(0.40, 0.80), res(0.41, 0.81)).advice() is None  # int8 better
    with pytest.raises(ConfigError, match="no labelled images"):
        compare_quantised(None, None, [])
