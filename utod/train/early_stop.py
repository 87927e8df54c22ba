"""``--patience N``: stop when validation mAP@0.5 has not improved for N evaluations.

A callback on the trainer's protocol (:mod:`utod.train.callbacks`): it counts evaluations
since the last new best and calls ``run.request_stop`` once the count reaches N; the loop
then ends the epoch normally (checkpoints, train state, results.csv) and ``fit`` returns
with reason ``early_stop``. On ``--resume`` the count is rebuilt from results.csv, so a
resumed run stops where the uninterrupted one would have.
"""

from __future__ import annotations

import math
from typing import Any


def _map50(row: dict[str, Any]) -> float | None:
    try:
        v = float(row.get("map50", ""))
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


class EarlyStopping:
    """Request a stop after ``patience`` evaluations without a new best mAP@0.5 (> the best so far)."""

    def __init__(self, patience: int):
        if patience < 1:
            raise ValueError("patience must be >= 1")
        self.patience = int(patience)
        self.best = -1.0
        self.best_epoch = 0
        self.since_best = 0

    def on_train_start(self, run, start) -> None:
        from utod.train.outputs import ResultsCsv

        self.best, self.best_epoch, self.since_best = -1.0, 0, 0
        for row in ResultsCsv(run.run_dir / "results.csv").read():
            m = _map50(row)
            if m is None or int(float(row["epoch"])) > start.epoch:
                continue
            self._count(m, int(float(row["epoch"])))

    def _count(self, map50: float, epoch: int) -> None:
        if map50 > self.best:
            self.best, self.best_epoch, self.since_best = map50, epoch, 0
        else:
            self.since_best += 1

    def on_epoch_end(self, run, epoch) -> None:
        if epoch.eval is None:
            return
        m = float(epoch.eval.metrics.get("map50", 0.0))
        self._count(m if math.isfinite(m) else 0.0, epoch.epoch)
        if self.since_best >= self.patience and not epoch.last_epoch:
            msg = (f"Early stop (--patience {self.patience}): mAP@0.5 has not improved for {self.since_best} "
                   f"evaluation(s); best {max(self.best, 0.0):.5f} at epoch {self.best_epoch}")
            run.log(msg)
            run.request_stop(msg)
