"""Damaged and non-finite checkpoints, unwritable outputs, plugin failures: every one is a
single clear line (no traceback unless ``utod -v`` / ``UTOD_VERBOSE=1``), and nothing
non-finite is evaluated, exported or predicted."""

from __future__ import annotations

import errno
import io
import json
import os
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from utod.cli import cli
from utod.errors import CheckpointError


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny checkpoint, a copy with one NaN weight, and 3 labelled 32x32 images."""
    from utod.model.config import ModelConfig
    from utod.model.detector import build_model
    from utod.model.io import save_checkpoint

    root = tmp_path_factory.mktemp("integrity_cli")
    model = build_model(ModelConfig(img_size=(32, 32), num_classes=1, class_names=["box"], cnn_width=8))
    good = save_checkpoint(root / "good.keras", model, {"epoch": 1})
    values = model.get_weights()
    values[0] = values[0].copy()
    values[0].flat[0] = np.nan
    model.set_weights(values)
    nan = save_checkpoint(root / "nan.keras", model, {"epoch": 2})
    data = root / "data"
    data.mkdir()
    for i in range(3):
        img = np.full((32, 32, 3), 40, np.uint8)
        img[8:24, 8:24] = 200
        cv2.imwrite(str(data / f"im{i}.png"), img)
        (data / f"im{i}.txt").write_text("0 0.5 0.5 0.5 0.5\n")
    return good, nan, data, root


def _one_line_error(res, code: int = 2) -> str:
    assert res.exit_code == code, res.output
    assert "Traceback" not in res.output
    errors = [ln for ln in res.output.splitlines() if ln.startswith("Error:")]
    assert len(errors) == 1, res.output
    return errors[0]


def _rewrite(src: Path, dst: Path, edit) -> Path:
    """Copy the checkpoint zip ``src`` to ``dst`` with ``edit(name, bytes) -> bytes | None``."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", compression=zipfile.ZIP_DEFLATED) as zout:
        for name in zin.namelist():
            data = edit(name, zin.read(name))
            if data is not None:
                zout.writestr(name, data)
    return dst


@pytest.mark.parametrize("command", ["eval", "export", "predict"])
def test_nonfinite_weights_are_refused(tiny, command):
    _, nan, data, root = tiny
    args = {"eval": ["eval", str(nan), "--image-dir", str(data)],
            "export": ["export", str(nan), "-o", str(root / "nan.onnx")],
            "predict": ["predict", str(nan), str(data), "--out", str(root / "pred_nan")]}[command]
    line = _one_line_error(CliRunner().invoke(cli, args))
    assert str(nan) in line and "non-finite weights" in line
    assert not (root / "nan.onnx").exists()


def test_inspect_warns_about_nonfinite_weights(tiny):
    _, nan, _, _ = tiny
    res = CliRunner().invoke(cli, ["inspect", str(nan)])
    assert res.exit_code == 0, res.output
    assert "WARNING: 1 weight tensor(s) hold NaN/Inf" in res.output


