"""Distribution tested for real: a MirroredStrategy run on 2 logical CPU devices and a
MultiWorkerMirroredStrategy run with two worker processes on 127.0.0.1 both reproduce the
one-device run's numbers; only the chief writes the run folder; both workers end with the
same weights; a multi-worker run resumes.

Every image of the test dataset holds exactly one box, so each replica's half batch has as
many positives as the other and the mean of the replicas' losses equals the one-device
loss of the whole batch: any difference is a distribution bug, not the data split.
"""

from __future__ import annotations

import csv
import io
import json
import os
import socket
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

ARGS = ["--num-classes", "1", "--img-size", "32x32", "--cnn-width", "8", "--batch-size", "8", "--no-aug",
        "--lr", "0.003", "--seed", "1", "--val-split", "0.2"]
# columns that must agree with the one-device run (train: epoch means of the step values).
# train_grad_norm is the norm of the gradient the optimiser applies: a loss-scaling mistake
# (replicas' gradients summed without dividing their losses by the replica count, or divided
# twice) changes it by that factor even though AdamW's steps, and so the losses, barely move.
COMPARED = ("train_loss", "train_box", "train_obj", "train_cls", "train_grad_norm", "val_loss", "val_box", "val_obj",
            "val_cls")


def _one_box_dataset(folder: Path, n: int = 40, size: int = 32, seed: int = 0) -> Path:
    import cv2

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        img = (rng.random((size, size, 3)) * 60).astype(np.uint8)
        w, h = rng.uniform(0.3, 0.7, 2)
        cx, cy = rng.uniform(w / 2, 1 - w / 2), rng.uniform(h / 2, 1 - h / 2)
        x1, y1 = int((cx - w / 2) * size), int((cy - h / 2) * size)
        x2, y2 = int((cx + w / 2) * size), int((cy + h / 2) * size)
        img[y1:y2, x1:x2] = rng.integers(150, 255, 3)
        cv2.imwrite(str(folder / f"img{i:03d}.png"), img)
        (folder / f"img{i:03d}.txt").write_text(f"0 {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}\n")
    return folder


def _train(*args: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "from utod.cli import main; main()", "train", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, **(env or {})})


def _finish(proc: subprocess.Popen, timeout: float = 600) -> str:
    out, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, out
    return out


def _rows(run: Path) -> list[dict[str, str]]:
    with (run / "results.csv").open(newline="") as fh:
        return list(csv.DictReader(fh))


def _weights(checkpoint: Path) -> list[np.ndarray]:
    """Every weight of a .keras checkpoint, read from its npz (no TensorFlow needed)."""
    with zipfile.ZipFile(checkpoint) as zf:
        data = np.load(io.BytesIO(zf.read("weights.npz")))
        return [data[k] for k in sorted(data.files)]


def _assert_rows_match(rows, reference, rtol=1e-4):
    assert len(rows) == len(reference)
    for got, want in zip(rows, reference):
        for key in COMPARED:
            assert float(got[key]) == pytest.approx(float(want[key]), rel=rtol, abs=1e-6), (key, got, want)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return _one_box_dataset(tmp_path_factory.mktemp("onebox") / "data")


@pytest.fixture(scope="module")
def one_device(data, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("one") / "run"
    _finish(_train("--image-dir", str(data), *ARGS, "--epochs", "1", "--ckpt-out", str(run)))
    return run


def test_mirrored_on_two_cpu_replicas_matches_one_device(data, one_device, tmp_path):
    run = tmp_path / "mirrored"
    out = _finish(_train("--image-dir", str(data), *ARGS, "--epochs", "1", "--strategy", "mirrored",
                         "--ckpt-out", str(run), env={"UTOD_CPU_REPLICAS": "2"}))
    assert "on 2 replica(s)" in out
    _assert_rows_match(_rows(run), _rows(one_device))


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _multiworker(args: list[str], worker_dir: Path) -> list[str]:
    """Run ``utod train ARGS --strategy multiworker`` as 2 worker processes; worker 0 is the
    chief (no 'chief' task in the cluster), worker 1 writes to ``worker_dir``."""
    cluster = {"worker": [f"127.0.0.1:{p}" for p in _free_ports(2)]}
    procs = []
    for index in range(2):
        env = {"TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})}
        if index:
            env["UTOD_WORKER_DIR"] = str(worker_dir)
        procs.append(_train(*args, env=env))
    try:
        return [_finish(p) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()


@pytest.mark.slow
def test_multiworker_two_processes_chief_writes_identical_weights_and_resume(data, one_device, tmp_path):
    run, worker1, worker2 = tmp_path / "run", tmp_path / "worker-a", tmp_path / "worker-b"
    chief_out, worker_out = _multiworker(["--image-dir", str(data), *ARGS, "--epochs", "1", "--strategy",
                                          "multiworker", "--ckpt-out", str(run)], worker1)
    assert "on 2 replica(s)" in chief_out and "on 2 replica(s)" in worker_out
    assert f"this worker writes to {worker1}" in worker_out
    first_rows = _rows(run)
    _assert_rows_match(first_rows, _rows(one_device))  # 2 workers x 1 CPU = the one-device run

    # only the chief wrote the run folder: one TensorBoard event file (the file name carries the
    # writer's pid), and the other worker's outputs are all in its own folder
    assert len(list((run / "tensorboard").glob("events.out.tfevents.*"))) == 1
    assert len(list((worker1 / "tensorboard").glob("events.out.tfevents.*"))) == 1
    assert (worker1 / "last.keras").is_file() and (worker1 / "train_state").is_dir()
    first = _weights(run / "last.keras")
    for a, b in zip(first, _weights(worker1 / "last.keras")):
        np.testing.assert_array_equal(a, b)

    # resume to 2 epochs; worker 1 gets a new, empty folder: it must start from the chief's state
    chief_out, worker_out = _multiworker(["--resume", str(run), "--epochs", "2"], worker2)
    for out in (chief_out, worker_out):
        assert "1 epoch(s) done" in out, out
    rows = _rows(run)
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert rows[0] == first_rows[0]  # epoch 1 kept as it was
    final = _weights(run / "last.keras")
    for a, b in zip(final, _weights(worker2 / "last.keras")):
        np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a, b) for a, b in zip(first, final))  # training went on
    assert len(list((run / "tensorboard").glob("events.out.tfevents.*"))) == 2  # the chief's two runs


def test_multiworker_without_tf_config_is_a_clear_error(data, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    proc = subprocess.run([sys.executable, "-c", "from utod.cli import main; main()", "train", "--image-dir",
                           str(data), *ARGS, "--epochs", "1", "--strategy", "multiworker", "--ckpt-out",
                           str(tmp_path / "run")], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 2
    assert "TF_CONFIG" in proc.stderr + proc.stdout
    assert "Traceback" not in proc.stderr
