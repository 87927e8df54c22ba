"""What a run writes, as callbacks on the trainer's protocol (:mod:`utod.train.callbacks`):
the console progress line, TensorBoard scalars, results.csv, the curves PNG and the
``.keras`` checkpoints (seed-style names, stable ``best.keras`` / ``last.keras`` aliases,
pruning). :func:`default_callbacks` is the list every run starts with."""

from __future__ import annotations

import csv
import math
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from utod.atomic import atomic_open, atomic_path
from utod.faults import fault_point
from utod.train.callbacks import Callback, EpochEnd, EvalResult, RunContext, StepEnd, TrainEnd, TrainStart

RESULT_COLUMNS = [
    "epoch", "time_s", "lr", "img_per_s",
    "train_loss", "train_box", "train_obj", "train_cls", "train_quality", "train_distill",
    "train_grad_norm",
    "val_loss", "val_box", "val_obj", "val_cls", "val_quality",
    "map50_95", "map50", "precision", "recall",
]


class ResultsCsv:
    """``results.csv``: one row per epoch (appended, so a resumed run keeps its history)."""

    def __init__(self, path: Path):
        self.path = path

    def truncate_after(self, epoch: int) -> None:
        """Drop rows of epochs > ``epoch`` (a resumed run redoes them)."""
        rows = self.read()
        kept = [r for r in rows if int(float(r["epoch"])) <= epoch]
        if len(kept) != len(rows):
            self._write(kept)

    def read(self) -> list[dict[str, str]]:
        if not self.path.exists():
            return []
        with self.path.open(newline="", encoding="utf-8") as fh:
            return list(csv.DictReader(fh))

    def append(self, row: dict[str, Any]) -> None:
        """Add one row. The whole file is rewritten atomically (it is a few KB), so a kill
        never leaves a torn row for the next one to be glued onto."""
        self._write([*self.read(), {k: _fmt(row.get(k, "")) for k in RESULT_COLUMNS}])
        fault_point("csv.appended")

    def _write(self, rows: list[dict[str, str]]) -> None:
        with atomic_open(self.path, "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=RESULT_COLUMNS, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)


def _fmt(v: Any) -> Any:
    if isinstance(v, float):
        return f"{v:.6g}"
    return v


def plot_results(csv_path: Path, png_path: Path) -> None:
    """Training curves (losses, mAP, P/R, LR) from results.csv into a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = ResultsCsv(csv_path).read()
    if not rows:
        return

    def col(name: str) -> tuple[list[float], list[float]]:
        xs, ys = [], []
        for r in rows:
            v = r.get(name, "")
            if v not in ("", None):
                try:
                    y = float(v)
                except ValueError:
                    continue
                if math.isfinite(y):
                    xs.append(float(r["epoch"]))
                    ys.append(y)
        return xs, ys

    panels = [
        ("loss", ["train_loss", "val_loss"]),
        ("box", ["train_box", "val_box"]),
        ("obj", ["train_obj", "val_obj"]),
        ("cls / quality", ["train_cls", "val_cls", "train_quality", "val_quality"]),
        ("mAP", ["map50", "map50_95"]),
        ("P / R", ["precision", "recall"]),
        ("lr", ["lr"]),
        ("throughput (img/s)", ["img_per_s"]),
    ]
    fig, axes = plt.subplots(2, 4, figsize=(16, 7))
    for ax, (title, names) in zip(axes.flat, panels):
        for n in names:
            xs, ys = col(n)
            if xs:
                ax.plot(xs, ys, marker=".", label=n)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=7)
    fig.tight_layout()
    try:
        with atomic_path(png_path) as tmp:
            fig.savefig(tmp, dpi=80, format="png")
    finally:
        plt.close(fig)


def checkpoint_name(kind: str, epoch: int, map50: float) -> str:
    """The seed's naming: ``best_utod_0042_map_0.31240.keras``."""
    return f"{kind}_utod_{epoch:04d}_map_{map50:.5f}.keras"


def publish_alias(src: Path, alias: Path) -> None:
    """Give ``src`` a second name (``best.keras``, ``last.keras``, or the best checkpoint that
    is also this epoch's last) atomically, so scripts and users need not know the epoch/mAP in
    the seed-style file names. A hard link (no bytes copied; the files are never modified in
    place, and pruning one name leaves the other intact); a copy where links are not supported."""
    with atomic_path(alias) as tmp:
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)


