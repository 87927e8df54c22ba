"""`utod train` end to end on tiny data: run folder, tracing, resume after kill -9,
mirrored strategy, non-finite loss, config precedence."""

from __future__ import annotations

import csv
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from utod.cli import cli
from utod.data.synthetic import generate_shapes
from utod.errors import ConfigError

TINY = ["--img-size", "64x64", "--cnn-width", "8", "--batch-size", "8", "--lr", "0.003", "--log-interval", "1"]


@pytest.fixture(scope="module")
def shapes_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("shapes")
    generate_shapes(d, num_images=40, size=64, seed=3)
    return d


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("UTOD_CACHE_DIR", str(tmp_path / "cache"))


def _rows(run: Path) -> list[dict[str, str]]:
    with (run / "results.csv").open() as fh:
        return list(csv.DictReader(fh))


def test_train_writes_the_run_folder_and_traces_once(shapes_dir, tmp_path):
    from utod.train.run import run_training

    run = tmp_path / "run"
    trainer = run_training({
        "image_dir": str(shapes_dir), "names": str(shapes_dir / "obj.names"), "epochs": 2, "img_size": "64x64",
        "cnn_width": 8, "batch_size": 8, "ckpt_out": str(run), "use_ema": True, "assigner": "simota",
        "use_improved_head": True, "use_iou_aware_head": True, "auto_anchors": True, "num_anchors": 4,
    })
    assert trainer.steps.train.experimental_get_tracing_count() == 1
    for name in ("config.yaml", "train.txt", "val.txt", "plugins.json", "model_config.json", "results.csv",
                 "results.png"):
        assert (run / name).is_file(), name
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    assert len(list(run.glob("last_utod_0002_map_*.keras"))) == 1
    assert list(run.glob("best_utod_*_map_*.keras"))
    assert (run / "best.keras").is_file() and (run / "last.keras").is_file()
    rows = _rows(run)
    assert [r["epoch"] for r in rows] == ["1", "2"]
    for r in rows:  # every epoch validated: finite loss, mAPs in range, mAP@0.5 >= mAP@0.5:0.95
        assert math.isfinite(float(r["val_loss"])) and float(r["val_loss"]) > 0
        assert 0.0 <= float(r["map50_95"]) <= float(r["map50"]) <= 1.0
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    assert cfg["assigner"] == "simota" and cfg["epochs"] == 2
    used = {(p["kind"], p["name"]): p for p in json.loads((run / "plugins.json").read_text())}
    assert used[("assigner", "simota")]["provider"] == "utod"
    assert used[("head", "improved")]["version"]
    n_train = len((run / "train.txt").read_text().split())
    n_val = len((run / "val.txt").read_text().split())
    assert (n_train, n_val) == (32, 8)

    from utod.model.io import load_checkpoint

    model, meta = load_checkpoint(next(run.glob("last_utod_0002_*.keras")))
    assert model.num_anchors == 4 and model.has_quality
    assert meta["extra"]["epoch"] == 2 and meta["extra"]["use_ema"] is True
    assert meta["extra"]["step"] == 2 * (32 // 8)


def test_new_run_does_not_overwrite_an_existing_one(shapes_dir, tmp_path):
    res = CliRunner().invoke(cli, ["train", "--image-dir", str(shapes_dir), *TINY, "--epochs", "1",
                                   "--ckpt-out", str(tmp_path / "r"), "--val-split", "0"])
    assert res.exit_code == 0, res.output
    again = CliRunner().invoke(cli, ["train", "--image-dir", str(shapes_dir), *TINY, "--epochs", "1",
                                     "--ckpt-out", str(tmp_path / "r")])
    assert again.exit_code == 2
    assert "already holds a training run" in again.output and "--resume" in again.output


def test_unknown_component_is_rejected_before_any_work(tmp_path):
    res = CliRunner().invoke(cli, ["train", "--image-dir", str(tmp_path), "--assigner", "simtoa",
                                   "--ckpt-out", str(tmp_path / "r")])
    assert res.exit_code == 2
    assert "unknown assigner 'simtoa'. Did you mean 'simota'?" in res.output
    assert not (tmp_path / "r").exists()


def test_config_file_and_cli_precedence(tmp_path):
    from utod.train.setup import resolve_config

    cfg_file = tmp_path / "run.yaml"
    cfg_file.write_text("image_dir: /data\nepochs: 7\nlr: 0.01\nassigner: {name: simota, topk: 12}\n")
    resolved = resolve_config({"lr": 0.02}, str(cfg_file))
    cfg = resolved.cfg
    assert (cfg.epochs, cfg.lr, cfg.assigner, cfg.assigner_opt) == (7, 0.02, "simota", ["topk=12"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("epoch: 3\n")
    with pytest.raises(ConfigError, match="unknown setting 'epoch'. Did you mean 'epochs'"):
        resolve_config({}, str(bad))


def test_nonfinite_loss_stops_naming_the_step(shapes_dir, tmp_path, install_registry):
    from utod.train.loop import NonFiniteLossError
    from utod.train.run import run_training

    class NaNIoU:
        """Always NaN."""

        def __call__(self, pred, target):
            from utod._keras import tf

            return tf.reduce_sum(pred, -1) * float("nan")

    class Plugin:
        def register_iou_losses(self, register):
            register("naniou", NaNIoU)

    install_registry((Plugin(), "nan", "nan-plugin", "0.1"), load_entry_points=True)
    with pytest.raises(NonFiniteLossError, match=r"non-finite loss at step 1 \(epoch 1, batch 1\)"):
        run_training({"image_dir": str(shapes_dir), "epochs": 1, "img_size": "64x64", "cnn_width": 8,
                      "batch_size": 8, "ckpt_out": str(tmp_path / "nan"), "iou_loss": "naniou", "num_classes": 3})


def _utod(*args: str, env_extra: dict | None = None, **kw) -> subprocess.Popen:
    env = {**os.environ, **(env_extra or {})}
    return subprocess.Popen([sys.executable, "-c", "from utod.cli import main; main()", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, **kw)


RESUME_ARGS = [*TINY, "--epochs", "3", "--use-ema"]  # 4 steps per epoch on shapes_dir


@pytest.fixture(scope="module")
def uninterrupted(shapes_dir, tmp_path_factory) -> list[dict[str, str]]:
    """results.csv rows of the run that the interrupted-and-resumed runs must reproduce."""
    root = tmp_path_factory.mktemp("uninterrupted")
    proc = _utod("train", "--image-dir", str(shapes_dir), *RESUME_ARGS, "--ckpt-out", str(root / "run"),
                 env_extra={"UTOD_CACHE_DIR": str(root / "cache")})
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out
    return _rows(root / "run")


def _resume_and_compare(run: Path, uninterrupted: list[dict[str, str]]) -> str:
    """Resume ``run`` to the end; it must be the uninterrupted run: same batches, optimiser and
    EMA state, so the same per-epoch losses (the interrupted epoch mixes saved and new step
    sums) and metrics, and no step lost or repeated."""
    from utod.model.io import read_checkpoint_meta

    resumed = _utod("train", "--resume", str(run))
    out, _ = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, out
    assert "Resumed" in out
    assert [r["epoch"] for r in _rows(run)] == ["1", "2", "3"]
    meta = read_checkpoint_meta(next(run.glob("last_utod_0003_*.keras")))
    assert meta["extra"]["step"] == 3 * 4
    for got, want in zip(_rows(run), uninterrupted, strict=True):
        for key in ("train_loss", "train_box", "train_obj", "train_cls", "val_loss", "map50", "map50_95"):
            assert float(got[key]) == pytest.approx(float(want[key]), rel=1e-4, abs=1e-6), (got["epoch"], key)
    return out


def test_resume_after_kill_9_continues_where_it_stopped(shapes_dir, tmp_path, uninterrupted):
    run = tmp_path / "killed"
    proc = _utod("train", "--image-dir", str(shapes_dir), *RESUME_ARGS, "--ckpt-out", str(run),
                 "--save-interval", "1")
    state = run / "train_state" / "checkpoint"
    deadline = time.time() + 240
    killed_at = None
    try:
        while time.time() < deadline and proc.poll() is None:
            if state.is_file():
                text = state.read_text()
                # wait for a save in the middle of epoch 2 (step 6 or 7)
                steps = [int(s.rsplit("-", 1)[1].strip('"')) for s in text.split() if s.strip('"').startswith("ckpt-")]
                if steps and max(steps) >= 6:
                    killed_at = max(steps)
                    proc.send_signal(signal.SIGKILL)
                    break
            time.sleep(0.05)
    finally:
        proc.wait(timeout=60)
    assert killed_at is not None, proc.stdout.read()
    assert not list(run.glob("*.tmp"))
    _resume_and_compare(run, uninterrupted)


def test_sigterm_saves_the_position_and_resume_continues(shapes_dir, tmp_path, uninterrupted):
    """No periodic saves: the state written on SIGTERM alone must hold the epoch position."""
    run = tmp_path / "stopped"
    proc = _utod("train", "--image-dir", str(shapes_dir), *RESUME_ARGS, "--ckpt-out", str(run),
                 "--save-interval", "0")
    deadline = time.time() + 240
    try:
        while time.time() < deadline and proc.poll() is None:
            if (run / "results.csv").is_file() and len(_rows(run)) == 1:  # epoch 2 has begun
                proc.send_signal(signal.SIGTERM)
                break
            time.sleep(0.02)
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0 and "State saved to" in out, out
    resumed_out = _resume_and_compare(run, uninterrupted)
    assert "epoch(s) done" in resumed_out


def test_mirrored_strategy_on_two_logical_cpus(shapes_dir, tmp_path):
    proc = _utod("train", "--image-dir", str(shapes_dir), *TINY, "--epochs", "1", "--strategy", "mirrored",
                 "--ckpt-out", str(tmp_path / "mirror"), env_extra={"UTOD_CPU_REPLICAS": "2"})
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out
    assert "on 2 replica(s)" in out
    assert _rows(tmp_path / "mirror")[0]["epoch"] == "1"


def test_distillation_from_a_wider_teacher(shapes_dir, tmp_path):
    from utod.train.run import run_training

    base = {"image_dir": str(shapes_dir), "epochs": 1, "img_size": "64x64", "batch_size": 8, "val_split": 0.0}
    run_training({**base, "cnn_width": 16, "ckpt_out": str(tmp_path / "teacher")})
    teacher = next((tmp_path / "teacher").glob("last_utod_0001_*.keras"))
    student = run_training({**base, "cnn_width": 8, "ckpt_out": str(tmp_path / "student"),
                            "teacher_ckpt": str(teacher), "distill_weight": 1.0, "feature_distill_weight": 0.5})
    assert student.distill.trainable_variables  # 1x1 adapter 32 -> 64 channels, trained with the model
    rows = _rows(tmp_path / "student")
    assert float(rows[0]["train_distill"]) > 0


@pytest.mark.parametrize("switch", ["use_amp", "use_xla"])
def test_mixed_precision_and_xla_switches_train(shapes_dir, tmp_path, switch):
    from utod._keras import keras
    from utod.train.run import run_training

    trainer = run_training({"image_dir": str(shapes_dir), "epochs": 1, "img_size": "64x64", "cnn_width": 8,
                            "batch_size": 8, "val_split": 0.0, "ckpt_out": str(tmp_path / switch), switch: True})
    assert trainer.steps.train.experimental_get_tracing_count() == 1
    assert keras.mixed_precision.global_policy().name == "float32"  # not leaked
    if switch == "use_amp":
        assert trainer.model.compute_dtype == "float16"
    assert list((tmp_path / switch).glob("last_utod_0001_*.keras"))


def test_resume_refuses_to_change_the_network_or_data_stream(tmp_path):
    from utod.config import TrainConfig, save_config
    from utod.train.setup import resolve_config

    run = tmp_path / "run"
    run.mkdir()
    save_config(TrainConfig(image_dir="/data", cnn_width=16, epochs=5), run / "config.yaml")
    ok = resolve_config({"resume": str(run), "epochs": 9}, None)
    assert (ok.cfg.epochs, ok.cfg.cnn_width, ok.resuming) == (9, 16, True)
    with pytest.raises(ConfigError, match="cannot change --cnn-width"):
        resolve_config({"resume": str(run), "cnn_width": 32}, None)
    yaml_file = tmp_path / "more.yaml"
    yaml_file.write_text("anchors: '0.1,0.1'\n")
    with pytest.raises(ConfigError, match="cannot change --anchors"):
        resolve_config({"resume": str(run)}, str(yaml_file))


@pytest.mark.parametrize(("batch", "size", "expected"), [
    (64, (64, 64), 128), (16, (64, 64), 64), (8, (64, 64), 32), (1, (64, 64), 4), (256, (64, 64), 256),
    (16, (128, 128), 32), (64, (640, 640), 64), (3, (32, 48), 12),
])
def test_validation_batch_is_a_multiple_of_the_training_batch_within_the_pixel_budget(batch, size, expected):
    from utod.train.components import EVAL_PIXEL_BUDGET, eval_batch_size

    got = eval_batch_size(batch, size)
    assert got == expected and got % batch == 0
    assert got == batch or got * size[0] * size[1] <= EVAL_PIXEL_BUDGET
