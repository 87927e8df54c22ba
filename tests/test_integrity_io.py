"""Atomic writes, the run-folder lock, fault injection and the image cache under faults
(disk full, read-only folders, a build killed half-way)."""

from __future__ import annotations

import errno
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from utod import atomic
from utod.errors import RunLockedError, StorageError
from utod.runlock import LOCK_NAME, RunLock


def _py(code: str, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, **(env_extra or {})}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=env,
                          timeout=120)


def _temps(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if atomic.TEMP_SUFFIX in p.name]


# ---------------------------------------------------------------- atomic writes
def test_atomic_write_replaces_whole_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "sub" / "config.yaml"
    atomic.write_text(target, "a: 1\n")
    atomic.write_text(target, "a: 2\n")
    assert target.read_text() == "a: 2\n"
    assert _temps(target.parent) == []


def test_failed_write_keeps_the_old_file(tmp_path):
    target = tmp_path / "results.csv"
    target.write_text("old\n")
    with pytest.raises(RuntimeError), atomic.atomic_open(target) as fh:
        fh.write("half a row")
        raise RuntimeError("writer crashed")
    assert target.read_text() == "old\n"
    assert _temps(tmp_path) == []


@pytest.mark.parametrize(("code", "words"), [(errno.ENOSPC, "no space left"), (errno.EROFS, "read-only"),
                                              (errno.EACCES, "permission denied")])
def test_os_errors_become_one_line_storage_errors_naming_the_path(tmp_path, monkeypatch, code, words):
    target = tmp_path / "model_config.json"
    target.write_text("{}")

    def failing_replace(src, dst):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(atomic.os, "replace", failing_replace)
    with pytest.raises(StorageError) as info:
        atomic.write_json(target, {"a": 1})
    msg = str(info.value)
    assert str(target) in msg and words in msg and "\n" not in msg
    assert target.read_text() == "{}" and _temps(tmp_path) == []


def test_json_refuses_non_finite_values(tmp_path):
    with pytest.raises(ValueError):
        atomic.write_json(tmp_path / "m.json", {"map50": float("nan")})
    assert not (tmp_path / "m.json").exists()


def test_check_writable_dir_names_the_folder(tmp_path, monkeypatch):
    real_open = os.open

    def ro_open(path, flags, *a):
        if flags & os.O_CREAT:
            raise OSError(errno.EROFS, "Read-only file system")
        return real_open(path, flags, *a)

    monkeypatch.setattr(atomic.os, "open", ro_open)
    with pytest.raises(StorageError, match=rf"cannot write into {tmp_path}: the file system is read-only"):
        atomic.check_writable_dir(tmp_path)


@pytest.mark.parametrize("point", ["write.temp/*", "write.replaced/config.yaml"])
def test_kill_at_a_write_point_leaves_old_or_new_never_torn(tmp_path, point):
    target = tmp_path / "config.yaml"
    target.write_text("old\n")
    res = _py(f"""
        from utod.atomic import write_text
        write_text({str(target)!r}, "new\\n")
        print("survived")
    """, {"UTOD_FAULT": point})
    assert res.returncode == -signal.SIGKILL, res.stdout + res.stderr
    assert "survived" not in res.stdout
    assert target.read_text() == ("old\n" if point.startswith("write.temp") else "new\n")
    if point.startswith("write.temp"):  # the killed writer's temp file is stale: cleaned
        assert len(_temps(tmp_path)) == 1
        assert atomic.clean_stale_temps(tmp_path) > 0
    assert _temps(tmp_path) == []


def test_fault_point_counts_hits(tmp_path):
    res = _py("""
        from utod.faults import fault_point
        for i in range(5):
            print(i, flush=True)
            fault_point("state.saved")
    """, {"UTOD_FAULT": "csv.*,state.saved:3"})
    assert res.returncode == -signal.SIGKILL
    assert res.stdout.split() == ["0", "1", "2"]


def test_clean_stale_temps_keeps_live_writers_files(tmp_path):
    live = tmp_path / f".x.{os.getpid()}.abcd{atomic.TEMP_SUFFIX}"
    live.write_text("in progress")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f".y.{int(dead.stdout)}.abcd{atomic.TEMP_SUFFIX}.png"
    stale.write_text("left by a killed writer")
    atomic.clean_stale_temps(tmp_path)
    assert live.exists() and not stale.exists()


# ---------------------------------------------------------------- run lock
def test_second_holder_is_refused_naming_the_first(tmp_path):
    run = tmp_path / "run"
    with RunLock(run):
        res = _py(f"""
            from utod.runlock import RunLock
            from utod.errors import RunLockedError
            try:
                RunLock({str(run)!r}).acquire()
            except RunLockedError as exc:
                print("REFUSED", exc)
        """)
        assert "REFUSED" in res.stdout, res.stderr
        assert f"pid {os.getpid()} on {socket.gethostname()}" in res.stdout and "started" in res.stdout
    assert not (run / LOCK_NAME).exists()  # released