def prune_checkpoints(run_dir: Path, kind: str, keep: int) -> None:
    """Keep the newest ``keep`` ``<kind>_utod_*.keras`` files (by epoch in the name)."""
    files = sorted(run_dir.glob(f"{kind}_utod_*.keras"), key=lambda p: (p.stat().st_mtime, p.name), reverse=True)
    for p in files[max(1, keep):]:
        try:
            p.unlink()
        except OSError:
            pass


class Progress:
    """A one-line progress display: a live line on a terminal, periodic lines otherwise."""

    def __init__(self, total_steps: int, epoch: int, epochs: int, stream=None):
        self.total = total_steps
        self.epoch = epoch
        self.epochs = epochs
        self.stream = stream or sys.stdout
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.start = time.perf_counter()
        self.last_len = 0

    def update(self, step: int, images: int, values: dict[str, float]) -> None:
        elapsed = max(time.perf_counter() - self.start, 1e-9)
        width = 24
        done = int(width * step / max(1, self.total))
        bar = "#" * done + "." * (width - done)
        parts = " ".join(f"{k}={v:.4f}" for k, v in values.items())
        line = (f"epoch {self.epoch}/{self.epochs} [{bar}] {step}/{self.total} {parts} "
                f"{images / elapsed:.0f} img/s")
        if self.tty:
            pad = max(0, self.last_len - len(line))
            self.stream.write("\r" + line + " " * pad)
            self.last_len = len(line)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


# ---------------------------------------------------------------------- built-in callbacks
def _is_val_key(key: str) -> bool:
    return key.startswith("val_") or key in ("map50", "map50_95", "precision", "recall")


class ProgressPrinter(Callback):
    """The console progress line every ``--log-interval`` steps."""

    def __init__(self) -> None:
        self._bar: Progress | None = None
        self._sums: dict[str, float] = {}
        self._images = 0

    def on_train_start(self, run: RunContext, start: TrainStart) -> None:
        self._resumed_step = start.step
        self._resumed_sums = run.state.epoch_sums() if start.step else {}

    def on_epoch_start(self, run: RunContext, epoch: int) -> None:
        self._bar = Progress(run.steps_per_epoch, epoch, run.cfg.epochs)
        self._sums = dict(self._resumed_sums) if self._resumed_step else {}
        self._resumed_step, self._resumed_sums, self._images = 0, {}, 0

    def on_step_end(self, run: RunContext, step: StepEnd) -> None:
        for k, v in step.losses.items():
            self._sums[k] = self._sums.get(k, 0.0) + v
        self._images += run.cfg.batch_size
        if step.log and self._bar is not None:
            self._bar.update(step.step, self._images,
                             {k: self._sums.get(k, 0.0) / step.step for k in ("total", "box", "obj", "cls")})

    def _close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def on_eval_end(self, run: RunContext, result: EvalResult) -> None:
        self._close()

    def on_epoch_end(self, run: RunContext, epoch: EpochEnd) -> None:
        self._close()

    def on_stop(self, run: RunContext, end: TrainEnd) -> None:
        self._close()


class TensorBoardLogger(Callback):
    """Scalars: ``train_step/*`` every ``--log-interval`` steps, ``train/*`` and ``val/*`` per epoch."""

    def __init__(self, log_dir: Path) -> None:
        from utod._keras import tf

        self._tf = tf
        self.writer = tf.summary.create_file_writer(str(log_dir))

    def on_step_end(self, run: RunContext, step: StepEnd) -> None:
        if not step.log:
            return
        tf = self._tf
        with self.writer.as_default(step=step.global_step):
            for k, v in step.losses.items():
                tf.summary.scalar(f"train_step/{k}", v)
            tf.summary.scalar("train_step/lr", run.learning_rate())

    def on_epoch_end(self, run: RunContext, epoch: EpochEnd) -> None:
        tf = self._tf
        with self.writer.as_default(step=epoch.epoch):
            for k, v in epoch.row.items():
                if k != "epoch" and isinstance(v, (int, float)) and math.isfinite(float(v)):
                    tf.summary.scalar(f"{'val' if _is_val_key(k) else 'train'}/{k}", float(v))
        self.writer.flush()

    def on_stop(self, run: RunContext, end: TrainEnd) -> None:
        self.writer.close()


