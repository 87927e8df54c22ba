"""Input-pipeline CPU cost per image and worker scaling: threads vs processes (prints numbers;
not a test). The measurements behind docs/gpu.md.

Generates ``--images`` 640x640 JPEGs with labels, builds the training pipeline (default
augmentation, 64x64, batch 64; the decode cache is built first and not timed), then:

* CPU per image: ``make_batch`` run serially in this process, process CPU time / images;
* throughput with 1..``--max-workers`` worker threads and worker processes (the same
  ``make_batch`` calls; processes are forked after the cache is built and share it);
* GIL time per image: CPU time inside OpenCV calls (which release the GIL) is measured with
  a profile hook; the rest of the CPU per image (Python, NumPy on small arrays) is counted
  as holding the GIL — an upper bound, and what caps worker threads at 1 / (GIL time per
  image) images per second whatever the core count.

A busy machine moves every number: the load average is printed; compare ratios measured in
the same run (they are interleaved and repeated ``--repeats`` times; medians are printed).

    python bench/bench_workers.py [--images 256] [--batches 8] [--max-workers 2] [--repeats 3]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

from bench_export import load_average  # same folder: run as `python bench/bench_workers.py`
from bench_pipeline import make_images

_DATA = None  # the pipeline, inherited by forked worker processes


def _batch(args: tuple[int, int]) -> int:
    epoch, step = args
    return int(_DATA.make_batch(epoch, step)["image"].shape[0])


def serial_cost(data, batches: int, epoch: int) -> tuple[float, float]:
    """(CPU ms per image, wall ms per image) of make_batch in this thread."""
    n = 0
    c0, t0 = time.process_time(), time.perf_counter()
    for s in range(batches):
        n += _batch((epoch, s % data.steps_per_epoch))
    return (time.process_time() - c0) * 1e3 / n, (time.perf_counter() - t0) * 1e3 / n


def pooled_rate(kind: str, workers: int, batches: int, epoch: int) -> float:
    """Images per second with ``workers`` threads or processes building ``batches`` batches."""
    steps = _DATA.steps_per_epoch
    jobs = [(epoch, s % steps) for s in range(batches)]
    if kind == "threads":
        pool = ThreadPoolExecutor(workers)
    else:
        pool = ProcessPoolExecutor(workers, mp_context=mp.get_context("fork"))
        list(pool.map(_batch, [(epoch, 0)] * workers))  # start the processes before timing
    with pool:
        t0 = time.perf_counter()
        n = sum(pool.map(_batch, jobs))
        return n / (time.perf_counter() - t0)


def gil_bound(data, batches: int, epoch: int) -> tuple[float, float]:
    """(CPU ms per image inside OpenCV calls, CPU ms per image in total) of serial make_batch.

    OpenCV releases the GIL inside its functions; everything else (Python, NumPy calls on
    these small arrays) is counted as holding it, so ``total - opencv`` is an upper bound on
    the GIL time per image. Process CPU time is used, so a busy machine does not inflate it
    (only this thread and OpenCV's own pool run here)."""
    import sys

    import cv2

    cv2_funcs = {id(getattr(cv2, name)) for name in dir(cv2) if callable(getattr(cv2, name))}
    in_cv2 = [0.0]
    started: list[float] = []

    def hook(frame, event, arg):  # noqa: ARG001 (sys.setprofile signature)
        if event == "c_call" and id(arg) in cv2_funcs:
            started.append(time.process_time())
        elif event in ("c_return", "c_exception") and id(arg) in cv2_funcs and started:
            in_cv2[0] += time.process_time() - started.pop()

    n = 0
    sys.setprofile(hook)
    try:
        for s in range(batches):
            n += _batch((epoch, s % data.steps_per_epoch))
    finally:
        sys.setprofile(None)
    total_cpu, _ = serial_cost(data, batches, epoch)  # without the hook's overhead
    return in_cv2[0] * 1e3 / n, total_cpu


def main() -> None:
    global _DATA
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=256)
    ap.add_argument("--batches", type=int, default=8, help="batches of 64 per measurement")
    ap.add_argument("--max-workers", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    from utod.data.augment import load_aug_config
    from utod.data.dataset import scan_dataset
    from utod.data.pipeline import DetectionData, PipelineConfig
    from utod.registry import get_registry

    with tempfile.TemporaryDirectory() as tmp:
        img_dir = Path(tmp) / "images"
        img_dir.mkdir()
        make_images(img_dir, args.images)
        scan = scan_dataset(img_dir, log=None)
        cfg = PipelineConfig(img_size=(64, 64), batch_size=64, aug_ops=load_aug_config(None),
                             cache_dir=str(Path(tmp) / "cache"))
        _DATA = DetectionData(scan.items, cfg, get_registry(), training=True, log=None)
        load_before = load_average()
        results: dict[str, list[float]] = {}
        for r in range(args.repeats):
            epoch = 1 + r
            cpu, wall = serial_cost(_DATA, args.batches, epoch)
            results.setdefault("cpu_ms", []).append(cpu)
            results.setdefault("wall_ms", []).append(wall)
            for workers in range(1, args.max_workers + 1):
                for kind in ("threads", "processes"):
                    results.setdefault(f"{kind}{workers}", []).append(pooled_rate(kind, workers, args.batches, epoch))
            cv2_ms, total_ms = gil_bound(_DATA, args.batches, epoch)
            results.setdefault("cv2_ms", []).append(cv2_ms)
            results.setdefault("total_ms", []).append(total_ms)
        _DATA.close()
    med = {k: statistics.median(v) for k, v in results.items()}
    print(f"\n=== bench_workers (default augmentation, 64x64, batch 64; {os.cpu_count()} cores; "
          f"load average before {load_before}, after {load_average()}; medians of {args.repeats}) ===")
    print(f"serial make_batch: {med['cpu_ms']:.2f} ms CPU per image ({med['wall_ms']:.2f} ms wall) "
          f"= {1e3 / med['cpu_ms']:.0f} img/s per fully used core")
    base_t, base_p = med["threads1"], med["processes1"]
    for workers in range(1, args.max_workers + 1):
        t, p = med[f"threads{workers}"], med[f"processes{workers}"]
        print(f"{workers} worker(s): threads {t:.0f} img/s (x{t / base_t:.2f}), "
              f"processes {p:.0f} img/s (x{p / base_p:.2f})")
    gil_ms = max(med["total_ms"] - med["cv2_ms"], 1e-6)
    print(f"GIL time per image (upper bound: all but OpenCV's own calls): {gil_ms:.3f} ms of "
          f"{med['total_ms']:.3f} ms CPU ({100 * gil_ms / med['total_ms']:.0f} %; OpenCV {med['cv2_ms']:.3f} ms) "
          f"-> worker threads cap at ~{1e3 / gil_ms:.0f} img/s whatever the core count")


if __name__ == "__main__":
    main()
