"""Who builds the training batches: worker threads (default) or worker processes.

Both run :meth:`DetectionData.make_batch` ``(epoch, step)``; a batch depends only on
``(seed, epoch, position)``, so the two give identical batches in the same order and a
resumed run reproduces an uninterrupted one either way.

* ``threads`` (default): a thread pool in the training process. OpenCV releases the GIL,
  the rest of a sample's augmentation (NumPy on small arrays, Python) holds it —
  ``bench/bench_workers.py`` measures how much; on a few cores threads are the fastest
  (no copies, nothing to start).
* ``processes``: a pool of ``spawn``-started processes (no fork of a process that runs
  TensorFlow threads), each holding a replica of the pipeline: the decoded-image cache is
  the same read-only memmap file, the augmenter is rebuilt from the installed plugins and
  ``aug_ops``. Batches come back pickled (a 64 x 64 x 64 float32 batch is 3 MB). No GIL is
  shared, so throughput scales with cores: the choice for a GPU that consumes more images
  per second than the GIL lets threads produce (docs/gpu.md). Starting the processes
  costs about a second each (imports), once per run. As with any ``spawn`` pool, a script
  that starts training from Python must guard its entry point with
  ``if __name__ == "__main__":`` (the ``utod`` command does).
"""

from __future__ import annotations

import multiprocessing as mp
from collections.abc import Callable
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from typing import Any

import numpy as np

WORKER_MODES = ("threads", "processes")

_REPLICA: Any = None  # the pipeline replica of a worker process
_ORDER: tuple[int, np.ndarray] | None = None  # (epoch, order) cached in a worker process


def _init_process(state: dict[str, Any]) -> None:
    global _REPLICA
    from utod.data.pipeline import DetectionData

    _REPLICA = DetectionData.replica(state)


def _process_batch(epoch: int, step: int) -> dict[str, np.ndarray]:
    global _ORDER
    if _ORDER is None or _ORDER[0] != epoch:
        _ORDER = (epoch, _REPLICA.epoch_order(epoch))
    return _REPLICA.make_batch(epoch, step, _ORDER[1])


class BatchWorkers:
    """``submit(epoch, step) -> Future`` of a batch dict; ``close()``. See the module docstring."""

    def __init__(self, mode: str, count: int, make_batch: Callable[..., dict[str, np.ndarray]],
                 replica_state: Callable[[], dict[str, Any]]) -> None:
        if mode not in WORKER_MODES:
            from utod.errors import ConfigError

            raise ConfigError(f"data worker mode must be one of {', '.join(WORKER_MODES)}, got '{mode}'")
        self.mode = mode
        self.count = max(1, int(count))
        self._make_batch = make_batch
        self._replica_state = replica_state
        self._executor: Executor | None = None
        self._orders: dict[int, np.ndarray] = {}

    def _pool(self) -> Executor:
        if self._executor is None:
            if self.mode == "threads":
                self._executor = ThreadPoolExecutor(self.count, thread_name_prefix="utod-data")
            else:
                self._executor = ProcessPoolExecutor(self.count, mp_context=mp.get_context("spawn"),
                                                     initializer=_init_process, initargs=(self._replica_state(),))
        return self._executor

    def submit(self, epoch: int, step: int, order: np.ndarray) -> Future:
        """Batch ``step`` of ``epoch``; ``order`` is the epoch's order (threads use it as is,
        processes recompute the same order themselves instead of receiving it)."""
        if self.mode == "threads":
            return self._pool().submit(self._make_batch, epoch, step, order)
        return self._pool().submit(_process_batch, epoch, step)

    @staticmethod
    def result(future: Future) -> dict[str, np.ndarray]:
        """The batch of ``future``; a worker process that died (killed, out of memory) is a
        ``DataError`` saying so instead of a bare ``BrokenProcessPool``."""
        from concurrent.futures.process import BrokenProcessPool

        try:
            return future.result()
        except BrokenProcessPool as exc:
            from utod.errors import DataError

            raise DataError(f"a data worker process stopped unexpectedly ({exc}); it may have run out of memory "
                            "— fewer --num-workers, or --worker-mode threads") from exc

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
