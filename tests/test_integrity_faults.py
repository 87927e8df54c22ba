"""Fault injection (``UTOD_FAULT``, :mod:`utod.faults`): ``utod train`` is killed with SIGKILL
at a named point (an atomic write, the train-state save, the results.csv append, the image
cache build); running it again (``--resume`` once the run folder has a config) must give
exactly the uninterrupted run's results.csv and final weights, and leave no temporary file.

The default run covers one point of each kind; ``-m slow`` sweeps every point."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from utod.atomic import TEMP_SUFFIX
from utod.data.synthetic import generate_shapes

ARGS = ["--img-size", "32x32", "--cnn-width", "8", "--batch-size", "4", "--epochs", "2", "--save-interval", "1",
        "--use-ema", "--num-workers", "1", "--log-interval", "1"]
VOLATILE = ("time_s", "img_per_s")  # wall-clock columns


def _utod(args: list[str], cache: Path, fault: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "UTOD_FAULT"}
    env["UTOD_CACHE_DIR"] = str(cache)
    if fault:
        env["UTOD_FAULT"] = fault
    return subprocess.run([sys.executable, "-c", "from utod.cli import main; main()", *args], env=env,
                          capture_output=True, text=True, timeout=600)


def _rows(run: Path) -> list[dict[str, str]]:
    with (run / "results.csv").open() as fh:
        return [{k: v for k, v in r.items() if k not in VOLATILE} for r in csv.DictReader(fh)]


def _weights(path: Path) -> list[np.ndarray]:
    from utod.model.io import read_checkpoint_meta, read_weights

    return read_weights(path, read_checkpoint_meta(path))


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("fault_data")
    generate_shapes(d, num_images=12, size=32, seed=11)
    return d


@pytest.fixture(scope="module")
def reference(data, tmp_path_factory) -> tuple[list[dict[str, str]], list[np.ndarray]]:
    root = tmp_path_factory.mktemp("fault_ref")
    run = root / "run"
    res = _utod(["train", "--image-dir", str(data), *ARGS, "--ckpt-out", str(run)], root / "cache")
    assert res.returncode == 0, res.stdout + res.stderr
    return _rows(run), _weights(run / "last.keras")


def _kill_and_recover(point: str, data: Path, tmp_path: Path, reference) -> None:
    run, cache = tmp_path / "run", tmp_path / "cache"
    first = ["train", "--image-dir", str(data), *ARGS, "--ckpt-out", str(run)]
    killed = _utod(first, cache, fault=point)
    assert killed.returncode == -signal.SIGKILL, f"{point} never reached:\n{killed.stdout}{killed.stderr}"
    # what a user does next: resume the run, or (no config.yaml written yet) run it again
    again = ["train", "--resume", str(run)] if (run / "config.yaml").is_file() else first
    done = _utod(again, cache)
    finished = done.returncode == 2 and "the run is complete" in done.stderr  # killed after its last save
    assert done.returncode == 0 or finished, f"after a kill at {point}:\n{done.stdout}{done.stderr}"
    rows, weights = reference
    assert _rows(run) == rows, point
    got = _weights(run / "last.keras")
    assert len(got) == len(weights)
    for a, b in zip(got, weights):
        np.testing.assert_array_equal(a, b, err_msg=point)
    leftovers = [p for p in [*run.rglob("*"), *cache.rglob("*")] if TEMP_SUFFIX in p.name]
    assert leftovers == [], leftovers


# one point of each kind: an atomic write (before its rename), a results.csv row, the
# resumable state, the image cache
DEFAULT_POINTS = ["write.temp/last_utod_0001_*", "csv.appended", "state.saved:3", "cache.partial"]
SWEEP_POINTS = [
    "write.temp/config.yaml", "write.replaced/config.yaml", "write.temp/train.txt", "write.replaced/val.txt",
    "write.replaced/last_utod_0001_*", "write.temp/best_utod_*", "write.replaced/best.keras",
    "write.temp/results.csv", "write.replaced/results.csv:2", "csv.appended:2", "state.saved", "state.saved:2",
    "state.saved:4", "cache.built", "write.temp/results.png",  # 4 saves: 2 epochs x (1 interval + end)
]


@pytest.mark.parametrize("point", DEFAULT_POINTS)
def test_kill_at_a_fault_point_then_resume_reproduces_the_run(point, data, tmp_path, reference):
    _kill_and_recover(point, data, tmp_path, reference)


@pytest.mark.slow
@pytest.mark.parametrize("point", SWEEP_POINTS)
def test_fault_sweep(point, data, tmp_path, reference):
    _kill_and_recover(point, data, tmp_path, reference)
