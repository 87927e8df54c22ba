"""Run-folder integrity: settings validated before any write, the run lock, resume refusing
what it cannot trust (changing nothing), the saved split as the truth, symlink loops and
undecodable images reported, not silently trained on."""

from __future__ import annotations

import csv
import errno
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from utod.cli import cli
from utod.data.synthetic import generate_shapes
from utod.runlock import LOCK_NAME

TINY = ["--img-size", "32x32", "--cnn-width", "8", "--batch-size", "4", "--log-interval", "1", "--num-workers", "1"]


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("UTOD_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture
def shapes(tmp_path) -> Path:
    d = tmp_path / "shapes"
    generate_shapes(d, num_images=12, size=32, seed=5)
    return d


def _train(*args: str):
    return CliRunner().invoke(cli, ["train", *TINY, *args])


def _one_line_error(res, code: int = 2) -> str:
    assert res.exit_code == code, res.output
    assert "Traceback" not in res.output
    errors = [ln for ln in res.output.splitlines() if ln.startswith("Error:")]
    assert len(errors) == 1, res.output
    return errors[0]


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _rows(run: Path) -> list[dict[str, str]]:
    with (run / "results.csv").open() as fh:
        return list(csv.DictReader(fh))


# ---------------------------------------------------------------- up-front validation
@pytest.mark.parametrize(("flags", "words"), [
    (["--epochs", "0"], "--epochs 0: must be >= 1"),
    (["--epochs", "-3"], "--epochs -3: must be >= 1"),
    (["--img-size", "12"], "--img-size 12x12"),
    (["--img-size", "64x"], "--img-size expects HxW"),
    (["--train-split", "1.0", "--val-split", "0.2"], "add up to 1.2, not 1"),
    (["--lr", "0"], "--lr 0: must be > 0"),
    (["--batch-size", "0"], "--batch-size 0: must be >= 1"),
    (["--ema-decay", "1.5"], "--ema-decay 1.5: must be > 0 and <= 1"),
    (["--distill-kl", "-1"], "--distill-kl -1"),
    (["--distill-temperature", "0"], "--distill-temperature 0: must be > 0"),
])
def test_bad_settings_are_refused_before_anything_is_written(shapes, tmp_path, flags, words):
    run = tmp_path / "run"
    line = _one_line_error(_train("--image-dir", str(shapes), "--ckpt-out", str(run), *flags))
    assert words in line
    assert not run.exists()
    assert not (tmp_path / "cache").exists()  # not even the image cache was built


def test_one_split_share_implies_the_other():
    from utod.train.setup import resolve_config

    cfg = resolve_config({"image_dir": "/data", "train_split": 1.0}, None).cfg
    assert (cfg.train_split, cfg.val_split) == (1.0, 0.0)  # no validation, not a renormalised 0.83
    cfg = resolve_config({"image_dir": "/data", "val_split": 0.3}, None).cfg
    assert cfg.train_split == pytest.approx(0.7)


# ---------------------------------------------------------------- run lock
def test_second_train_into_a_locked_run_folder_names_the_holder(shapes, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        started = time.time() - 5
        (run / LOCK_NAME).write_text(json.dumps({"pid": holder.pid, "host": socket.gethostname(),
                                                 "started": started}))
        line = _one_line_error(_train("--image-dir", str(shapes), "--epochs", "1", "--ckpt-out", str(run)))
        assert f"pid {holder.pid} on {socket.gethostname()}" in line and "in use" in line
        assert time.strftime("%Y-%m-%d %H:%M", time.localtime(started)) in line
        assert sorted(p.name for p in run.iterdir()) == [LOCK_NAME]  # nothing written
    finally:
        holder.kill()
        holder.wait()


def test_stale_lock_is_taken_over_and_released_at_the_end(shapes, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (run / LOCK_NAME).write_text(json.dumps({"pid": int(dead.stdout), "host": socket.gethostname(), "started": 0}))
    res = _train("--image-dir", str(shapes), "--epochs", "1", "--ckpt-out", str(run), "--val-split", "0")
    assert res.exit_code == 0, res.output
    assert "Taking over the stale lock" in res.output
    assert not (run / LOCK_NAME).exists()


def test_lock_of_a_live_holder_with_its_identity_is_respected(shapes, tmp_path):
    from utod.runlock import process_identity

    run = tmp_path / "run"
    run.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        ident = process_identity(holder.pid)
        if ident is None:
            pytest.skip("no /proc: process identities are not available here")
        (run / LOCK_NAME).write_text(json.dumps({"pid": holder.pid, "host": socket.gethostname(),
                                                 "started": time.time(), "process": ident}))
        line = _one_line_error(_train("--image-dir", str(shapes), "--epochs", "1", "--ckpt-out", str(run)))
        assert f"pid {holder.pid}" in line and "in use" in line
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.parametrize("whose", ["another live process", "this process"])
def test_lock_whose_pid_was_reused_is_stale(shapes, tmp_path, whose):
    """After a reboot or a container restart the lock's pid may name a live process (even this
    one) that did not write it: its boot id and start time differ, so the lock is taken over."""
    from utod.runlock import process_identity

    if process_identity(os.getpid()) is None:
        pytest.skip("no /proc: process identities are not available here")
    run = tmp_path / "run"
    run.mkdir()
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        pid = other.pid if whose == "another live process" else os.getpid()
        boot = process_identity(pid).split(":")[0]
        (run / LOCK_NAME).write_text(json.dumps({"pid": pid, "host": socket.gethostname(), "started": 0,
                                                 "process": f"{boot}:1"}))  # started at tick 1: not it
        res = _train("--image-dir", str(shapes), "--epochs", "1", "--ckpt-out", str(run), "--val-split", "0")
        assert res.exit_code == 0, res.output
        assert "Taking over the stale lock" in res.output
        assert not (run / LOCK_NAME).exists()
    finally:
        other.kill()
        other.wait()


def test_read_only_run_folder_is_one_line(shapes, tmp_path, monkeypatch):
    import utod.atomic as atomic

    run = tmp_path / "ro"
    real_open = os.open

    def open_ro(path, flags, *a):
        if str(path).startswith(str(run)) and flags & os.O_CREAT:
            raise OSError(errno.EROFS, "Read-only file system")
        return real_open(path, flags, *a)

    monkeypatch.setattr(atomic.os, "open", open_ro)
    monkeypatch.setattr("utod.runlock.os.link", lambda *a: (_ for _ in ()).throw(OSError(errno.EROFS, "ro")))
    line = _one_line_error(_train("--image-dir", str(shapes), "--epochs", "1", "--ckpt-out", str(run)))
    assert str(run) in line and "read-only" in line


# ---------------------------------------------------------------- resume refusals
@pytest.fixture
def finished(shapes, tmp_path) -> Path:
    """A finished 1-epoch run."""
    run = tmp_path / "done"
    res = _train("--image-dir", str(shapes), "--epochs", "1", "--ckpt-out", str(run))
    assert res.exit_code == 0, res.output
    return run


def test_resume_refusals_change_nothing(finished, tmp_path):
    run = finished
    before = _snapshot(run)
    cases = [
        (["--epochs", "1"], "the run is complete (1 of 1 epochs)"),
        (["--epochs", "0"], "--epochs 0: must be >= 1"),
        (["--ckpt-out", str(tmp_path / "elsewhere")], "a resumed run stays in its own folder"),
        (["--img-size", "64"], "cannot change --img-size"),
    ]
    for flags, words in cases:
        line = _one_line_error(CliRunner().invoke(cli, ["train", "--resume", str(run), *flags]))
        assert words in line, flags
        assert _snapshot(run) == before, flags
    assert not (tmp_path / "elsewhere").exists()

    # --img-size 32 is the run's 32x32: not a change (resolution only, no training here)
    from utod.train.setup import resolve_config

    assert resolve_config({"resume": str(run), "img_size": "32", "epochs": 3}, None).cfg.epochs == 3


def test_epochs_below_done_is_refused(finished, shapes):
    res = CliRunner().invoke(cli, ["train", "--resume", str(finished), "--epochs", "2"])
    assert res.exit_code == 0, res.output
    line = _one_line_error(CliRunner().invoke(cli, ["train", "--resume", str(finished), "--epochs", "1"]))
    assert "--epochs 1 is below the 2 epochs already done" in line


@pytest.mark.parametrize("damage", ["torn", "empty", "not_mapping", "bad_yaml"])
def test_torn_config_is_refused_and_nothing_changes(finished, damage):
    cfg = finished / "config.yaml"
    text = cfg.read_text()
    cfg.write_text({"torn": text[: len(text) // 2].rsplit("\n", 1)[0] + "\n", "empty": "",
                    "not_mapping": "- a\n- b\n", "bad_yaml": "epochs: [1, 2\n"}[damage])
    before = _snapshot(finished)
    line = _one_line_error(CliRunner().invoke(cli, ["train", "--resume", str(finished), "--epochs", "3"]))
    assert f"cannot resume {finished}" in line and "nothing was changed" in line
    assert _snapshot(finished) == before


def test_lost_train_state_does_not_restart_and_delete_checkpoints(finished):
    shutil.rmtree(finished / "train_state")
    before = _snapshot(finished)
    line = _one_line_error(CliRunner().invoke(cli, ["train", "--resume", str(finished), "--epochs", "3"]))
    assert "no train state" in line and "nothing was changed" in line
    assert _snapshot(finished) == before
    assert (finished / "best.keras").is_file() and (finished / "last.keras").is_file()


def test_saved_split_is_the_truth_on_resume(finished, shapes):
    train_before = (finished / "train.txt").read_text()
    val_before = (finished / "val.txt").read_text()
    gone = Path(train_before.split()[0])
    gone.unlink()
    gone.with_suffix(".txt").unlink()
    generate_shapes(shapes / "more", num_images=4, size=32, seed=9)
    res = CliRunner().invoke(cli, ["train", "--resume", str(finished), "--epochs", "2"])
    assert res.exit_code == 0, res.output
    assert "1 image(s) of the saved split are gone, 4 new image(s) are not used" in res.output
    assert (finished / "train.txt").read_text() == train_before
    assert (finished / "val.txt").read_text() == val_before
    issues = (finished / "data_issues.txt").read_text()
    assert f"{gone}: in the run's saved split but no longer in the dataset" in issues
    assert "added to the dataset after the run's split was made" in issues
    assert [r["epoch"] for r in _rows(finished)] == ["1", "2"]


# ---------------------------------------------------------------- dataset faults
def test_symlink_loop_does_not_duplicate_images(shapes, tmp_path):
    os.symlink(shapes, shapes / "loop")
    os.symlink(shapes / "loop", shapes / "again")
    run = tmp_path / "run"
    res = _train("--image-dir", str(shapes), "--epochs", "1", "--ckpt-out", str(run))
    assert res.exit_code == 0, res.output
    listed = (run / "train.txt").read_text().split() + (run / "val.txt").read_text().split()
    assert len(listed) == 12 == len({os.path.realpath(p) for p in listed})
    issues = (run / "data_issues.txt").read_text()
    assert "symlink loop" in issues and "folder skipped" in issues


def test_undecodable_images_are_reported_counted_and_left_out(shapes, tmp_path):
    broken = sorted(shapes.glob("*.png"))[:2]
    for p in broken:  # a PNG header, then garbage: passes the header check, fails decoding
        p.write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(200))
    run = tmp_path / "run"
    res = _train("--image-dir", str(shapes), "--epochs", "1", "--ckpt-out", str(run))
    assert res.exit_code == 0, res.output
    assert "2 image(s) cannot be decoded and are skipped (skipped: 2 images in all" in res.output
    issues = (run / "data_issues.txt").read_text()
    listed = (run / "train.txt").read_text() + (run / "val.txt").read_text()
    for p in broken:
        assert f"{p}:1: cannot decode image — image skipped" in issues
        assert str(p) not in listed
    assert len(listed.split()) == 10
    assert yaml.safe_load((run / "config.yaml").read_text())["epochs"] == 1


def test_resume_survives_a_lost_index_and_a_truncated_newest_state(shapes, tmp_path):
    run = tmp_path / "states"
    res = _train("--image-dir", str(shapes), "--epochs", "1", "--ckpt-out", str(run), "--save-interval", "1")
    assert res.exit_code == 0, res.output
    from utod.runfolder import saved_states

    newest, older = saved_states(run)[:2]
    (run / "train_state" / "checkpoint").unlink()  # the index is gone: the files still count
    data = next((run / "train_state").glob(f"{Path(newest).name}.data-*"))
    data.write_bytes(data.read_bytes()[:10])  # and the newest state is cut short
    res = CliRunner().invoke(cli, ["train", "--resume", str(run), "--epochs", "2"])
    assert res.exit_code == 0, res.output
    assert f"resumed from the older {older}" in res.output
    assert (run / "best.keras").is_file()
    assert [r["epoch"] for r in _rows(run)] == ["1", "2"]


def test_unwritable_cache_folder_is_one_line(shapes, tmp_path, monkeypatch):
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("x")
    monkeypatch.setenv("UTOD_CACHE_DIR", str(blocker))
    line = _one_line_error(_train("--image-dir", str(shapes), "--epochs", "1", "--ckpt-out", str(tmp_path / "r")))
    assert str(blocker) in line
    assert not (tmp_path / "r" / ".utod.lock").exists()
