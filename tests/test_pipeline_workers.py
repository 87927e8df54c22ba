"""Worker processes build exactly the batches worker threads build (same order, same fresh
augmentation per epoch), reopen the cache instead of rebuilding it, and report errors."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from utod.data.dataset import scan_dataset
from utod.data.pipeline import DetectionData, PipelineConfig
from utod.errors import ConfigError


@pytest.fixture(scope="module")
def items(tmp_path_factory):
    root = tmp_path_factory.mktemp("workers")
    rng = np.random.default_rng(3)
    for i in range(9):
        img = rng.integers(0, 80, (40, 48, 3), dtype=np.uint8)
        img[8:24, 10:30] = 255
        cv2.imwrite(str(root / f"im{i}.png"), img)
        (root / f"im{i}.txt").write_text(f"{i % 2} 0.42 0.4 0.42 0.4\n")
    (root / "broken.png").write_bytes(b"not an image")  # dropped: rows != items
    (root / "broken.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    return scan_dataset(root, log=None).items


def _cfg(tmp_path, mode):
    return PipelineConfig(img_size=(32, 32), batch_size=4, max_boxes=5, cache_dir=str(tmp_path / "cache"),
                          num_workers=2, worker_mode=mode,
                          aug_ops=[("HorizontalFlip", {"prob": 0.5}), ("RandomHSV", {"prob": 1.0}),
                                   ("Mosaic", {"prob": 0.5})])


def test_processes_give_the_thread_batches(items, tmp_path):
    threads = DetectionData(items, _cfg(tmp_path, "threads"), training=True, log=None)
    procs = DetectionData(items, _cfg(tmp_path, "processes"), training=True, log=None)
    assert threads.num_items == procs.num_items == 9
    try:
        for epoch in (0, 1):
            a = list(threads.numpy_batches(epoch))
            b = list(procs.numpy_batches(epoch))
            assert len(a) == len(b) == threads.steps_per_epoch
            for x, y in zip(a, b):
                for key in x:
                    np.testing.assert_array_equal(x[key], y[key])
        assert not np.array_equal(a[0]["image"], list(threads.numpy_batches(0))[0]["image"])  # fresh per epoch
        from concurrent.futures import ProcessPoolExecutor

        assert isinstance(procs._workers._executor, ProcessPoolExecutor)
        resumed = list(procs.numpy_batches(1, start_step=1))
        np.testing.assert_array_equal(resumed[0]["image"], b[1]["image"])
    finally:
        threads.close()
        procs.close()


def test_unknown_worker_mode_is_a_config_error(items, tmp_path):
    with pytest.raises(ConfigError, match="worker mode"):
        DetectionData(items, _cfg(tmp_path, "fibers"), training=True, log=None)


def test_a_killed_worker_process_is_a_data_error(items, tmp_path):
    import os
    import signal

    from utod.errors import DataError

    data = DetectionData(items, _cfg(tmp_path, "processes"), training=True, log=None)
    try:
        next(data.numpy_batches(0))  # the pool is running
        for pid in list(data._workers._executor._processes):
            os.kill(pid, signal.SIGKILL)
        with pytest.raises(DataError, match="data worker process stopped"):
            list(data.numpy_batches(1))
    finally:
        data.close()
