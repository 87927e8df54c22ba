"""Whole-epoch benchmark (prints numbers; not a test): where an epoch's wall time goes.

For the seed README configuration (width 64, 8 auto-anchors, BN, residual, ReLU, improved +
IoU-aware + ESE head, large-object branch, CIoU, EMA, batch 64, 64x64, default augmentation)
on generated 640x640 JPEGs (default 2,500: 2,000 train + 500 val), per steady epoch:

* training-loop img/s (the steps alone, as results.csv's img_per_s),
* validation img/s (compiled eval step + COCO scoring, every val image),
* seconds of each epoch-end output: .keras checkpoints (+ aliases), results.csv,
  TensorBoard, curves PNG, the run-folder diagnostics (``@eval``: its per-validation
  analysis; its plots on a new best), the resumable train state,
* whole-epoch wall time (epoch start to the next epoch start) and its ratio to the loop,
* the compiled train step's own time on a fixed batch (the machine's ceiling right now),
  so runs on a busy shared machine can be compared by ratio.

``--quickstart`` measures quick-start command 1 instead (`utod train` on the built-in data:
W=16, batch 16, 800 train / 200 val), for ``--epochs`` epochs.

    python bench/bench_epoch.py [--images 2500] [--epochs 4] [--quickstart] [--width 64]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
from bench_pipeline import make_images  # same folder: run as `python bench/bench_epoch.py`
from bench_train import compiled_step_seconds


class Timed:
    """Wraps a callback and adds the seconds each hook took to ``totals[(name, hook)]``."""

    def __init__(self, inner, totals):
        self._inner, self._totals, self._name = inner, totals, type(inner).__name__

    def __getattr__(self, hook):
        fn = getattr(self._inner, hook)

        def timed(run, arg):
            t = time.perf_counter()
            try:
                return fn(run, arg)
            finally:
                epoch = arg if isinstance(arg, int) else getattr(arg, "epoch", None)
                self._totals[(self._name, hook, epoch if isinstance(epoch, int) else None)] += \
                    time.perf_counter() - t

        return timed


class EpochClock:
    """Epoch start times, validation results and state-save times."""

    def __init__(self):
        self.starts, self.evals, self.saves, self.rows = {}, {}, defaultdict(float), {}
        self.end = None

    def on_epoch_start(self, run, epoch):
        self.starts[epoch] = time.perf_counter()

    def on_eval_end(self, run, result):
        self.evals[result.epoch] = result

    def on_epoch_end(self, run, epoch):
        self.rows[epoch.epoch] = epoch.row

    def on_save(self, run, saved):
        if saved.kind == "epoch":
            self.saves[saved.epoch] += saved.seconds

    def on_stop(self, run, end):
        self.end = time.perf_counter()


def seed_flags(data: Path, tmp: Path, args) -> dict:
    return {
        "image_dir": str(data), "img_size": "64x64", "batch_size": args.batch_size, "epochs": args.epochs,
        "lr": 0.0003, "weight_decay": 0.0001, "classes": "0", "cnn_width": args.width, "auto_anchors": True,
        "num_anchors": 8, "iou_loss": "ciou", "conf_thresh": 0.15, "use_ema": True, "ema_decay": 0.9999,
        "grad_clip_norm": 10.0, "use_batchnorm": True, "utod_residual": True, "use_improved_head": True,
        "use_iou_aware_head": True, "use_head_ese": True, "activation": "relu", "utod_large_obj_branch": True,
        "utod_large_obj_depth": 2, "utod_large_obj_ch_scale": 1.25, "resize_mode": "opencv_inter_nearest",
        "ckpt_out": str(tmp / "run"), "cache_dir": str(tmp / "cache"), "log_interval": 1000,
    }


def report(clock: EpochClock, totals, batch_size: int, step_s: float) -> None:
    epochs = sorted(clock.rows)
    # steady: without the first epoch (tracing, warm-up) and, when there are more, the last
    # (the end of the run: final plots and summaries, reported on its own line)
    steady = epochs[1:-1] if len(epochs) > 2 else (epochs[1:] or epochs)
    hooks = sorted({(n, h) for (n, h, _), sec in totals.items() if h in ("on_epoch_end", "on_eval_end") and sec > 0.0005})
    print("\n=== bench_epoch ===")
    header = "epoch  loop s  loop img/s   val s  val img/s  " + "  ".join(
        (n.removesuffix("Callback")[:6] + ("@eval" if h == "on_eval_end" else "")).rjust(10) for n, h in hooks) + \
             "  state s  wall s  wall/loop"
    print(header)
    ratios, loop_ips, val_ips, wall_s, saves = [], [], [], [], []
    for e in epochs:
        row = clock.rows[e]
        nxt = clock.starts.get(e + 1, clock.end)
        wall = nxt - clock.starts[e]
        ev = clock.evals.get(e)
        parts = [totals[(n, h, e)] for n, h in hooks]
        line = (f"{e:>5} {row['time_s']:7.2f} {row['img_per_s']:11.1f} {ev.seconds if ev else 0:7.2f} "
                f"{ev.images_per_s if ev else 0:10.1f}  " + "  ".join(f"{p:10.3f}" for p in parts)
                + f"  {clock.saves[e]:7.3f} {wall:7.2f} {wall / row['time_s']:9.3f}")
        print(line)
        if e in steady:
            ratios.append(wall / row["time_s"])
            loop_ips.append(row["img_per_s"])
            wall_s.append(wall)
            saves.append(sum(parts) + clock.saves[e])
            if ev:
                val_ips.append(ev.images_per_s)
    med = float(np.median(loop_ips))
    print(f"steady epochs {steady}: training loop {med:.1f} img/s (median), validation "
          f"{np.median(val_ips) if val_ips else float('nan'):.1f} img/s = "
          f"{(np.median(val_ips) / med) if val_ips else float('nan'):.2f}x the loop; "
          f"epoch-end outputs + state {np.median(saves):.3f} s; whole epoch {np.median(wall_s):.2f} s = "
          f"{np.median(ratios):.3f}x the loop alone")
    if len(epochs) > 2:
        e = epochs[-1]
        print(f"last epoch (end of run: final plots, summaries): {clock.end - clock.starts[e]:.2f} s = "
              f"{(clock.end - clock.starts[e]) / clock.rows[e]['time_s']:.3f}x its loop")
    print(f"compiled train step alone on a fixed batch (this machine's ceiling right now): {step_s:.3f} s/batch = "
          f"{batch_size / step_s:.1f} img/s; loop = {med / (batch_size / step_s):.2f} of it")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=2500, help="generated JPEGs (80%% train, 20%% val)")
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--quickstart", action="store_true", help="quick-start command 1 (`utod train` defaults)")
    args = ap.parse_args()

    import utod.train.outputs as outputs
    import utod.train.run as run_module
    from utod.train.run import run_training

    totals: dict = defaultdict(float)
    plain, options = outputs.default_callbacks, run_module._option_callbacks
    outputs.default_callbacks = lambda plan: [Timed(c, totals) for c in plain(plan)]
    run_module._option_callbacks = lambda *a, **k: [Timed(c, totals) for c in options(*a, **k)]  # diagnostics
    clock = EpochClock()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        if args.quickstart:
            flags = {"epochs": args.epochs, "ckpt_out": str(tmp / "run"), "log_interval": 1000}
        else:
            data = tmp / "data"
            data.mkdir()
            t0 = time.perf_counter()
            make_images(data, args.images, size=640)
            print(f"dataset: {args.images} JPEGs 640x640 written in {time.perf_counter() - t0:.1f}s")
            flags = seed_flags(data, tmp, args)
        trainer = run_training(flags, callbacks=[clock])
        step_s = compiled_step_seconds(trainer)
        report(clock, totals, int(trainer.cfg.batch_size), step_s)


if __name__ == "__main__":
    main()
