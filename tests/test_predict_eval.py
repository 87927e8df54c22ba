"""`utod predict` writes annotated images + JSON/CSV; `utod eval` gives the same numbers on a
checkpoint and on its ONNX export; inspect shows anchors/wh_scale and --json parses."""

from __future__ import annotations

import csv
import json

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from utod.cli import cli


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """Tiny 1-class checkpoint whose detections are not all below threshold, its raw ONNX
    export, and 6 labelled 64x64 images (two in a sub-folder) of rectangles."""
    from utod.export import export_onnx
    from utod.model.config import ModelConfig
    from utod.model.detector import build_model
    from utod.model.io import save_checkpoint

    root = tmp_path_factory.mktemp("pe")
    cfg = ModelConfig(img_size=(64, 64), num_classes=1, class_names=["box"], cnn_width=8, activation="relu",
                      head="utod", conf_thresh=0.001, max_detections=30, anchors=[[0.3, 0.3], [0.5, 0.5]])
    model = build_model(cfg)
    ckpt = save_checkpoint(root / "m.keras", model, {"epoch": 7, "metrics": {"map50": 0.25}})
    onnx_path = root / "m_raw.onnx"
    export_onnx(model, onnx_path, post=False)
    data = root / "data"
    (data / "sub").mkdir(parents=True)
    rng = np.random.default_rng(1)
    for i in range(6):
        img = (rng.random((80, 96, 3)) * 60).astype(np.uint8)
        x0, y0 = int(rng.integers(5, 40)), int(rng.integers(5, 30))
        img[y0:y0 + 30, x0:x0 + 40] = (40, 200, 220)
        folder = data / "sub" if i >= 4 else data
        cv2.imwrite(str(folder / f"im{i}.png"), img)
        cx, cy, w, h = (x0 + 20) / 96, (y0 + 15) / 80, 40 / 96, 30 / 80
        (folder / f"im{i}.txt").write_text(f"0 {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}\n")
    return ckpt, onnx_path, data, root


def test_predict_writes_images_json_csv(setup):
    ckpt, _, data, root = setup
    out = root / "pred"
    res = CliRunner().invoke(cli, ["predict", str(ckpt), str(data), "--out", str(out), "--conf-thresh", "0.0"])
    assert res.exit_code == 0, res.output
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert pngs == [f"im{i}.png" for i in range(6)]  # the sub-folder was searched too
    assert cv2.imread(str(out / "im0.png")).shape == (80, 96, 3)  # annotated copy at original size
    doc = json.loads((out / "detections.json").read_text())
    assert doc["backend"] == "keras" and doc["class_names"] == ["box"]
    assert len(doc["images"]) == 6
    first = doc["images"][0]
    assert first["width"] == 96 and first["height"] == 80 and first["detections"]
    det = first["detections"][0]
    assert 0 <= det["x1"] <= det["x2"] <= 96 and 0 <= det["y1"] <= det["y2"] <= 80
    assert det["class_name"] == "box"
    rows = list(csv.DictReader(open(out / "detections.csv")))
    assert len(rows) == sum(len(r["detections"]) for r in doc["images"])
    assert {"image", "class_id", "class_name", "score", "x1", "y1", "x2", "y2", "cx", "cy", "w", "h"} <= set(rows[0])


def test_predict_with_onnx_matches_keras(setup):
    ckpt, onnx_path, data, root = setup
    runner = CliRunner()
    docs = []
    for name, model in (("k", ckpt), ("o", onnx_path)):
        out = root / f"pred_{name}"
        res = runner.invoke(cli, ["predict", str(model), str(data / "im0.png"), "--out", str(out), "--no-draw"])
        assert res.exit_code == 0, res.output
        docs.append(json.loads((out / "detections.json").read_text()))
    a, b = (d["images"][0]["detections"] for d in docs)
    assert len(a) == len(b)
    assert np.allclose([r["score"] for r in a], [r["score"] for r in b], atol=1e-4)
    assert docs[1]["backend"] == "onnx"


def test_predict_user_errors(setup, tmp_path):
    ckpt, _, _, _ = setup
    runner = CliRunner()
    res = runner.invoke(cli, ["predict", str(ckpt), str(tmp_path / "nope.png")])
    assert res.exit_code == 2 and "no such file" in res.output
    res = runner.invoke(cli, ["predict", str(tmp_path / "missing.onnx"), str(tmp_path)])
    assert res.exit_code == 2
    other = tmp_path / "model.pt"
    other.write_text("x")
    img = tmp_path / "a.png"
    cv2.imwrite(str(img), np.zeros((8, 8, 3), np.uint8))
    res = runner.invoke(cli, ["predict", str(other), str(img)])
    assert res.exit_code == 2 and "unknown model format" in res.output


