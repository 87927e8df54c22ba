"""The trainer's callback protocol: how loggers, checkpoint writers, early stopping and
diagnostics plug into the training loop without editing it.

Contract (read it like pytest's hookspecs: what each hook receives, when it is called,
what it may do). A callback is any object with some of these methods; subclass
:class:`Callback` to get no-op defaults for the rest. The loop calls the callbacks in list
order (the built-ins of :func:`utod.train.outputs.default_callbacks` first, then the ones
passed to ``run_training(..., callbacks=[...])``). Every hook gets ``run``, the
:class:`RunContext` of this run, first.

``on_train_start(run, start: TrainStart)``
    Once, after the resumable state is restored and before the first step. ``start.epoch``
    is the number of epochs already done (0 for a new run), ``start.step`` the batches done
    in the epoch that continues.

``on_epoch_start(run, epoch: int)``
    Before the first step of epoch ``epoch`` (1-based).

``on_step_end(run, step: StepEnd)``
    After every optimiser step, with the step's losses as Python floats (already checked
    finite). Called on every step: keep it cheap (``step.log`` says whether this is a
    ``--log-interval`` step, where the built-ins print and write TensorBoard scalars).

``on_eval_end(run, result: EvalResult)``
    After each validation (every ``--eval-interval`` epochs and after the last), with the
    metrics *and* the evaluated data as numpy: per-image ground truth and detections (kept
    down to score ``MAP_CONF_THRESH``), image paths, the full COCO result including
    per-class AP. A diagnostics callback draws mosaics, PR curves or confusion matrices
    from it without running the model again. Do not modify the arrays.

``on_epoch_end(run, epoch: EpochEnd)``
    After epoch ``epoch.epoch``: its results.csv row, its :class:`EvalResult` (or None),
    whether mAP@0.5 improved (``is_best``; ``run.eval_model`` then holds the weights that
    scored it). Called *before* the epoch's train state is saved, so whatever a callback
    writes here is at least as new as the state a resume starts from (a resume redoes an
    epoch whose state was not saved, and results.csv drops rows after the saved epoch).

``on_save(run, saved: SaveEnd)``
    After the resumable train state was written (``saved.kind``: "interval" mid-epoch
    every ``--save-interval`` steps, "epoch" at an epoch end, "stop" after a signal).

``on_stop(run, end: TrainEnd)``
    Exactly once when training ends for any reason (``end.reason``: "finished",
    "early_stop", "signal", "error"; ``end.error`` holds the exception for "error").
    Release resources here (files, writers, threads).

What a callback may do:

* read anything on ``run`` (the frozen plan, the models, the state) — never assign model
  weights or the state's variables: a resume must reproduce an uninterrupted run;
* stop training: ``run.request_stop("reason")`` from any hook. The request takes effect at
  the end of the current epoch: the epoch finishes normally (validation — always, even if
  ``--eval-interval`` would skip it —, ``on_epoch_end`` with ``last_epoch`` True, train-state
  save), then ``on_stop`` with ``reason="early_stop"``; the run folder is complete and ``fit``
  returns normally. (``--resume`` of such a run continues towards ``--epochs``.)
* raise: the exception stops training like any error (the last saved state remains and is
  reported); a callback that must never stop training (a plot) catches its own errors.

Hooks run on the training thread; the loop waits for them. A callback that does slow work
(drawing, uploading) does it every N epochs or in its own thread.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

GroundTruth = tuple[np.ndarray, np.ndarray]
"""boxes float [N, 4] normalised cxcywh, labels int64 [N] contiguous class indices."""
Detections = tuple[np.ndarray, np.ndarray, np.ndarray]
"""boxes float [K, 4] normalised cxcywh, scores float [K] (descending), labels int64 [K]."""


@dataclass(frozen=True)
class TrainStart:
    epoch: int  # epochs already done
    step: int  # batches already done in epoch ``epoch + 1``
    epochs: int  # planned number of epochs
    steps_per_epoch: int


@dataclass(frozen=True)
class StepEnd:
    epoch: int  # 1-based
    step: int  # 1-based batch index in the epoch
    global_step: int  # optimiser steps done in the whole run
    losses: dict[str, float]  # total, box, obj, cls, quality (+ distill)
    log: bool  # a --log-interval step (or the epoch's last)


@dataclass(frozen=True)
class EvalResult:
    """One validation: ``metrics`` as in results.csv (val_loss.. map50_95, map50, precision,
    recall), ``coco`` the full :func:`utod.metrics.evaluate_detections` result (per_class, ...),
    and per image (same order): ``image_paths``, ``ground_truth``, ``detections``."""

    epoch: int
    metrics: dict[str, float]
    coco: dict[str, Any]
    image_paths: list[str]
    ground_truth: list[GroundTruth]
    detections: list[Detections]
    img_size: tuple[int, int]  # (H, W) the boxes are normalised to
    class_names: list[str]
    seconds: float  # wall time of the whole validation (forward + scoring)

    @property
    def images_per_s(self) -> float:
        return len(self.image_paths) / max(self.seconds, 1e-9)


@dataclass(frozen=True)
class EpochEnd:
    epoch: int  # 1-based, the epoch just finished
    row: dict[str, Any]  # the results.csv row
    eval: EvalResult | None  # None when this epoch was not validated
    is_best: bool  # mAP@0.5 improved (best checkpoint due)
    best_map50: float  # best mAP@0.5 so far (-1 before any validation)
    last_epoch: bool  # the planned last epoch (or a stop was requested)


@dataclass(frozen=True)
class SaveEnd:
    kind: str  # "interval" | "epoch" | "stop"
    path: str  # the tf.train.Checkpoint prefix written
    epoch: int  # epochs completed in that state
    step: int  # optimiser steps in that state
    seconds: float


@dataclass(frozen=True)
class TrainEnd:
    reason: str  # "finished" | "early_stop" | "signal" | "error"
    message: str
    epochs_done: int
    best_map50: float
    last_metrics: dict[str, Any]
    error: BaseException | None = None


class Callback:
    """No-op implementations of every hook (see the module docstring for the contract)."""

    def on_train_start(self, run: RunContext, start: TrainStart) -> None: ...

    def on_epoch_start(self, run: RunContext, epoch: int) -> None: ...

    def on_step_end(self, run: RunContext, step: StepEnd) -> None: ...

    def on_eval_end(self, run: RunContext, result: EvalResult) -> None: ...

    def on_epoch_end(self, run: RunContext, epoch: EpochEnd) -> None: ...

    def on_save(self, run: RunContext, saved: SaveEnd) -> None: ...

    def on_stop(self, run: RunContext, end: TrainEnd) -> None: ...


HOOKS = ("on_train_start", "on_epoch_start", "on_step_end", "on_eval_end", "on_epoch_end", "on_save", "on_stop")


@dataclass
class RunContext:
    """What callbacks see of the run. ``plan``: the frozen :class:`utod.train.plan.TrainPlan`;
    ``model``: the trained Keras model; ``eval_model``: the weights that are evaluated and saved
    (the EMA copy with ``--use-ema``, else ``model``); ``state``: the resumable
    :class:`utod.train.state.TrainState`; ``log(msg)`` prints a line; ``learning_rate()`` the
    learning rate of the next optimiser step."""

    plan: Any
    model: Any
    eval_model: Any
    state: Any
    steps_per_epoch: int
    log: Callable[[str], None] = print
    learning_rate: Callable[[], float] = lambda: float("nan")  # the schedule's LR at the current step
    stop_reason: str | None = None
    extras: dict[str, Any] = field(default_factory=dict)  # free space callbacks may share

    @property
    def run_dir(self) -> Path:
        return self.plan.run_dir

    @property
    def cfg(self) -> Any:
        return self.plan.cfg

    def request_stop(self, reason: str) -> None:
        """End training after the current epoch (see the module docstring)."""
        if self.stop_reason is None:
            self.stop_reason = str(reason)

    @property
    def stop_requested(self) -> bool:
        return self.stop_reason is not None


class CallbackList:
    """Calls one hook on every callback, in order; callbacks may lack any hook."""

    def __init__(self, callbacks: Sequence[Any]):
        self.callbacks = list(callbacks)
        self._bound = {h: [getattr(c, h) for c in self.callbacks if callable(getattr(c, h, None))] for h in HOOKS}

    def call(self, hook: str, run: RunContext, arg: Any) -> None:
        for fn in self._bound[hook]:
            fn(run, arg)

    def wants(self, hook: str) -> bool:
        return bool(self._bound[hook])
