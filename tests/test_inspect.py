"""`utod inspect` on a checkpoint and on an ONNX export: anchors/wh_scale blocks, --json."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from utod.cli import cli


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    from utod.model.config import ModelConfig
    from utod.model.detector import build_model
    from utod.model.io import save_checkpoint

    cfg = ModelConfig(img_size=(64, 64), num_classes=2, class_names=["a", "b"], cnn_width=8, activation="relu",
                      head="improved", anchors=[[0.1, 0.2], [0.3, 0.4]])
    model = build_model(cfg)
    model.head.wh_scale.assign(np.array([[1.5, 1.0], [1.0, 0.5]], np.float32))
    path = save_checkpoint(tmp_path_factory.mktemp("insp") / "m.keras", model,
                           {"epoch": 12, "metrics": {"map50": 0.5, "map50_95": 0.25},
                            "plugins": {"head": {"name": "improved", "version": "0.1.0"}}})
    return model, path


def test_inspect_checkpoint_text(ckpt):
    _, path = ckpt
    res = CliRunner().invoke(cli, ["inspect", str(path)])
    assert res.exit_code == 0, res.output
    out = res.output
    assert "=== Anchors ===" in out and "=== wh_scale ===" in out
    assert "[0] 0.100000, 0.200000" in out and "[1] 1.000000, 0.500000" in out
    assert "epoch: 12" in out and "map50=0.5000" in out
    assert "resize backend: opencv_inter_nearest" in out and "head: improved" in out


def test_inspect_checkpoint_json(ckpt):
    model, path = ckpt
    res = CliRunner().invoke(cli, ["inspect", str(path), "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    assert np.allclose(doc["anchors"], [[0.1, 0.2], [0.3, 0.4]])
    assert np.allclose(doc["wh_scale"], [[1.5, 1.0], [1.0, 0.5]])
    assert np.allclose(doc["effective_anchors"], [[0.15, 0.2], [0.3, 0.2]])
    assert doc["class_names"] == ["a", "b"] and doc["img_size"] == [64, 64]
    assert doc["params_all"] == model.count_params()
    assert doc["epoch"] == 12 and doc["plugins"]["head"]["name"] == "improved"


def test_inspect_onnx(ckpt, tmp_path):
    from utod.export import export_onnx

    model, _ = ckpt
    path = tmp_path / "m.onnx"
    export_onnx(model, path, post=False)
    res = CliRunner().invoke(cli, ["inspect", str(path), "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    assert doc["inputs"] == [{"name": "images", "shape": [1, 64, 64, 3], "elem_type": "FLOAT"}]
    assert [o["name"] for o in doc["outputs"]] == sorted(["raw", "anchors", "wh_scale"]) or \
        {o["name"] for o in doc["outputs"]} == {"raw", "anchors", "wh_scale"}
    assert np.allclose(doc["wh_scale"], [[1.5, 1.0], [1.0, 0.5]])
    assert doc["metadata"]["postprocess"] == "raw"
    text = CliRunner().invoke(cli, ["inspect", str(path)]).output
    assert "=== Anchors ===" in text and "images: [1, 64, 64, 3]" in text


def test_inspect_missing_file(tmp_path):
    res = CliRunner().invoke(cli, ["inspect", str(tmp_path / "x.keras")])
    assert res.exit_code == 2 and "not found" in res.output and "Traceback" not in res.output


def test_inspect_post_onnx_states_baked_postprocessing(ckpt, tmp_path):
    from utod.export import export_onnx

    model, _ = ckpt
    path = tmp_path / "post.onnx"
    export_onnx(model, path, post=True, conf_thresh=0.25, nms_iou=0.45, max_detections=7)
    res = CliRunner().invoke(cli, ["inspect", str(path)])
    assert res.exit_code == 0, res.output
    assert "post-processing: baked in: conf >= 0.25, NMS IoU 0.45, at most 7 detections per image" in res.output
    assert "--conf-thresh 0.001" in res.output
    assert "producer: utod " in res.output
    doc = json.loads(CliRunner().invoke(cli, ["inspect", str(path), "--json"]).output)
    assert doc["postprocessing"].startswith("baked in: conf >= 0.25")
    assert doc["metadata"]["conf_thresh"] == "0.25"