def test_bad_crc_is_one_line_for_every_command(tiny, tmp_path):
    good, _, data, _ = tiny
    bad = tmp_path / "crc.keras"
    raw = bytearray(good.read_bytes())
    with zipfile.ZipFile(good) as zf:
        info = zf.getinfo("weights.npz")
    # flip a byte in the middle of the stored (compressed) weights: the CRC no longer matches
    start = info.header_offset + 30 + len(info.filename) + len(info.extra)
    raw[start + info.compress_size // 2] ^= 0xFF
    bad.write_bytes(bytes(raw))
    for args in (["inspect", str(bad)], ["eval", str(bad), "--image-dir", str(data)]):
        line = _one_line_error(CliRunner().invoke(cli, args))
        assert str(bad) in line and "damaged" in line


def test_missing_weight_is_named(tiny, tmp_path):
    good, _, data, _ = tiny

    def drop_w3(name, blob):
        if name != "weights.npz":
            return blob
        arrays = dict(np.load(io.BytesIO(blob)))
        del arrays["w0003"]
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        return buf.getvalue()

    bad = _rewrite(good, tmp_path / "missing.keras", drop_w3)
    for args in (["inspect", str(bad)], ["eval", str(bad), "--image-dir", str(data)]):
        line = _one_line_error(CliRunner().invoke(cli, args))
        assert "weight #3" in line and "missing" in line and str(bad) in line


def test_export_checks_the_output_folder_before_converting(tiny, tmp_path, monkeypatch):
    good, _, _, _ = tiny
    import utod.atomic as atomic
    import utod.export as export

    ro = tmp_path / "readonly"
    ro.mkdir()
    real_open = os.open

    def open_ro(path, flags, *a):
        if str(path).startswith(str(ro)) and flags & os.O_CREAT:
            raise OSError(errno.EROFS, "Read-only file system")
        return real_open(path, flags, *a)

    def no_conversion(*a, **k):
        raise AssertionError("converted before checking the output folder")

    monkeypatch.setattr(atomic.os, "open", open_ro)
    monkeypatch.setattr(export, "export_onnx", no_conversion)
    line = _one_line_error(CliRunner().invoke(cli, ["export", str(good), "-o", str(ro / "m.onnx")]))
    assert str(ro) in line and "read-only" in line
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    line = _one_line_error(CliRunner().invoke(cli, ["export", str(good), "-o", str(blocker / "m.onnx")]))
    assert str(blocker) in line


def test_predict_refuses_a_read_only_output_folder_before_any_work(tiny, tmp_path, monkeypatch):
    good, _, data, _ = tiny
    import utod.atomic as atomic

    real_open = os.open

    def open_ro(path, flags, *a):
        if str(path).startswith(str(tmp_path / "out")) and flags & os.O_CREAT:
            raise OSError(errno.EACCES, "Permission denied")
        return real_open(path, flags, *a)

    monkeypatch.setattr(atomic.os, "open", open_ro)
    line = _one_line_error(CliRunner().invoke(cli, ["predict", str(good), str(data), "--out", str(tmp_path / "out")]))
    assert "permission denied" in line and str(tmp_path / "out") in line


class _SameNameHead:
    """A plugin that registers a head under the built-in head's name."""

    def register_heads(self, register):
        from utod.defaults import DEFAULT_HEAD

        register(DEFAULT_HEAD, "utod_plugins.impl.heads:UltraTinyODHead", summary="shadowing head")


def test_head_name_reused_by_a_plugin_still_loads_the_checkpoint(tiny, install_registry):
    good, _, data, _ = tiny
    reg = install_registry((_SameNameHead(), "shadow", "shadow-plugin", "0.1"), load_entry_points=True)
    from utod.model.io import load_checkpoint, read_checkpoint_meta

    meta = read_checkpoint_meta(good)
    assert len([c for c in reg.components["head"] if c.name == meta["model_config"]["head"]]) == 2
    model, _ = load_checkpoint(good, reg)  # resolved by the provider the checkpoint records
    assert model.head_info["provider"] == meta["head"]["provider"]
    res = CliRunner().invoke(cli, ["eval", str(good), "--image-dir", str(data)])
    assert res.exit_code == 0, res.output
    assert "is not installed" not in res.output


def test_head_name_ambiguous_without_provider_says_so(tiny, install_registry, tmp_path):
    good, _, _, _ = tiny

    def forget_provider(name, blob):
        if name != "utod.json":
            return blob
        meta = json.loads(blob)
        meta["head"].pop("provider", None)
        return json.dumps(meta).encode()

    anon = _rewrite(good, tmp_path / "anon.keras", forget_provider)
    reg = install_registry((_SameNameHead(), "shadow", "shadow-plugin", "0.1"), load_entry_points=True)
    from utod.model.io import load_checkpoint

    with pytest.raises(CheckpointError, match="registered more than once") as err:
        load_checkpoint(anon, reg)
    assert "not installed" not in str(err.value)


class _BrokenIoU:
    """An IoU loss whose code raises while the train step is traced."""

    def __call__(self, pred, target):
        raise ValueError("shapes do not line up in my loss")


class _BrokenPlugin:
    def register_iou_losses(self, register):
        register("broken_iou", _BrokenIoU)


def test_plugin_error_in_the_train_step_is_one_line_naming_the_plugin(tiny, tmp_path, install_registry, monkeypatch):
    _, _, data, _ = tiny
    install_registry((_BrokenPlugin(), "broken", "broken-plugin", "0.3"), load_entry_points=True)
    monkeypatch.setenv("UTOD_CACHE_DIR", str(tmp_path / "cache"))
    args = ["train", "--image-dir", str(data), "--img-size", "32", "--cnn-width", "8", "--batch-size", "2",
            "--epochs", "1", "--iou-loss", "broken_iou", "--num-classes", "1"]
    res = CliRunner().invoke(cli, [*args, "--ckpt-out", str(tmp_path / "r1")])
    line = _one_line_error(res, code=1)
    assert "iou_loss plugin 'broken_iou' from broken-plugin 0.3 failed: ValueError: shapes do not line up" in line
    assert "test_integrity_cli.py:" in line and "utod -v" in line
    verbose = CliRunner().invoke(cli, ["-v", *args, "--ckpt-out", str(tmp_path / "r2")])
    assert verbose.exit_code == 1 and "Traceback" in verbose.output


def test_smallest_trainable_input_size_exports(tmp_path):
    """8x8 (the smallest --img-size train accepts) exports and passes the parity check."""
    from utod.model.config import ModelConfig
    from utod.model.detector import build_model
    from utod.model.io import save_checkpoint

    ckpt = save_checkpoint(tmp_path / "m8.keras", build_model(ModelConfig(img_size=(8, 8), num_classes=1,
                                                                          cnn_width=8)))
    for fmt in ("onnx", "tflite"):
        res = CliRunner().invoke(cli, ["export", str(ckpt), "--format", fmt])
        assert res.exit_code == 0, res.output
        assert "-> OK" in res.output


def test_eval_of_an_export_with_nonfinite_outputs_is_refused(tiny, tmp_path):
    """An exported file whose outputs are NaN (e.g. made before utod refused such weights)."""
    from utod.export import export_onnx
    from utod.model.io import load_checkpoint

    good, _, data, _ = tiny
    model, _ = load_checkpoint(good)
    values = model.get_weights()
    values[0] = np.full_like(values[0], np.nan)
    model.set_weights(values)
    onnx_path = tmp_path / "nan_raw.onnx"
    export_onnx(model, onnx_path, post=False)
    line = _one_line_error(CliRunner().invoke(cli, ["eval", str(onnx_path), "--image-dir", str(data)]))
    assert "outputs are non-finite" in line and "mAP" not in line
