"""Scores, decode, class-aware NMS, and export parity of the post-processing graph."""

from __future__ import annotations

import numpy as np
import pytest

from utod._keras import tf
from utod.boxes import RawParts
from utod.model.config import ModelConfig
from utod.model.postprocess import class_scores, postprocess, score_mode_for

SIG = {"obj": 0.6224593, "q": 0.7310586, "cls": 0.8807971}


def _one_cell_parts(quality: bool) -> RawParts:
    def t(v):
        return tf.constant(v, tf.float32, shape=[1, 1, 1, 1])

    return RawParts(box=tf.zeros([1, 1, 1, 1, 4]), obj=t(0.5), quality=t(1.0) if quality else None,
                    cls=tf.constant(2.0, tf.float32, shape=[1, 1, 1, 1, 1]))


@pytest.mark.parametrize(
    "mode,power,expected",
    [
        ("obj_quality_cls", 1.0, 0.4008104),
        ("obj_quality_cls", 2.0, 0.2930159),
        ("quality_cls", 1.0, 0.6439143),
        ("quality_cls", 2.0, 0.4707390),
        ("obj_cls", 1.0, 0.5482604),
    ],
)
def test_score_modes_match_spec(mode, power, expected):
    score = class_scores(_one_cell_parts(True), mode, power).numpy()
    assert score.shape == (1, 1, 1, 1, 1)
    assert score.item() == pytest.approx(expected, abs=2e-7)


@pytest.mark.parametrize("mode", ["obj_quality_cls", "quality_cls", "obj_cls"])
def test_without_quality_every_mode_is_obj_times_cls(mode):
    assert class_scores(_one_cell_parts(False), mode, 2.0).numpy().item() == pytest.approx(0.5482604, abs=2e-7)


def test_score_mode_auto():
    from utod.model.detector import build_model

    def model(**kw):  # auto comes from the head's declared default_score_mode
        return build_model(ModelConfig(cnn_width=8, img_size=(32, 32), **kw))

    assert score_mode_for(model()) == "obj_quality_cls"
    assert score_mode_for(model(head="improved", head_options={"iou_aware": True})) == "quality_cls"
    assert score_mode_for(ModelConfig(score_mode="obj_cls", head_options={"iou_aware": True})) == "obj_cls"
    with pytest.raises(ValueError, match="pass the built model"):
        score_mode_for(ModelConfig())


# ---------------------------------------------------------------- hand-made raw map
ANCHORS = np.array([[0.25, 0.25], [0.25, 0.25]], np.float32)  # A = 2, C = 2, no quality: D = 7
TW_ONE = float(np.log(np.e - 1.0))  # softplus(TW_ONE) = 1 -> w = anchor w
LOW = -20.0


def _hand_raw() -> np.ndarray:
    raw = np.full([8, 8, 2, 7], LOW, np.float32)
    raw[..., 0:2] = 0.0
    raw[..., 2:4] = TW_ONE

    def put(row, col, anchor, obj, cls_logits, tx=0.0):
        raw[row, col, anchor, 0] = tx
        raw[row, col, anchor, 4] = obj
        raw[row, col, anchor, 5:7] = cls_logits

    put(2, 3, 0, 3.0, [3.0, LOW])  # A: class 0, score sigmoid(3)^2
    put(2, 3, 1, 2.0, [2.0, LOW])  # duplicate of A, same class, lower score -> suppressed
    put(2, 4, 0, 2.5, [LOW, 2.5], tx=-3.0)  # overlaps A (IoU ~0.57) but class 1 -> kept
    put(5, 5, 1, 1.0, [1.0, LOW])  # far away, class 0 -> kept
    put(7, 7, 0, 0.0, [0.0, LOW])  # score 0.25 < conf 0.3 -> dropped
    return raw.reshape(1, 8, 8, 14)


def _sig(x):
    return 1.0 / (1.0 + np.exp(-x))


def _expected_rows():
    cx_shifted = (_sig(-3.0) + 4) / 8
    return np.array([
        [_sig(3.0) ** 2, 0, 3.5 / 8, 2.5 / 8, 0.25, 0.25],
        [_sig(2.5) ** 2, 1, cx_shifted, 2.5 / 8, 0.25, 0.25],
        [_sig(1.0) ** 2, 0, 5.5 / 8, 5.5 / 8, 0.25, 0.25],
    ], np.float32)