def test_eval_onnx_equals_checkpoint(setup):
    ckpt, onnx_path, data, _ = setup
    runner = CliRunner()
    results = []
    for model in (ckpt, onnx_path):
        res = runner.invoke(cli, ["eval", str(model), "--image-dir", str(data), "--json", "--conf-thresh", "0"])
        assert res.exit_code == 0, res.output
        results.append(json.loads(res.output))
    k, o = results
    assert k["num_images"] == 6 and k["num_gt"] == 6
    assert k["num_detections"] > 0
    for key in ("map", "map50", "map75", "precision", "recall"):
        assert k[key] == pytest.approx(o[key], abs=1e-3), key
    assert k["per_class"]["box"]["ap"] == pytest.approx(o["per_class"]["box"]["ap"], abs=1e-3)


def test_eval_table_and_val_split(setup):
    ckpt, _, data, _ = setup
    res = CliRunner().invoke(cli, ["eval", str(ckpt), "--image-dir", str(data), "--split", "val"])
    assert res.exit_code == 0, res.output
    assert "mAP@0.5:0.95" in res.output and "box" in res.output
    assert "images 1 " in res.output  # 6 images, 0.8/0.2: round(4.8) = 5 train, 1 val


def _write_video(path, frames: int) -> None:
    """An MJPG .avi of ``frames`` 80x96 frames with a bright rectangle moving right."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (96, 80))
    assert writer.isOpened()
    for i in range(frames):
        img = np.full((80, 96, 3), 30, np.uint8)
        img[20:50, 5 + 8 * i:45 + 8 * i] = (40, 200, 220)
        writer.write(img)
    writer.release()


def test_predict_video_writes_annotated_video_and_per_frame_records(setup, tmp_path):
    ckpt, _, _, _ = setup
    video = tmp_path / "clip.avi"
    _write_video(video, 5)
    out = tmp_path / "vpred"
    res = CliRunner().invoke(cli, ["predict", str(ckpt), str(video), "--out", str(out), "--conf-thresh", "0.0"])
    assert res.exit_code == 0, res.output
    assert "5 images/frames" in res.output
    cap = cv2.VideoCapture(str(out / "clip_pred.mp4"))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    assert len(frames) == 5 and frames[0].shape == (80, 96, 3)
    doc = json.loads((out / "detections.json").read_text())
    assert [r["frame"] for r in doc["images"]] == [0, 1, 2, 3, 4]
    assert all(r["image"] == str(video) and r["width"] == 96 and r["height"] == 80 for r in doc["images"])
    assert all(r["detections"] for r in doc["images"])
    rows = list(csv.DictReader(open(out / "detections.csv")))
    assert {r["frame"] for r in rows} == {"0", "1", "2", "3", "4"}
    # frame detections equal those of the same frame given as an image (same preprocessing)
    cap = cv2.VideoCapture(str(video))
    ok, first = cap.read()
    cap.release()
    still = tmp_path / "first.png"
    cv2.imwrite(str(still), first)
    out2 = tmp_path / "still"
    res = CliRunner().invoke(cli, ["predict", str(ckpt), str(still), "--out", str(out2), "--conf-thresh", "0.0",
                                   "--no-draw"])
    assert res.exit_code == 0, res.output
    still_dets = json.loads((out2 / "detections.json").read_text())["images"][0]["detections"]
    assert [d["score"] for d in still_dets] == pytest.approx([d["score"] for d in doc["images"][0]["detections"]])


def test_predict_video_max_frames_and_no_draw(setup, tmp_path):
    ckpt, _, _, _ = setup
    video = tmp_path / "clip.avi"
    _write_video(video, 6)
    out = tmp_path / "vpred"
    res = CliRunner().invoke(cli, ["predict", str(ckpt), str(video), "--out", str(out), "--max-frames", "2",
                                   "--no-draw"])
    assert res.exit_code == 0, res.output
    doc = json.loads((out / "detections.json").read_text())
    assert [r["frame"] for r in doc["images"]] == [0, 1]
    assert not (out / "clip_pred.mp4").exists()


def test_predict_camera_and_bad_video_fail_clearly(setup, tmp_path):
    ckpt, _, _, _ = setup
    runner = CliRunner()
    res = runner.invoke(cli, ["predict", str(ckpt), "--camera", "97", "--out", str(tmp_path / "cam")])
    assert res.exit_code == 2, res.output
    assert "camera 97: OpenCV cannot open camera index 97" in res.output and "Traceback" not in res.output
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video at all")
    res = runner.invoke(cli, ["predict", str(ckpt), str(broken), "--out", str(tmp_path / "b")])
    assert res.exit_code == 2, res.output
    assert "broken.mp4: OpenCV cannot open this video" in res.output


def test_predict_skips_a_corrupt_image_and_keeps_the_others(setup, tmp_path):
    ckpt, _, data, _ = setup
    folder = tmp_path / "imgs"
    folder.mkdir()
    good = sorted(data.glob("*.png"))[:2] or sorted(data.glob("*.jpg"))[:2]
    for g in good:
        (folder / g.name).write_bytes(g.read_bytes())
    (folder / "broken.jpg").write_bytes(b"not an image")
    out = tmp_path / "out"
    res = CliRunner().invoke(cli, ["predict", str(ckpt), str(folder), "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "broken.jpg" in res.output and "skipped" in res.output
    records = json.loads((out / "detections.json").read_text())
    assert len(records["images"]) == len(good)
