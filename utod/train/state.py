"""The resumable train state, in one place: ``<run>/train_state/`` (a ``tf.train.Checkpoint``).

It holds the model, the optimiser (incl. its step counter), the EMA shadow and update
count, the distillation adapter, the completed epochs, the batches done in the current
epoch with that epoch's running loss sums, and the best mAP@0.5. Augmentation and
shuffling are functions of (seed, epoch, sample), so a resumed run skips the batches
already done and sees exactly the data an uninterrupted run would.

TensorFlow writes checkpoints atomically (data files first, then the ``checkpoint`` index
by rename), so a ``kill -9`` at any moment leaves the previous state readable; the two
newest states are kept.

Integrity: a state is saved only when every variable in it is finite (NaN/Inf weights,
EMA or optimiser moments raise :class:`~utod.errors.NonFiniteError` instead), so ``verified``
names the newest state known to hold finite values. Restoring takes the newest state that
reads back whole and is finite: a truncated newest file, or a lost ``checkpoint`` index,
falls back to the older state on disk (:func:`utod.runfolder.restore_newest_intact`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from utod._keras import tf
from utod.faults import fault_point
from utod.loss import LOSS_KEYS

LOSS_SUM_KEYS = (*LOSS_KEYS, "distill")
"""The per-step losses summed in ``epoch_loss_sums`` (in this order)."""
STEP_KEYS = (*LOSS_SUM_KEYS, "grad_norm")
"""Every per-step value the epoch sums cover; ``grad_norm`` (the global norm of the summed
gradient before clipping) has its own variable, ``epoch_grad_norm_sum``."""


class TrainState:
    """Position and best score as variables, plus the checkpoint that saves them with the
    model, optimiser, EMA and distillation variables. Create it under the strategy scope."""

    def __init__(self, run_dir: Path, *, model, optimizer, ema=None, distill=None, max_to_keep: int = 2):
        self.optimizer = optimizer
        self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="completed_epochs")
        self.step_in_epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="step_in_epoch")
        # running sums of the epoch's step losses, so a resumed epoch's means still cover every batch
        self.epoch_loss_sums = tf.Variable(tf.zeros([len(LOSS_SUM_KEYS)], tf.float64), trainable=False,
                                           name="epoch_loss_sums")
        self.epoch_grad_norm_sum = tf.Variable(0.0, dtype=tf.float64, trainable=False, name="epoch_grad_norm_sum")
        self.best_map = tf.Variable(-1.0, dtype=tf.float64, trainable=False, name="best_map50")
        items: dict[str, Any] = dict(model=model, optimizer=optimizer, epoch=self.epoch,
                                     step_in_epoch=self.step_in_epoch, best_map=self.best_map,
                                     epoch_loss_sums=self.epoch_loss_sums,
                                     epoch_grad_norm_sum=self.epoch_grad_norm_sum)
        if ema is not None:
            items.update(ema_shadow=ema.shadow, ema_updates=ema.updates)
        if distill is not None and getattr(distill, "trainable_variables", None):
            items["distill"] = tf.train.Checkpoint(variables=list(distill.trainable_variables))
        self.checkpoint = tf.train.Checkpoint(**items)
        self.manager = tf.train.CheckpointManager(self.checkpoint, str(run_dir / "train_state"),
                                                  max_to_keep=max_to_keep)
        self.run_dir = Path(run_dir)
        # everything the state holds that must be finite for a resume to make sense
        self._checked = list(model.variables) + list(optimizer.variables)
        if ema is not None:
            self._checked += list(ema.shadow)
        if distill is not None:
            self._checked += list(getattr(distill, "trainable_variables", []) or [])
        self.verified: str | None = None  # newest state saved or restored with finite values
        self._finite_check = None

    # ------------------------------------------------------------------ reading
    @property
    def latest(self) -> str | None:
        """Prefix of the newest saved state, or None."""
        return self.manager.latest_checkpoint

    @property
    def global_step(self) -> int:
        return int(self.optimizer.iterations.numpy())

    @property
    def best(self) -> float:
        """Best mAP@0.5 so far (-1.0 before any validation)."""
        return float(self.best_map.numpy())

    def resume_advice(self) -> str:
        """Where a run that met NaN/Inf continues from: only a state verified finite is named."""
        if self.verified:
            return (f"Newest train state verified finite: {self.verified}; try a lower --lr or "
                    f"--grad-clip-norm, then --resume {self.run_dir} (or start a new run if it diverges again)")
        return ("No train state with finite weights was saved; start a new run with a lower --lr or "
                "--grad-clip-norm")

    def epoch_sums(self) -> dict[str, float]:
        sums = dict(zip(LOSS_SUM_KEYS, self.epoch_loss_sums.numpy().tolist()))
        return {**sums, "grad_norm": float(self.epoch_grad_norm_sum.numpy())}

    # ------------------------------------------------------------------ changing
    def nonfinite(self) -> list[str]:
        """Names of the state's variables that hold NaN/Inf (empty: all finite)."""
        if self._finite_check is None:
            from utod.finite import FinitenessCheck

            self._finite_check = FinitenessCheck(self._checked)  # compiled once, on first use
        return self._finite_check()

    def restore(self, log=print) -> tuple[int, int] | None:
        """Load the newest saved state that reads back whole and holds finite values ->
        (epochs done, steps into the next epoch), or None when there is none on disk."""
        from utod.runfolder import restore_newest_intact

        def finite() -> str | None:
            bad = self.nonfinite()
            return f"non-finite values in {len(bad)} variable(s), first {bad[0]}" if bad else None

        prefix = restore_newest_intact(self.checkpoint, self.run_dir, self.latest, log=log, check=finite)
        if prefix is None:
            return None
        self.verified = prefix
        return int(self.epoch.numpy()), int(self.step_in_epoch.numpy())

    def record_position(self, step_in_epoch: int, sums: dict[str, float]) -> None:
        """The position inside an epoch; only a saved state needs it (set before ``save``)."""
        self.step_in_epoch.assign(step_in_epoch)
        self.epoch_loss_sums.assign(np.asarray([sums[k] for k in LOSS_SUM_KEYS], np.float64))
        self.epoch_grad_norm_sum.assign(float(sums.get("grad_norm", 0.0)))

    def finish_epoch(self, epoch: int) -> None:
        """``epoch`` (1-based) is complete: the next state starts at the following epoch."""
        self.epoch.assign(epoch)
        self.step_in_epoch.assign(0)
        self.epoch_loss_sums.assign(tf.zeros_like(self.epoch_loss_sums))
        self.epoch_grad_norm_sum.assign(0.0)

    def offer_best(self, map50: float) -> bool:
        """Record ``map50`` if it beats the best so far; True when it did."""
        if map50 > self.best:
            self.best_map.assign(map50)
            return True
        return False

    def save(self) -> str:
        """Write the state (numbered by the optimiser step) -> its prefix. NonFiniteError
        (nothing written) when any of its values is NaN/Inf; StorageError naming the folder
        when it cannot be written (disk full, read-only)."""
        from utod.errors import NonFiniteError, StorageError

        bad = self.nonfinite()
        if bad:
            raise NonFiniteError(
                f"the weights became non-finite (NaN/Inf in {len(bad)} variable(s), first {bad[0]}) at step "
                f"{self.global_step}; this state was not saved. " + self.resume_advice())
        try:
            path = self.manager.save(checkpoint_number=self.global_step)
        except (tf.errors.OpError, OSError) as exc:
            reason = getattr(exc, "message", None) or str(exc)
            raise StorageError(f"cannot write the train state in {self.run_dir / 'train_state'}: "
                               f"{reason.strip().splitlines()[0] if reason.strip() else type(exc).__name__}") from None
        self.verified = path
        fault_point("state.saved")
        return path