def _run(raw, max_det=10):
    return postprocess(tf.constant(raw), ANCHORS, 2, 2, False, "obj_quality_cls", 1.0, 0.3, 0.5, max_det)


def test_postprocess_hand_made_map_class_aware_nms():
    raw = np.concatenate([_hand_raw(), np.full_like(_hand_raw(), LOW)], axis=0)  # image 2 is empty
    raw[1, ..., 2:4] = TW_ONE
    det, num_valid = _run(raw)
    assert det.shape == (2, 10, 6) and det.dtype == tf.float32
    assert num_valid.numpy().tolist() == [3, 0]
    np.testing.assert_allclose(det[0, :3].numpy(), _expected_rows(), rtol=1e-5, atol=1e-6)
    assert np.all(det[0, 3:].numpy() == 0) and np.all(det[1].numpy() == 0)


def test_postprocess_images_do_not_suppress_each_other_and_top_k():
    raw = np.concatenate([_hand_raw(), _hand_raw()], axis=0)
    det, num_valid = _run(raw)
    assert num_valid.numpy().tolist() == [3, 3]
    np.testing.assert_allclose(det[1, :3].numpy(), _expected_rows(), rtol=1e-5, atol=1e-6)
    det2, nv2 = _run(raw, max_det=2)
    assert det2.shape == (2, 2, 6) and nv2.numpy().tolist() == [2, 2]
    np.testing.assert_allclose(det2[0].numpy(), _expected_rows()[:2], rtol=1e-5, atol=1e-6)


def test_postprocess_in_tf_function_with_fixed_signature():
    fn = tf.function(
        lambda r: postprocess(r, ANCHORS, 2, 2, False, "obj_quality_cls", 1.0, 0.3, 0.5, 10),
        input_signature=[tf.TensorSpec([None, 8, 8, 14], tf.float32)],
    )
    det, num_valid = fn(tf.constant(_hand_raw()))
    assert num_valid.numpy().tolist() == [3]
    np.testing.assert_allclose(det[0, :3].numpy(), _expected_rows(), rtol=1e-5, atol=1e-6)


def test_postprocess_quality_scores_and_classless_model():
    raw = np.full([1, 8, 8, 1, 6], LOW, np.float32)  # A=1, quality, C=0: D = 6
    raw[..., 2:4] = TW_ONE
    raw[0, 1, 1, 0, 4:6] = [0.5, 1.0]
    det, num_valid = postprocess(tf.constant(raw.reshape(1, 8, 8, 6)), ANCHORS[:1], 1, 0, True,
                                 "obj_quality_cls", 1.0, 0.1, 0.5, 5)
    assert num_valid.numpy().tolist() == [1]
    assert det[0, 0, 0].numpy() == pytest.approx(SIG["obj"] * SIG["q"], abs=1e-6)
    assert det[0, 0, 1].numpy() == 0.0


# ---------------------------------------------------------------- export parity
def _tiny_model_with_varied_scores():
    from utod._keras import keras
    from utod.model.detector import build_model

    keras.utils.set_random_seed(0)
    cfg = ModelConfig(cnn_width=8, num_classes=2, head="improved", head_options={"iou_aware": True},
                      conf_thresh=0.05, max_detections=20)
    model = build_model(cfg)
    rng = np.random.default_rng(0)
    for layer in (model.head.obj_out, model.head.cls_out, model.head.quality_out):
        # an untrained tiny model's logits barely vary between cells; spread them (no score ties)
        layer.kernel.assign(rng.normal(0.0, 100.0, layer.kernel.shape).astype(np.float32))
        layer.bias.assign(rng.normal(0.0, 1.0, layer.bias.shape).astype(np.float32))
    return model


@pytest.fixture(scope="module")
def detect_and_reference():
    from utod.model.postprocess import predict_model

    detect = predict_model(_tiny_model_with_varied_scores(), post=True)
    images = np.random.default_rng(1).random((2, 64, 64, 3), dtype=np.float32)
    ref = detect(images).numpy()
    assert ref.shape == (2, 20, 6) and (ref[:, :, 0] > 0).sum() >= 10
    assert np.all(np.diff(ref[:, :, 0], axis=1) <= 0)  # sorted by score
    return detect, images, ref