def test_stale_lock_of_a_dead_process_is_taken_over(tmp_path):
    run = tmp_path / "run"
    res = _py(f"""
        from utod.runlock import RunLock
        RunLock({str(run)!r}).acquire()
        import os, signal
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    assert res.returncode == -signal.SIGKILL
    dead_pid = json.loads((run / LOCK_NAME).read_text())["pid"]
    said: list[str] = []
    with RunLock(run, log=said.append):
        assert json.loads((run / LOCK_NAME).read_text())["pid"] == os.getpid()
    assert said and f"pid {dead_pid}" in said[0] and "stale" in said[0]


def test_lock_from_another_host_is_respected(tmp_path):
    (tmp_path / LOCK_NAME).write_text(json.dumps({"pid": 1, "host": "elsewhere", "started": 0}))
    with pytest.raises(RunLockedError, match="pid 1 on elsewhere"):
        RunLock(tmp_path).acquire()


# ---------------------------------------------------------------- image cache
def _images(folder: Path, n: int = 6) -> list[str]:
    import cv2

    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        p = folder / f"im{i}.png"
        cv2.imwrite(str(p), np.full((20, 24, 3), i * 30, np.uint8))
        out.append(str(p))
    return out


def _resize(img, hw):
    import cv2

    return cv2.resize(img, (hw[1], hw[0]), interpolation=cv2.INTER_NEAREST)


def test_cache_refuses_a_full_disk_before_mapping_memory(tmp_path, monkeypatch):
    from utod.data import cache as cache_mod

    paths = _images(tmp_path / "imgs")
    monkeypatch.setattr(atomic.shutil, "disk_usage", lambda p: type("U", (), {"free": 1000})())
    with pytest.raises(StorageError, match=r"cannot write the image cache \(6 images at 32x32\) in .*MiB free"):
        cache_mod.ImageCache(paths, (32, 32), _resize, "b", cache_dir=tmp_path / "c", log=None)
    assert list((tmp_path / "c").iterdir()) == []


def test_cache_turns_enospc_on_allocation_into_a_storage_error(tmp_path, monkeypatch):
    from utod.data import cache as cache_mod

    def full(fd, off, n):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(cache_mod.os, "posix_fallocate", full, raising=False)
    paths = _images(tmp_path / "imgs")
    with pytest.raises(StorageError, match="no space left on the device"):
        cache_mod.ImageCache(paths, (32, 32), _resize, "b", cache_dir=tmp_path / "c", log=None)
    assert list((tmp_path / "c").iterdir()) == []


@pytest.mark.parametrize("point", ["cache.partial", "cache.built"])
def test_killed_cache_build_is_not_reused_and_its_temp_is_cleaned(tmp_path, point):
    paths = _images(tmp_path / "imgs")
    code = f"""
        import cv2
        from utod.data.cache import ImageCache
        resize = lambda img, hw: cv2.resize(img, (hw[1], hw[0]), interpolation=cv2.INTER_NEAREST)
        c = ImageCache({paths!r}, (32, 32), resize, "b", cache_dir={str(tmp_path / "c")!r}, log=print)
        print("built_now", c.built_now, int(c.images.sum()))
    """
    res = _py(code, {"UTOD_FAULT": point})
    assert res.returncode == -signal.SIGKILL
    assert not list((tmp_path / "c").glob("*.json"))  # no index: an incomplete cache is never used
    assert len(_temps(tmp_path / "c")) == 1
    again = _py(code)
    assert again.returncode == 0, again.stderr
    assert "built_now True" in again.stdout and "left by an interrupted write" in again.stdout
    assert _temps(tmp_path / "c") == []
    third = _py(code)
    assert "built_now False" in third.stdout
    assert third.stdout.split()[-1] == again.stdout.split()[-1]  # same pixels


# ---------------------------------------------------------------- train-state discovery
def _states(tmp_path):
    from utod._keras import tf

    run = tmp_path / "run"
    v = tf.Variable([1.0, 2.0])
    epoch = tf.Variable(0, dtype=tf.int64)
    ckpt = tf.train.Checkpoint(v=v, epoch=epoch)
    manager = tf.train.CheckpointManager(ckpt, str(run / "train_state"), max_to_keep=3)
    for n in (1, 2):
        v.assign([float(n), float(n)])
        epoch.assign(n)
        manager.save(checkpoint_number=n)
    v.assign([0.0, 0.0])
    return run, ckpt, manager, v


def test_truncated_newest_state_falls_back_to_the_older_one(tmp_path):
    from utod.runfolder import epochs_done, restore_newest_intact

    run, ckpt, manager, v = _states(tmp_path)
    data = next((run / "train_state").glob("ckpt-2.data-*"))
    data.write_bytes(data.read_bytes()[:5])
    said: list[str] = []
    got = restore_newest_intact(ckpt, run, manager.latest_checkpoint, log=said.append)
    assert got.endswith("ckpt-1") and v.numpy().tolist() == [1.0, 1.0]
    assert "ckpt-2" in said[0] and "cannot be used" in said[0]
    assert epochs_done(run) == 1


def test_lost_checkpoint_index_still_finds_the_states(tmp_path):
    from utod.runfolder import restore_newest_intact, saved_states

    run, ckpt, _, v = _states(tmp_path)
    (run / "train_state" / "checkpoint").unlink()
    assert [Path(p).name for p in saved_states(run)] == ["ckpt-2", "ckpt-1"]
    got = restore_newest_intact(ckpt, run, None, log=None)
    assert got.endswith("ckpt-2") and v.numpy().tolist() == [2.0, 2.0]


def test_no_readable_state_is_refused(tmp_path):
    from utod.errors import ConfigError
    from utod.runfolder import restore_newest_intact

    run, ckpt, manager, _ = _states(tmp_path)
    for data in (run / "train_state").glob("ckpt-*.data-*"):
        data.write_bytes(b"")
    with pytest.raises(ConfigError, match="no train state reads back.*nothing was changed"):
        restore_newest_intact(ckpt, run, manager.latest_checkpoint, log=None)


def test_nonfinite_variables_are_named():
    from utod._keras import tf
    from utod.finite import finite_metrics, nonfinite_variables

    ok, bad = tf.Variable([1.0], name="ok"), tf.Variable([np.inf], name="bad")
    assert nonfinite_variables([ok, bad, tf.Variable(3, name="int")]) == ["bad:0"]
    assert finite_metrics({"map50": 0.5, "epoch": 3}) and not finite_metrics({"val_loss": float("nan")})
