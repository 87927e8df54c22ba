"""Raw head as one output per group (box, obj, quality, cls): ONNX --no-post and float TFLite
give back the Keras raw map exactly once merged; the group layout helpers round-trip."""

from __future__ import annotations

import numpy as np


def _model(classes=3, options=None):
    from utod._keras import keras
    from utod.model.config import ModelConfig
    from utod.model.detector import build_model

    keras.utils.set_random_seed(2)
    cfg = ModelConfig(img_size=(32, 40), num_classes=classes, class_names=[f"c{i}" for i in range(classes)],
                      cnn_width=8, activation="relu", use_batchnorm=True, head="improved",
                      head_options=dict(options or {"iou_aware": True}))
    return build_model(cfg)


def test_groups_round_trip_and_match_head_call_groups():
    from utod._keras import tf
    from utod.deploy.groups import groups_from_raw, merge_groups, model_groups

    model = _model()
    x = tf.constant(np.random.default_rng(0).random((2, 32, 40, 3)).astype(np.float32))
    raw = model(x, training=False).numpy()
    own = {k: v.numpy() for k, v in model_groups(model, x).items()}
    sliced = {k: v.numpy() for k, v in groups_from_raw(tf.constant(raw), model.num_anchors, True, 3).items()}
    assert list(own) == ["box", "obj", "quality", "cls"]
    for k in own:
        assert np.allclose(own[k], sliced[k], atol=1e-6), k
    assert np.allclose(merge_groups(own, model.num_anchors, True, 3), raw, atol=1e-6)
    nchw = {k: np.transpose(v, (0, 3, 1, 2)) for k, v in own.items()}
    assert np.allclose(merge_groups(nchw, model.num_anchors, True, 3, nchw=True), raw, atol=1e-6)


def test_onnx_and_float_tflite_split_outputs_equal_keras(tmp_path):
    from utod.export import export_onnx, export_tflite, synthetic_images
    from utod.infer.keras_backend import KerasDetector
    from utod.infer.onnx_backend import OnnxDetector
    from utod.infer.tflite_backend import TfliteDetector

    model = _model(classes=2, options={})  # improved head: quality on, obj score mode
    images = synthetic_images(KerasDetector(model).info, 2)
    ref = KerasDetector(model).raw(images)
    onnx_path = tmp_path / "split.onnx"
    info = export_onnx(model, onnx_path, post=False, split_outputs=True)
    assert info.raw_groups == ["box", "obj", "quality", "cls"]
    det = OnnxDetector(str(onnx_path))
    assert {"box", "obj", "quality", "cls"} <= set(det.output_names)
    assert np.abs(det.raw(images) - ref).max() < 1e-4
    tfl = tmp_path / "split.tflite"
    tinfo = export_tflite(model, tfl, post=False, split_outputs=True)
    assert sorted(tinfo.raw_groups) == ["box", "cls", "obj", "quality"]
    tdet = TfliteDetector(str(tfl))
    assert np.abs(tdet.raw(images) - ref).max() < 1e-4
    assert len(tdet.detect(images, conf_thresh=0.0)) == 2
