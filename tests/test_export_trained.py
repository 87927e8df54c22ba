"""Export / eval on a model that has actually learned something.

A module fixture trains a width-8 model (no BN, no augmentation) for a few epochs on 64
generated 64x64 images of red and blue squares (2 classes, 1-2 squares per image), so the
checkpoint's mAP@0.5 is clearly above zero. ``utod eval`` must then give the same numbers on
the checkpoint and on its exports (raw ONNX, post-processed ONNX with ``--conf-thresh 0.001``,
TFLite float); a default post-processed export states the threshold it has baked in and
scores what it can output; int8 TFLite reports its mAP next to the float one.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from utod.cli import cli

CLASS_NAMES = ("red", "blue")
BAKED_CONF = 0.15  # the checkpoint's conf_thresh (training default)


def write_squares(folder: Path, count: int, seed: int = 3) -> None:
    """``count`` 64x64 PNGs with 1-2 non-overlapping squares (side 16-28 px) on dark noise;
    class 0 is reddish, class 1 bluish. YOLO labels beside them, ``obj.names``."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(count):
        img = (rng.random((64, 64, 3)) * 50).astype(np.uint8)
        lines, taken = [], np.zeros((64, 64), bool)
        for _ in range(int(rng.integers(1, 3))):
            for _try in range(20):
                s = int(rng.integers(16, 29))
                x0, y0 = int(rng.integers(0, 64 - s)), int(rng.integers(0, 64 - s))
                if not taken[max(y0 - 2, 0):y0 + s + 2, max(x0 - 2, 0):x0 + s + 2].any():
                    break
            else:
                continue
            taken[y0:y0 + s, x0:x0 + s] = True
            cls = int(rng.integers(0, 2))
            strong, weak = int(rng.integers(170, 256)), int(rng.integers(0, 90))
            img[y0:y0 + s, x0:x0 + s] = (weak, weak // 2, strong) if cls == 0 else (strong, weak // 2, weak)  # BGR
            lines.append(f"{cls} {(x0 + s / 2) / 64:.6f} {(y0 + s / 2) / 64:.6f} {s / 64:.6f} {s / 64:.6f}\n")
        cv2.imwrite(str(folder / f"sq{i:03d}.png"), img)
        (folder / f"sq{i:03d}.txt").write_text("".join(lines))
    (folder / "obj.names").write_text("".join(f"{n}\n" for n in CLASS_NAMES))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(checkpoint path, data folder, work folder) of a briefly trained 2-class model."""
    from utod.train.run import run_training

    root = tmp_path_factory.mktemp("trained")
    data = root / "data"
    write_squares(data, 64)
    epochs = 40
    run_training({
        "image_dir": str(data), "names": str(data / "obj.names"), "img_size": "64x64", "cnn_width": 8,
        "epochs": epochs, "batch_size": 8, "lr": 0.01, "warmup_epochs": 0.5, "no_aug": True,
        "loss_weight_obj": 8.0, "anchors": "0.3,0.3;0.42,0.42", "val_split": 0.25, "eval_interval": epochs,
        "ckpt_out": str(root / "run"), "log_interval": 1000,
    })
    ckpt = sorted((root / "run").glob("best_utod_*.keras"))[-1]
    return ckpt, data, root


def _eval(model: Path, data: Path, *extra: str) -> dict:
    res = CliRunner().invoke(cli, ["eval", str(model), "--image-dir", str(data), "--json", *extra])
    assert res.exit_code == 0, res.output
    return json.loads(res.output[res.output.index("{"):])


def _export(ckpt: Path, out: Path, *extra: str) -> str:
    res = CliRunner().invoke(cli, ["export", str(ckpt), "-o", str(out), *extra])
    assert res.exit_code == 0, res.output
    assert "-> OK" in res.output, res.output
    return res.output


def _assert_same_numbers(ref: dict, got: dict, what: str) -> None:
    for key in ("map", "map50", "map75"):
        assert got[key] == pytest.approx(ref[key], abs=1e-3), f"{what}: {key}"
    for name in CLASS_NAMES:
        assert got["per_class"][name]["ap"] == pytest.approx(ref["per_class"][name]["ap"], abs=1e-3), what
        assert got["per_class"][name]["ap50"] == pytest.approx(ref["per_class"][name]["ap50"], abs=1e-3), what


def test_eval_exports_equal_trained_checkpoint(trained):
    ckpt, data, root = trained
    keras_res = _eval(ckpt, data)
    assert keras_res["num_images"] == 64 and keras_res["backend"] == "keras"
    assert keras_res["map50"] > 0.3, keras_res["summary"]  # the model has learned the squares
    assert min(row["ap50"] for row in keras_res["per_class"].values()) > 0.1
    exports = {
        "raw.onnx": ("--no-post",),
        "post.onnx": ("--conf-thresh", "0.001"),
        "raw.tflite": ("--format", "tflite", "--no-post", "--dynamic-batch"),
    }
    for name, flags in exports.items():
        path = root / name
        out = _export(ckpt, path, *flags, "--image-dir", str(data), "--check-images", "8")
        if name.endswith(".tflite"):  # TFLite has no dynamic batch: said, and batch 1 written
            assert "fixed batch; writing batch 1" in out and "batch 1)" in out, out
        res = _eval(path, data)
        _assert_same_numbers(keras_res, res, name)
        assert res["num_detections"] == pytest.approx(keras_res["num_detections"], rel=0.01), name


def test_post_export_states_baked_threshold(trained):
    """A default export bakes in the checkpoint's conf threshold: eval says so, and its mAP is
    the checkpoint's mAP at that threshold (what the file can output), not at 0.001."""
    ckpt, data, root = trained
    path = root / "post_default.onnx"
    out = _export(ckpt, path)
    assert f"conf >= {BAKED_CONF:g}" in out and "--conf-thresh 0.001" in out  # export warns
    res = CliRunner().invoke(cli, ["eval", str(path), "--image-dir", str(data)])
    assert res.exit_code == 0, res.output
    assert f"built-in post-processing: conf >= {BAKED_CONF:g}" in res.output
    assert "--conf-thresh 0.001" in res.output
    as_json = _eval(path, data)
    assert as_json["baked_conf_thresh"] == pytest.approx(BAKED_CONF)
    assert as_json["effective_conf_thresh"] == pytest.approx(BAKED_CONF)
    at_baked = _eval(ckpt, data, "--conf-thresh", str(BAKED_CONF))
    _assert_same_numbers(at_baked, as_json, "post export at its baked threshold")
    low = _eval(ckpt, data)
    assert low["num_detections"] > as_json["num_detections"]  # the low threshold keeps more of the curve


def test_export_help_points_to_low_threshold_for_map():
    res = CliRunner().invoke(cli, ["export", "--help"])
    assert res.exit_code == 0
    assert "--conf-thresh 0.001" in " ".join(res.output.split())


def _map_line(output: str, label: str) -> tuple[float, float]:
    m = re.search(rf"{re.escape(label)}\s+mAP@0\.5:0\.95 ([0-9.]+)\s+mAP@0\.5 ([0-9.]+)", output)
    assert m, output
    return float(m.group(1)), float(m.group(2))


def test_cli_int8_reports_float_and_int8_map(trained):
    ckpt, data, root = trained
    path = root / "int8.tflite"
    res = CliRunner().invoke(cli, ["export", str(ckpt), "--format", "tflite", "--int8", "-o", str(path),
                                   "--image-dir", str(data), "--calib-images", "32", "--check-images", "4"])
    assert res.exit_code == 0, res.output
    assert "int8 calibration on 32 images" in res.output
    float_map, float_map50 = _map_line(res.output, "float (Keras)")
    int8_map, int8_map50 = _map_line(res.output, "int8 (TFLite)")
    assert float_map50 > 0.2
    assert abs(int8_map50 - float_map50) < 0.15 and abs(int8_map - float_map) < 0.15, res.output
    from utod.infer.tflite_backend import TfliteDetector

    assert TfliteDetector(str(path)).input_detail["dtype"] == np.int8
