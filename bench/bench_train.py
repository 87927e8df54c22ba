"""Training throughput benchmark (prints numbers; not a test).

Trains the seed README's configuration (width 64, 8 auto-anchors, BN, residual, ReLU,
improved + IoU-aware + ESE head, large-object branch depth 2 x1.25, CIoU, EMA, 64x64,
batch 64) with the default augmentation ON (fresh every epoch) on a generated dataset of
real JPEG files, and prints steady-state images/s (epochs after the first: median and mean)
and peak RSS. A shared 2-core VM varies by +-4 % from epoch to epoch, so the median of several
epochs is the number to compare.

    python bench/bench_train.py [--images 2000] [--epochs 6] [--batch-size 64] [--width 64]
"""

from __future__ import annotations

import argparse
import csv
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
from bench_pipeline import make_images  # same folder: run as `python bench/bench_train.py`


def compiled_step_seconds(trainer) -> float:
    """Median seconds of the compiled train step on one fixed batch (input pipeline idle)."""
    batch = trainer.train_data.make_batch(0, 0)
    times = []
    for _ in range(8):
        t = time.perf_counter()
        [v.numpy() for v in trainer.steps.train(batch).values()]
        times.append(time.perf_counter() - t)
    return float(np.median(times[2:]))

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--xla", action="store_true")
    ap.add_argument("--no-aug", action="store_true", help="measure without augmentation")
    ap.add_argument("--workers", type=int, default=None, help="data workers (default: all cores)")
    ap.add_argument("--worker-mode", choices=("threads", "processes"), default="threads",
                    help="data workers as threads or processes (docs/gpu.md)")
    args = ap.parse_args()

    from utod.train.run import run_training

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        t0 = time.perf_counter()
        data.mkdir()
        make_images(data, args.images, size=320)
        print(f"dataset: {args.images} JPEGs 320x320 written in {time.perf_counter() - t0:.1f}s")
        flags = {
            "image_dir": str(data), "img_size": "64x64", "batch_size": args.batch_size, "epochs": args.epochs,
            "lr": 0.0003, "weight_decay": 0.0001, "classes": "0", "cnn_width": args.width, "auto_anchors": True,
            "num_anchors": 8, "iou_loss": "ciou", "conf_thresh": 0.15, "use_ema": True, "ema_decay": 0.9999,
            "grad_clip_norm": 10.0, "use_batchnorm": True, "utod_residual": True, "use_improved_head": True,
            "use_iou_aware_head": True, "use_head_ese": True, "activation": "relu", "utod_large_obj_branch": True,
            "utod_large_obj_depth": 2, "utod_large_obj_ch_scale": 1.25, "resize_mode": "opencv_inter_nearest",
            "ckpt_out": str(Path(tmp) / "run"), "cache_dir": str(Path(tmp) / "cache"), "use_xla": args.xla,
            "log_interval": 1000, "num_workers": args.workers, "no_aug": args.no_aug,
            "worker_mode": args.worker_mode,
        }
        t0 = time.perf_counter()
        trainer = run_training(flags)
        wall = time.perf_counter() - t0
        rows = list(csv.DictReader((Path(tmp) / "run" / "results.csv").open()))
        # calibration: the same compiled step on one fixed batch, input pipeline idle. Shared VMs
        # change speed over time; compare throughputs only where this number is the same.
        step_s = compiled_step_seconds(trainer)
    rss_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    print("\n=== bench_train ===")
    for r in rows:
        print(f"epoch {r['epoch']}: {float(r['img_per_s']):.1f} img/s ({float(r['time_s']):.1f}s train)")
    steady = [float(r["img_per_s"]) for r in rows[1:]] or [float(rows[0]["img_per_s"])]
    print(f"steady-state training throughput: median {np.median(steady):.1f} img/s, mean {np.mean(steady):.1f}, "
          f"range {min(steady):.1f}-{max(steady):.1f} over {len(steady)} epoch(s) "
          f"(width {args.width}, batch {args.batch_size}, 64x64, {'no' if args.no_aug else 'default'} augmentation, EMA)")
    print(f"first epoch (incl. decode + cache build, tracing): {float(rows[0]['img_per_s']):.1f} img/s")
    print(f"compiled step alone on a fixed batch (this machine's ceiling right now): {step_s:.3f} s/batch = "
          f"{args.batch_size / step_s:.1f} img/s")
    print(f"peak RSS: {rss_gb:.2f} GB; wall time {wall:.0f}s for {args.epochs} epochs incl. validation")


if __name__ == "__main__":
    main()