class ResultsCsvWriter(Callback):
    """``results.csv``: rows after the resumed epoch are dropped at start, one row per epoch."""

    def __init__(self, path: Path) -> None:
        self.results = ResultsCsv(path)

    def on_train_start(self, run: RunContext, start: TrainStart) -> None:
        self.results.truncate_after(start.epoch)

    def on_epoch_end(self, run: RunContext, epoch: EpochEnd) -> None:
        self.results.append(epoch.row)


class CurvesPlotter(Callback):
    """``results.png`` from results.csv. Drawing costs ~1 s on 2 cores (measured:
    bench/bench_epoch.py), so it is redrawn at most every ``min_interval_s`` seconds and at
    most ``budget`` of the run's time (the gap grows with the cost of a draw), and always after
    the last epoch / when training stops."""

    def __init__(self, csv_path: Path, png_path: Path, min_interval_s: float = 30.0, budget: float = 0.02) -> None:
        self.csv_path, self.png_path, self.min_interval_s = csv_path, png_path, float(min_interval_s)
        self.budget = float(budget)
        self._last = float("-inf")
        self._cost = 0.0
        self._stale = False

    def _draw(self, run: RunContext) -> None:
        t0 = time.perf_counter()
        self._stale = False
        try:
            plot_results(self.csv_path, self.png_path)
        except Exception as exc:  # a plotting problem must never stop training
            run.log(f"  (could not draw results.png: {exc})")
        self._last = time.perf_counter()
        self._cost = self._last - t0

    def on_epoch_end(self, run: RunContext, epoch: EpochEnd) -> None:
        self._stale = True
        gap = max(self.min_interval_s, self._cost / self.budget)
        if epoch.last_epoch or time.perf_counter() - self._last > gap:
            self._draw(run)

    def on_stop(self, run: RunContext, end: TrainEnd) -> None:
        if self._stale:
            self._draw(run)


class CheckpointWriter(Callback):
    """Per epoch: ``last_utod_EEEE_map_M.keras`` (the evaluated weights: EMA with --use-ema),
    and when mAP@0.5 improved the same file as ``best_utod_EEEE_map_M.keras``; stable
    ``last.keras`` / ``best.keras`` names; the newest ``--keep-checkpoints`` of each kind
    kept. The model is serialised once per epoch; every other name is a hard link."""

    def __init__(self, run_dir: Path, keep: int) -> None:
        self.run_dir, self.keep = run_dir, int(keep)
        self.saved: list[Path] = []  # files written by the latest epoch (for other callbacks)

    def on_epoch_end(self, run: RunContext, epoch: EpochEnd) -> None:
        from utod.model.io import save_checkpoint

        metrics = epoch.eval.metrics if epoch.eval is not None else {}
        map50 = float(metrics.get("map50", 0.0)) if metrics else 0.0
        extra = {"epoch": epoch.epoch, "step": run.state.global_step, "metrics": metrics,
                 "train_config": run.cfg.to_dict(), "plugins": run.plan.plugins, "use_ema": bool(run.cfg.use_ema),
                 **run.extras.get("checkpoint_extra", {})}  # from other callbacks (diagnostics: F1-optimal conf)
        last = self.run_dir / checkpoint_name("last", epoch.epoch, map50)
        save_checkpoint(last, run.eval_model, extra)
        publish_alias(last, self.run_dir / "last.keras")
        prune_checkpoints(self.run_dir, "last", self.keep)
        self.saved = [last]
        if epoch.is_best:
            best = self.run_dir / checkpoint_name("best", epoch.epoch, map50)
            publish_alias(last, best)
            publish_alias(best, self.run_dir / "best.keras")
            prune_checkpoints(self.run_dir, "best", self.keep)
            self.saved.append(best)
            run.log(f"  new best mAP@0.5 {map50:.5f} -> {best.name}")


def default_callbacks(plan: Any) -> list[Callback]:
    """The callbacks every run uses, in order: progress, checkpoints, results.csv,
    TensorBoard, curves."""
    cfg, run_dir = plan.cfg, plan.run_dir
    log_dir = Path(cfg.log_dir) if cfg.log_dir else run_dir / "tensorboard"
    return [ProgressPrinter(), CheckpointWriter(run_dir, cfg.keep_checkpoints),
            ResultsCsvWriter(run_dir / "results.csv"), TensorBoardLogger(log_dir),
            CurvesPlotter(run_dir / "results.csv", run_dir / "results.png")]
