"""int8 exports on TensorFlow Lite Micro: every head option loads, allocates and runs in the
TFLM runtime; tf.lite BUILTIN_REF is bit-exact with it; split outputs; errors for an op TFLM
lacks and an arena over budget, with nothing written."""

from __future__ import annotations

import os

import numpy as np
import pytest

tflite_micro = pytest.importorskip("tflite_micro")  # no wheel for this platform: nothing to judge with

HEADS = {  # every head option, each on a tiny model
    "plain": ("utod", {}),
    "iou_aware": ("utod", {"iou_aware": True}),
    "improved": ("improved", {}),
    "reference": ("improved", {"iou_aware": True, "use_head_ese": True, "large_obj_branch": True}),
    "rfb_lob2": ("utod", {"context_rfb": True, "large_obj_branch": True, "large_obj_depth": 2,
                          "large_obj_ch_scale": 1.25}),
}


def tiny_model(head, options, *, img=(32, 32), classes=2, residual=False, activation="relu", seed=0):
    from utod._keras import keras
    from utod.model.config import ModelConfig
    from utod.model.detector import build_model

    keras.utils.set_random_seed(seed)
    cfg = ModelConfig(img_size=img, num_classes=classes, class_names=[f"c{i}" for i in range(classes)],
                      cnn_width=8, activation=activation, use_batchnorm=True, residual=residual, head=head,
                      head_options=dict(options))
    model = build_model(cfg)
    rng = np.random.default_rng(seed)  # spread the outputs of a fresh head
    for w in model.trainable_weights:
        if "wh_scale" not in w.name:
            w.assign(w.numpy() + rng.normal(0.0, 0.2, w.shape).astype(np.float32))
    return model


def calib(model, n=4):
    from utod.export import synthetic_images
    from utod.infer.modelinfo import info_from_model

    return synthetic_images(info_from_model(model), n)


def int8_inputs(shape, n=3, seed=1):
    rng = np.random.default_rng(seed)
    return [rng.integers(-128, 128, size=shape, dtype=np.int8) for _ in range(n)]


def run_ref(content, x):
    from utod.infer.tflite_backend import make_interpreter

    it = make_interpreter(content, kernels="ref")
    it.set_tensor(it.get_input_details()[0]["index"], x)
    it.invoke()
    return [it.get_tensor(d["index"]) for d in it.get_output_details()]


SPLIT = {"iou_aware", "reference"}  # these two also with one output tensor per group


# plain, reference and rfb_lob2 between them exercise every head option; the two single-option
# variants run with -m slow (keeps the default suite short on 2 cores)
@pytest.mark.parametrize("name", [n if n not in ("iou_aware", "improved") else pytest.param(n, marks=pytest.mark.slow)
                                  for n in HEADS])
def test_every_head_option_loads_in_tflm_and_ref_is_bit_exact(name, tmp_path):
    from utod.deploy.tflm import TflmRunner, check_tflm
    from utod.export import export_tflite

    head, options = HEADS[name]
    split = name in SPLIT
    # input sizes the strides allow and 1..N classes ride along: an odd 5x7 grid, one class
    img, classes = ((40, 56), 1) if name == "rfb_lob2" else ((32, 32), 2)
    model = tiny_model(head, options, img=img, classes=classes, residual=name == "reference",
                       activation="swish" if split else "relu")
    path = tmp_path / "m.tflite"
    info = export_tflite(model, path, post=False, int8=True, split_outputs=split, calibration_images=calib(model))
    content = path.read_bytes()
    check = check_tflm(content)
    assert check.ok, check.error_message()
    assert check.arena_bytes and check.arena_bytes > 1000
    assert "TILE" not in check.ops
    assert info.extra["tflm"]["loads"] and info.extra["tflm"]["arena_bytes"] == check.arena_bytes
    runner = TflmRunner(content)
    assert runner.inputs[0].dtype == "int8" and runner.inputs[0].scale == pytest.approx(1 / 255, rel=1e-5)
    assert runner.inputs[0].zero_point == -128  # int8 = uint8 pixel - 128
    if split:
        assert sorted(info.raw_groups) == sorted(["box", "obj", "cls"] + (["quality"] if model.has_quality else []))
        scales = {o.scale for o in runner.outputs}
        assert len(scales) > 1  # each group has its own scale
    for x in int8_inputs(runner.inputs[0].shape):
        tflm_out = runner.run(x)
        ref_out = run_ref(content, x)
        for a, b in zip(tflm_out, ref_out):
            assert a.dtype == np.int8 and np.array_equal(a, b)


