"""The firmware bundle (`utod export --format tflm`): files, resolver, config header; the C99
post-process compiled with the host compiler gives the boxes `utod predict` gives on the
same int8 model (TFLM kernels), for concatenated and split outputs and a 1-class model."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tflite_micro")
CC = shutil.which("gcc") or shutil.which("cc")
HARNESS = Path(__file__).with_name("c") / "bundle_harness.c"


def make_ckpt(folder, *, classes, head="improved", options=None, seed=5, disable_cls=False):
    from utod._keras import keras
    from utod.model.config import ModelConfig
    from utod.model.detector import build_model
    from utod.model.io import save_checkpoint

    keras.utils.set_random_seed(seed)
    cfg = ModelConfig(img_size=(32, 32), num_classes=classes, class_names=[f"k{i}" for i in range(classes)],
                      cnn_width=8, activation="relu", use_batchnorm=True, head=head,
                      head_options=dict(options or {}), conf_thresh=0.05, max_detections=30,
                      disable_cls=disable_cls)
    model = build_model(cfg)
    rng = np.random.default_rng(seed)  # spread the scores of a fresh head
    for w in model.trainable_weights:
        if "wh_scale" not in w.name:
            w.assign(w.numpy() + rng.normal(0.0, 0.3, w.shape).astype(np.float32))
    return model, save_checkpoint(Path(folder) / "m.keras", model, {"epoch": 1})


def write_images(folder, n=6, size=32, seed=0):
    import cv2

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        img = cv2.resize(rng.integers(0, 256, (4, 4, 3), dtype=np.uint8), (size, size),
                         interpolation=cv2.INTER_NEAREST)
        img[0, 0] = 0
        img[-1, -1] = 255
        cv2.imwrite(str(folder / f"img{i}.png"), img)
        (folder / f"img{i}.txt").write_text(f"0 0.5 0.5 0.{3 + i % 5} 0.4\n")
    return sorted(str(p) for p in folder.glob("*.png"))


def compile_harness(bundle: Path, tmp: Path) -> Path:
    exe = tmp / "harness"
    cmd = [CC, "-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-pedantic", f"-I{bundle}", str(HARNESS),
           str(bundle / "utod_postprocess.c"), "-lm", "-o", str(exe)]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    return exe


def c_detections(exe: Path, raw_outputs: list[np.ndarray], conf: float, iou: float):
    data = b"".join(np.ascontiguousarray(o).tobytes() for o in raw_outputs)
    res = subprocess.run([str(exe), repr(conf), repr(iou)], input=data, capture_output=True, check=True)
    rows = [list(map(float, line.split())) for line in res.stdout.decode().splitlines() if line.strip()]
    return np.asarray(rows, np.float64).reshape(-1, 6)


def assert_c_matches_predict(bundle: Path, images: list[str], tmp: Path, dtype) -> None:
    """The bundle's C99 post-process, compiled with the host compiler, on the raw outputs
    TFLM returns for each image (all of ``dtype``) gives the boxes `utod predict` gives on
    the same file: same classes, scores and boxes within one quantisation step."""
    from utod.infer.tflite_backend import TfliteDetector

    exe = compile_harness(bundle, tmp)
    det = TfliteDetector(str(bundle / "model.tflite"), kernels="tflm")
    pre = det.preprocessor.load(images)
    conf, iou = det.info.conf_thresh, det.info.nms_iou
    step = min(o_scale for _, o_scale in _scales(det))
    total = 0
    for k in range(len(images)):
        raw = det.forward_quantised(pre[k:k + 1])
        outs = [raw[name] for name, _ in det.output_details]
        assert all(o.dtype == dtype for o in outs)
        got = c_detections(exe, outs, conf, iou)
        boxes, scores, labels = det.detect(pre[k:k + 1], conf, iou)[0]  # what utod predict prints
        assert len(got) == len(scores), (k, got, scores)
        total += len(got)
        if len(got):
            assert np.array_equal(got[:, 0].astype(int), labels)
            assert np.abs(got[:, 1] - scores).max() <= step
            assert np.abs(got[:, 2:] - boxes).max() <= step
    assert total > 0  # the comparison compared something


@pytest.mark.skipif(CC is None, reason="no C compiler on this machine")
@pytest.mark.parametrize("classes,split,classless", [pytest.param(3, True, False, marks=pytest.mark.slow),
                                                     (2, False, False), (1, True, True)],
                         ids=["3cls-split", "2cls-concat", "classless-split"])
def test_c_postprocess_matches_utod_predict(classes, split, classless, tmp_path):
    from click.testing import CliRunner

    from utod.cli import cli

    _, ckpt = make_ckpt(tmp_path, classes=classes, disable_cls=classless)
    images = write_images(tmp_path / "imgs")
    bundle = tmp_path / "fw"
    args = ["export", str(ckpt), "--format", "tflm", "-o", str(bundle), "--image-dir", str(tmp_path / "imgs"),
            "--split", "all", "--calib-images", "4", "--skip-check",
            "--split-outputs" if split else "--concat-outputs"]
    # no run folder and --split all: calibration would see the evaluation images
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 2 and "calibration" in res.output, res.output
    args[args.index("all")] = "val"
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    assert "calibration on" in res.output and "flash:" in res.output and "arena" in res.output
    names = sorted(p.name for p in bundle.iterdir())
    assert names == sorted(["README.md", "model.tflite", "utod_example.cc", "utod_model_config.h",
                            "utod_model_data.cc", "utod_model_data.h", "utod_op_resolver.h",
                            "utod_postprocess.c", "utod_postprocess.h"])
    header = (bundle / "utod_model_config.h").read_text()
    assert "#define UTOD_INPUT_IS_PIXEL_MINUS_128 1" in header and "uint8_pixel - 128" in header
    assert f"#define UTOD_NUM_CLASSES {0 if classless else classes} " in header and '"k0"' in header
    resolver = (bundle / "utod_op_resolver.h").read_text()
    assert "MicroMutableOpResolver<kUtodNumOps>" in resolver and "AddConv2D()" in resolver
    assert "AddDepthwiseConv2D()" in resolver and "Tile" not in resolver
    assert "alignas(16) const unsigned char g_utod_model_data[]" in (bundle / "utod_model_data.cc").read_text()
    gxx = shutil.which("g++")
    if gxx:  # the model array compiles as C++ (TFLM projects are C++17)
        subprocess.run([gxx, "-std=c++17", "-c", str(bundle / "utod_model_data.cc"), "-o",
                        str(tmp_path / "data.o")], check=True, capture_output=True)

    rep = CliRunner().invoke(cli, ["inspect", str(bundle / "model.tflite")])  # the sizes again, from the file
    assert rep.exit_code == 0, rep.output
    assert "flash: " in rep.output and "TFLite Micro arena: " in rep.output and "ops (" in rep.output
    assert "input:  serving_default_images:0 [1, 32, 32, 3] int8 scale 0.00392157 zero point -128" in rep.output
    assert_c_matches_predict(bundle, images, tmp_path, np.int8)
    if not split:  # utod eval on the int8 file says which kernels scored it, and they agree
        maps = {}
        for kernels in ("tflm", "auto"):
            res = CliRunner().invoke(cli, ["eval", str(bundle / "model.tflite"), "--data", str(tmp_path / "imgs"),
                                           "--kernels", kernels])
            assert res.exit_code == 0, res.output
            used = "tflm" if kernels == "tflm" else "ref"
            assert f"kernels: {used} (" in res.output
            maps[kernels] = [ln for ln in res.output.splitlines() if "mAP@0.5:0.95" in ln]
        assert maps["tflm"] == maps["auto"]  # bit-exact kernels: the same report


@pytest.mark.skipif(CC is None, reason="no C compiler on this machine")
def test_16x8_bundle_runs_in_tflm_and_its_c_postprocess_matches_utod_predict(tmp_path):
    """`--format tflm --int16`: a 16x8 model (int16 activations and I/O) in the bundle; the
    header says 16 bits and how a pixel becomes int16; the C99 post-process reads the int16
    outputs TFLM returns and gives utod predict's boxes."""
    from click.testing import CliRunner

    from utod.cli import cli

    _, ckpt = make_ckpt(tmp_path, classes=2)
    images = write_images(tmp_path / "imgs")
    bundle = tmp_path / "fw16"
    res = CliRunner().invoke(cli, ["export", str(ckpt), "--format", "tflm", "--int16", "-o", str(bundle),
                                   "--image-dir", str(tmp_path / "imgs"), "--split", "val", "--calib-images", "4",
                                   "--skip-check"])
    assert res.exit_code == 0, res.output
    assert "tflm int16" in res.output and "arena" in res.output
    header = (bundle / "utod_model_config.h").read_text()
    assert "#define UTOD_INPUT_BITS 16 " in header and "#define UTOD_OUTPUT_BITS 16" in header
    assert "#define UTOD_INPUT_IS_PIXEL_MINUS_128 0" in header and "int16 input = round(uint8_pixel / 255 /" in header
    assert "input->data.i16[i]" in (bundle / "utod_example.cc").read_text()
    assert_c_matches_predict(bundle, images, tmp_path, np.int16)


