"""Batched, compiled inference: the same detections as the eager post-processing, one trace
per batch shape whatever the batch sizes and thresholds, image files loaded ahead in order."""

from __future__ import annotations

import cv2
import numpy as np
import pytest


@pytest.fixture(scope="module")
def model():
    from utod.model.config import ModelConfig
    from utod.model.detector import build_model

    cfg = ModelConfig(img_size=(64, 64), num_classes=2, class_names=["a", "b"], cnn_width=8, activation="relu",
                      head="utod", conf_thresh=0.001, max_detections=20, anchors=[[0.3, 0.3], [0.5, 0.5]])
    return build_model(cfg)


def _eager(model, images, conf, iou):
    from utod.infer.decode import split_detections
    from utod.model.postprocess import model_postprocess

    dets, num = model_postprocess(model, model(images, training=False), conf, iou)
    return split_detections(np.asarray(dets), np.asarray(num), conf)


def _same(a, b):
    assert len(a) == len(b)
    for (ba, sa, la), (bb, sb, lb) in zip(a, b):
        assert len(sa) == len(sb)
        np.testing.assert_allclose(sa, sb, atol=1e-5)
        np.testing.assert_allclose(ba, bb, atol=1e-5)
        np.testing.assert_array_equal(la, lb)


def test_keras_detect_is_the_eager_postprocess_with_two_traces(model):
    from utod.infer.keras_backend import KerasDetector

    det = KerasDetector(model)
    det.batch_size = 4
    images = np.random.default_rng(0).random((9, 64, 64, 3)).astype(np.float32)
    for n, conf, iou in ((1, 0.001, 0.45), (3, 0.001, 0.45), (4, 0.2, 0.6), (9, 0.05, 0.3), (1, 0.3, 0.5)):
        _same(det.detect(images[:n], conf, iou), _eager(model, images[:n], conf, iou))
    assert det.traces == 2  # batch 1 and batch 4 (padded), thresholds never retrace


def test_raw_decoder_matches_eager_and_does_not_retrace_on_thresholds(model):
    from utod.infer.decode import RawDecoder, split_detections
    from utod.infer.modelinfo import info_from_model

    images = np.random.default_rng(1).random((3, 64, 64, 3)).astype(np.float32)
    raw = np.asarray(model(images, training=False))
    dec = RawDecoder(info_from_model(model))
    for conf, iou in ((0.001, 0.45), (0.1, 0.6), (0.3, 0.2)):
        dets, num = dec(raw, conf, iou)
        _same(split_detections(dets, num, conf), _eager(model, images, conf, iou))
    assert dec.traces == 1


def test_image_loader_keeps_order_skips_nothing_silently(tmp_path):
    from utod.infer.preprocess import ImageLoader, Preprocessor

    paths = []
    for i in range(7):
        p = tmp_path / f"im{i}.png"
        cv2.imwrite(str(p), np.full((20 + i, 30, 3), 10 * i, np.uint8))
        paths.append(str(p))
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    paths.insert(3, str(bad))
    pre = Preprocessor((16, 16), "opencv_inter_nearest")
    batches = list(ImageLoader(pre, 3, workers=2, keep_originals=True).batches(paths))
    assert [len(b.paths) + len(b.failed) for b in batches] == [3, 3, 2]
    assert [p for b in batches for p in b.paths] == [p for p in paths if p != str(bad)]
    assert [p for b in batches for p, _ in b.failed] == [str(bad)]
    with pytest.raises(Exception, match="bad.png"):
        batches[1].raise_failed()
    flat = np.concatenate([b.images for b in batches])
    assert flat.shape == (7, 16, 16, 3) and flat.dtype == np.float32
    np.testing.assert_allclose(flat[:, 0, 0, 0], [10 * i / 255 for i in range(7)], atol=1e-6)
    assert [o.shape[0] for b in batches for o in b.originals] == [20 + i for i in range(7)]


def test_graph_function_falls_back_to_autograph_once():
    from utod._keras import tf
    from utod.graph import GraphFunction

    def plain(x):
        return x * 2.0

    def needs_autograph(x):
        if tf.reduce_sum(x) > 0:  # Python control flow on a tensor
            return x * 2.0
        return -x

    f, g = GraphFunction(plain), GraphFunction(needs_autograph)
    x = tf.constant([1.0, 2.0])
    assert f(x).numpy().tolist() == [2.0, 4.0] and not f.autograph and f.traces == 1
    assert g(x).numpy().tolist() == [2.0, 4.0] and g.autograph
    assert g(-x).numpy().tolist() == [1.0, 2.0] and g.traces == 1


def test_predict_video_in_batches_equals_frame_by_frame_and_reports_fps(model, tmp_path):
    import json

    from click.testing import CliRunner

    from utod.cli import cli
    from utod.model.io import save_checkpoint

    ckpt = save_checkpoint(tmp_path / "m.keras", model)
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (96, 80))
    for i in range(7):
        img = np.full((80, 96, 3), 30, np.uint8)
        img[20:50, 5 + 6 * i:45 + 6 * i] = (40, 200, 220)
        writer.write(img)
    writer.release()
    docs = []
    for batch in ("3", "1"):  # 3: two full batches and a partial one
        out = tmp_path / f"b{batch}"
        res = CliRunner().invoke(cli, ["predict", str(ckpt), str(video), "--out", str(out), "--batch-size", batch,
                                       "--conf-thresh", "0.0"])
        assert res.exit_code == 0, res.output
        assert "7 frames in" in res.output and "fps" in res.output
        docs.append(json.loads((out / "detections.json").read_text())["images"])
        cap = cv2.VideoCapture(str(out / "clip_pred.mp4"))
        assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 7
        cap.release()
    assert [r["frame"] for r in docs[0]] == list(range(7))
    for a, b in zip(*docs):
        assert [d["score"] for d in a["detections"]] == pytest.approx([d["score"] for d in b["detections"]], abs=1e-5)


def test_eval_prints_its_throughput(model, tmp_path):
    from click.testing import CliRunner

    from utod.cli import cli
    from utod.model.io import save_checkpoint

    ckpt = save_checkpoint(tmp_path / "m.keras", model)
    for i in range(5):
        img = np.full((48, 48, 3), 40, np.uint8)
        img[10:30, 10:30] = 220
        cv2.imwrite(str(tmp_path / f"im{i}.png"), img)
        (tmp_path / f"im{i}.txt").write_text("0 0.42 0.42 0.42 0.42\n")
    res = CliRunner().invoke(cli, ["eval", str(ckpt), "--image-dir", str(tmp_path), "--batch-size", "2"])
    assert res.exit_code == 0, res.output
    assert "5 images in" in res.output and "img/s after the first batch" in res.output