def test_onnx_parity_with_postprocess(detect_and_reference):
    import onnxruntime as ort
    import tf2onnx

    detect, images, ref = detect_and_reference
    spec = (tf.TensorSpec([None, 64, 64, 3], tf.float32, name="images"),)
    onnx_model, _ = tf2onnx.convert.from_keras(detect, input_signature=spec, opset=17)
    sess = ort.InferenceSession(onnx_model.SerializeToString(), providers=["CPUExecutionProvider"])
    out = sess.run(None, {sess.get_inputs()[0].name: images})[0]
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-5)


def test_tflite_parity_with_postprocess_builtin_ops_only(detect_and_reference):
    detect, images, ref = detect_and_reference
    converter = tf.lite.TFLiteConverter.from_keras_model(detect)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]  # no SELECT_TF_OPS needed
    interp = tf.lite.Interpreter(model_content=converter.convert())
    inp = interp.get_input_details()[0]["index"]
    interp.resize_tensor_input(inp, [2, 64, 64, 3])
    interp.allocate_tensors()
    interp.set_tensor(inp, images)
    interp.invoke()
    out = interp.get_tensor(interp.get_output_details()[0]["index"])
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-5)


def test_dense_greedy_nms_matches_tf_reference_nms():
    from utod.model.postprocess import greedy_nms_mask

    rng = np.random.default_rng(3)
    b, k = 3, 60
    xy = rng.random((b, k, 2)) * 0.7
    wh = 0.05 + rng.random((b, k, 2)) * 0.3
    boxes = np.concatenate([xy, xy + wh], axis=-1).astype(np.float32)
    scores = -np.sort(-rng.random((b, k)), axis=1).astype(np.float32)
    classes = rng.integers(0, 3, (b, k)).astype(np.int32)
    valid = scores > 0.2
    keep = greedy_nms_mask(tf.constant(boxes), tf.constant(scores), tf.constant(classes), tf.constant(valid),
                           0.45).numpy()
    for i in range(b):
        expected = np.zeros(k, bool)
        for c in range(3):
            idx = np.flatnonzero((classes[i] == c) & valid[i])
            # tf.image NMS wants (y1, x1, y2, x2); IoU is symmetric in the axes
            sel = tf.image.non_max_suppression(boxes[i, idx], scores[i, idx], len(idx), 0.45).numpy()
            expected[idx[sel]] = True
        np.testing.assert_array_equal(keep[i], expected)
    assert 0 < keep.sum() < valid.sum()


@pytest.mark.parametrize("num_classes,conf,max_det,ties", [(1, 0.001, 100, False), (3, 0.2, 20, False),
                                                           (4, 0.0, 400, False), (2, 0.01, 100, True),
                                                           (1, 0.001, 50, True)])
def test_kernel_nms_gives_the_dense_detections(num_classes, conf, max_det, ties):
    """Training validation and `utod eval`/`predict` of a .keras use TF's C++ NMS
    (nms="kernel"); exports use the dense form. Same candidates, same greedy rule, same
    order: rows, scores, classes and boxes (conf 0: zero scores are never detections;
    max_det above the 300 candidates: zero padding; ties: scores on a coarse grid, as from
    saturated or quantised outputs, keep the dense form's order)."""
    from utod.model.postprocess import nms_detections

    rng = np.random.default_rng(num_classes)
    b, n = 5, 256
    centre = rng.uniform(0.1, 0.9, (b, n, 2))
    size = rng.uniform(0.02, 0.5, (b, n, 2))
    boxes = tf.constant(np.concatenate([centre, size], -1), tf.float32)
    raw_scores = rng.uniform(0, 1, (b, n, num_classes)) ** 3
    raw_scores[0, :40] = 0.0  # exact zeros in play
    if ties:
        raw_scores = np.round(raw_scores * 8) / 8  # 9 distinct values: hundreds of equal scores
    scores = tf.constant(raw_scores, tf.float32)
    dense = nms_detections(boxes, scores, conf, 0.5, max_det, nms="dense")
    kernel = nms_detections(boxes, scores, conf, 0.5, max_det, nms="kernel")
    np.testing.assert_array_equal(kernel[1].numpy(), dense[1].numpy())
    assert int(dense[1].numpy().min()) > 0
    np.testing.assert_array_equal(kernel[0].numpy(), dense[0].numpy())  # the same rows, bit for bit
    with pytest.raises(ValueError, match="unknown NMS"):
        nms_detections(boxes, scores, conf, 0.5, max_det, nms="fast")