@pytest.mark.slow
@pytest.mark.parametrize("img,classes", [((64, 48), 5), ((16, 16), 3), ((24, 40), 1)])
def test_input_sizes_and_class_counts_load(img, classes, tmp_path):
    from utod.deploy.tflm import check_tflm
    from utod.export import export_tflite

    model = tiny_model(*HEADS["reference"], img=img, classes=classes, residual=True)
    path = tmp_path / "m.tflite"
    export_tflite(model, path, post=False, int8=True, calibration_images=calib(model, 2))
    check = check_tflm(path.read_bytes())
    assert check.ok, check.error_message()


def test_tflm_and_ref_detectors_agree_and_split_decodes_like_concat(tmp_path):
    """The TFLite detector with kernels tflm and ref gives identical detections; the split
    export decodes to the raw layout of the concatenated one (close in float)."""
    from utod.export import export_tflite
    from utod.infer.keras_backend import KerasDetector
    from utod.infer.tflite_backend import TfliteDetector

    model = tiny_model("improved", {"iou_aware": True})
    images = calib(model, 3)
    p_split = tmp_path / "split.tflite"
    export_tflite(model, p_split, post=False, int8=True, split_outputs=True, calibration_images=images)
    tflm = TfliteDetector(str(p_split), kernels="tflm")
    ref = TfliteDetector(str(p_split), kernels="auto")
    assert tflm.kernels_used == "tflm" and ref.kernels_used == "ref"
    raw_tflm, raw_ref = tflm.raw(images), ref.raw(images)
    assert np.array_equal(raw_tflm, raw_ref)
    keras_raw = KerasDetector(model).raw(images)
    assert raw_ref.shape == keras_raw.shape
    assert np.abs(raw_ref - keras_raw).max() < 0.5


def test_op_tflm_lacks_is_an_error_naming_op_and_layer_and_nothing_written(tmp_path, monkeypatch):
    import utod_plugins.impl.heads as heads

    from utod._keras import tf
    from utod.errors import ConfigError
    from utod.export import export_tflite

    model = tiny_model("utod", {"large_obj_branch": True})
    monkeypatch.setattr(heads, "upsample_nearest_2x",  # the old lowering: tf.repeat -> TILE
                        lambda y, h, w, training=None: tf.repeat(tf.repeat(y, 2, axis=1), 2, axis=2)[:, :h, :w])
    path = tmp_path / "out" / "m.tflite"
    with pytest.raises(ConfigError) as err:
        export_tflite(model, path, post=False, int8=True, calibration_images=calib(model, 2))
    msg = str(err.value)
    assert "TILE" in msg and "large_obj_branch" in msg and "upsample_nearest_2x" in msg
    assert "\n" not in msg
    assert not path.exists() and (not path.parent.exists() or os.listdir(path.parent) == [])


def test_max_arena_exceeded_is_an_error_with_numbers(tmp_path):
    from utod.errors import ConfigError
    from utod.export import export_tflite

    model = tiny_model("utod", {})
    path = tmp_path / "m.tflite"  # a float file (no calibration: fast) is measured the same way
    with pytest.raises(ConfigError, match=r"arena needs [\d,]+ bytes, over --max-arena 1,000 bytes"):
        export_tflite(model, path, post=False, max_arena=1000)
    assert not path.exists() and os.listdir(tmp_path) == []