def _scales(det):
    return [(name, float(d["quantization"][0])) for name, d in det.output_details]


def test_bundle_errors_exit_2_and_leave_nothing(tmp_path):
    from click.testing import CliRunner

    from utod.cli import cli

    _, ckpt = make_ckpt(tmp_path, classes=2, head="utod", options={})
    write_images(tmp_path / "imgs", n=4)
    base = ["export", str(ckpt), "--format", "tflm", "--image-dir", str(tmp_path / "imgs"), "--calib-images", "2",
            "--skip-check"]
    res = CliRunner().invoke(cli, [*base, "-o", str(tmp_path / "a"), "--max-arena", "2000"])
    assert res.exit_code == 2 and "--max-arena 2,000 bytes" in res.output, res.output
    assert len(res.output.strip().splitlines()[-1]) > 20 and "Traceback" not in res.output
    blocker = tmp_path / "a_file"  # an output folder that cannot be created (its parent is a file)
    blocker.write_text("x")
    res = CliRunner().invoke(cli, [*base, "-o", str(blocker / "fw")])
    assert res.exit_code == 2 and "cannot create" in res.output and "a_file" in res.output, res.output
    assert blocker.read_text() == "x"
    assert not (tmp_path / "a").exists()
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".") or p.name.endswith("_tflm")]
    assert leftovers == []
