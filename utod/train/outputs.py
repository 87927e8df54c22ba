"""What a run writes besides the model: results.csv, the curves PNG, TensorBoard scalars,
checkpoint naming and pruning, and the console progress line."""

from __future__ import annotations

import csv
import math
import sys
import time
from pathlib import Path
from typing import Any

from utod.atomic import atomic_open, atomic_path, copy_file
from utod.faults import fault_point

RESULT_COLUMNS = [
    "epoch", "time_s", "lr", "img_per_s",
    "train_loss", "train_box", "train_obj", "train_cls", "train_quality", "train_distill",
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
    """Copy ``src`` to a stable name (``best.keras``, ``last.keras``) atomically, so scripts
    and users need not know the epoch/mAP in the seed-style file names."""
    copy_file(src, alias)


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
