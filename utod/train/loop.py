"""The training loop, and only the loop: epochs of compiled train steps, validation when due,
the callbacks (:mod:`utod.train.callbacks`), the resumable state saved at the right moments.

Per epoch: ``on_epoch_start`` -> steps (``on_step_end`` each; the train state saved every
``--save-interval`` steps) -> validation if due (``on_eval_end``) -> ``on_epoch_end`` (results.csv,
TensorBoard, curves, ``.keras`` checkpoints are callbacks) -> train state saved (``on_save``).
Ctrl-C / SIGTERM finish the current step, save the state and stop (a second Ctrl-C stops at
once); a callback's ``run.request_stop(reason)`` ends training after the current epoch.
Everything the loop uses is built beforehand (:mod:`utod.train.plan`,
:mod:`utod.train.components`, :mod:`utod.train.steps`).
"""

from __future__ import annotations

import contextlib
import gc
import math
import signal
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from utod._keras import tf
from utod.errors import NonFiniteError
from utod.evaluation import DecodeSettings
from utod.train.callbacks import CallbackList, EpochEnd, RunContext, SaveEnd, StepEnd, TrainEnd, TrainStart
from utod.train.components import Components
from utod.train.plan import TrainPlan
from utod.train.state import STEP_KEYS
from utod.train.steps import CompiledSteps
from utod.train.validate import Validator


class NonFiniteLossError(NonFiniteError):
    """Training met a NaN/Inf loss or weights: one line (exit 2 from the CLI) naming the
    newest train state verified finite, or saying there is none."""


@contextlib.contextmanager
def _quiet_gc() -> Iterator[None]:
    """TensorFlow and Keras leave ~10^6 long-lived Python objects; without freezing them every
    full garbage collection walks them all (0.3-1 s per epoch measured, holding the GIL), and
    the input threads' short-lived objects need young-generation sweeps far less often."""
    gc.collect()
    gc.freeze()
    thresholds = gc.get_threshold()
    gc.set_threshold(20000, *thresholds[1:])
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)


class Trainer:
    """Runs a built run: ``Trainer(plan, parts, callbacks).fit()`` -> the last validation metrics."""

    def __init__(self, plan: TrainPlan, parts: Components, callbacks: Sequence[Any],
                 log: Callable[[str], None] = print) -> None:
        self.plan, self.parts, self.cfg, self.log = plan, parts, plan.cfg, log
        self.steps = CompiledSteps(parts, plan.cfg, DecodeSettings.of_model(parts.eval_model).for_map())
        self.validator = (Validator(self.steps.eval, parts.val_data, plan.model_cfg, log)
                          if parts.val_data is not None else None)
        self.callbacks = CallbackList(callbacks)
        self.run = RunContext(plan=plan, model=parts.model, eval_model=parts.eval_model, state=parts.state,
                              steps_per_epoch=parts.steps_per_epoch, log=log,
                              learning_rate=lambda: float(parts.schedule(parts.optimizer.iterations)))
        self.state = parts.state
        self.signalled = False
        self._weights_check = None
        self.last_metrics: dict[str, Any] = {}
        self._global_step = 0

    # what callers and tests read
    @property
    def run_dir(self):
        return self.plan.run_dir

    @property
    def model(self):
        return self.parts.model

    @property
    def distill(self):
        return self.parts.distill

    @property
    def teacher(self):
        return self.parts.teacher

    @property
    def eval_model(self):
        return self.parts.eval_model

    @property
    def train_data(self):
        return self.parts.train_data

    @property
    def steps_per_epoch(self) -> int:
        return self.parts.steps_per_epoch

    # ------------------------------------------------------------------ state
    def _restore(self) -> tuple[int, int]:
        got = self.state.restore()
        if got is None:
            if self.plan.resuming:
                self.log("No saved train state in this run folder; starting from epoch 1.")
            return 0, 0
        epoch, step = got
        self.log(f"Resumed {self.state.verified}: {epoch} epoch(s) done, {step} step(s) into epoch {epoch + 1}, "
                 f"optimizer step {self.state.global_step}, best mAP@0.5 {self._best_text()}")
        return epoch, step

    def _save(self, kind: str) -> str:
        t0 = time.perf_counter()
        path = self.state.save()
        self.callbacks.call("on_save", self.run, SaveEnd(kind, path, int(self.state.epoch.numpy()),
                                                         self.state.global_step, time.perf_counter() - t0))
        return path

    @contextlib.contextmanager
    def _signal_handlers(self) -> Iterator[None]:
        """Ctrl-C / SIGTERM: finish the current step, save the state, stop. A second Ctrl-C
        interrupts at once (the state saved last, at most --save-interval steps old, remains)."""

        def handler(signum, frame):
            if self.signalled and signum == signal.SIGINT:
                raise KeyboardInterrupt
            self.signalled = True
            self.log(f"\nSignal {signum} received: saving state after this step and stopping "
                     f"(Ctrl-C again to stop at once).")

        old = {}
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                old[sig] = signal.signal(sig, handler)
            except (ValueError, OSError):  # not in the main thread
                pass
        try:
            yield
        finally:
            for sig, h in old.items():
                signal.signal(sig, h)

    # ------------------------------------------------------------------ loop
    def fit(self) -> dict[str, Any]:
        start_epoch, skip_steps = self._restore()
        self._global_step = self.state.global_step
        self.log(f"Training {self.cfg.epochs} epochs x {self.steps_per_epoch} steps (batch {self.cfg.batch_size}) "
                 f"on {self.parts.strategy.num_replicas_in_sync} replica(s); run folder {self.plan.run_dir}")
        self.callbacks.call("on_train_start", self.run,
                            TrainStart(start_epoch, skip_steps, self.cfg.epochs, self.steps_per_epoch))
        try:
            with self._signal_handlers(), _quiet_gc():
                self._epochs(start_epoch, skip_steps)
        except BaseException as exc:
            self._on_failure(exc)
            raise
        finally:
            self.close()
        if self.signalled:
            path = self._save("stop")
            self._end("signal", f"Stopped. State saved to {path}; continue with: utod train --resume "
                                f"{self.plan.run_dir}")
            raise KeyboardInterrupt
        best = self._best_text()
        if self.run.stop_requested:
            self._end("early_stop", f"Stopped early after epoch {int(self.state.epoch.numpy())}: "
                                    f"{self.run.stop_reason}. Best mAP@0.5 {best}; outputs in {self.plan.run_dir}")
        else:
            self._end("finished", f"Done. Best mAP@0.5 {best}; outputs in {self.plan.run_dir}")
        return self.last_metrics

    def _epochs(self, start_epoch: int, skip_steps: int) -> None:
        batches = self._batch_stream(start_epoch, skip_steps)
        for epoch in range(start_epoch, self.cfg.epochs):
            ep = epoch + 1
            self.callbacks.call("on_epoch_start", self.run, ep)
            means, img_s, seconds = self._train_epoch(epoch, skip_steps, batches)
            skip_steps = 0
            if self.signalled:
                return
            row: dict[str, Any] = {"epoch": ep, "time_s": seconds, "img_per_s": img_s, "lr": self.run.learning_rate()}
            row.update({f"train_{'loss' if k == 'total' else k}": v for k, v in means.items()})
            self._end_epoch(ep, row)
            if self.run.stop_requested:
                return

    def _on_failure(self, exc: BaseException) -> None:
        last = self.state.latest
        if isinstance(exc, KeyboardInterrupt):
            message = f"\nInterrupted at once; the state saved last remains: {last}"
            self.log(message)
            self._end("signal", "", error=exc)
            return
        message = ""
        if not isinstance(exc, NonFiniteError):
            message = (f"\nTraining stopped by an error (below). The state saved last remains: {last or 'none yet'}"
                       + (f"; once fixed, continue with: utod train --resume {self.plan.run_dir}" if last else ""))
            self.log(message)
        self._end("error", message, error=exc)

    def _end(self, reason: str, message: str, error: BaseException | None = None) -> None:
        if message and error is None:
            self.log(message)
        end = TrainEnd(reason, message.strip(), int(self.state.epoch.numpy()), self.state.best,
                       self.last_metrics, error)
        try:
            self.callbacks.call("on_stop", self.run, end)
        except Exception as exc:  # never hide the error that ended training
            if error is None:
                raise
            self.log(f"  (a callback failed while training stopped: {exc})")

    def close(self) -> None:
        """Stop the data worker threads (called when fit ends)."""
        self.parts.close()
        if self.validator is not None:
            self.validator.close()

    def _batch_stream(self, start_epoch: int, start_step: int):
        """One iterator over the training batches of every remaining epoch, starting at
        (start_epoch, start_step). Being one stream, the next epoch's first batches are built and
        prefetched while the current epoch ends (no data stall at epoch boundaries); every batch
        is still a pure function of (seed, epoch, position)."""
        data = self.parts.train_data

        def batches():
            for e in range(start_epoch, self.cfg.epochs):
                yield from data.numpy_batches(e, start_step if e == start_epoch else 0)

        strategy = self.parts.strategy
        if strategy.num_replicas_in_sync == 1:
            # one device: the worker threads already build batches ahead; feeding their numpy
            # arrays straight to the step skips a tf.data thread that competed for the CPU
            return iter(batches())
        ds = tf.data.Dataset.from_generator(batches, output_signature=data.output_signature())
        return iter(strategy.experimental_distribute_dataset(ds.prefetch(2)))

    def _nonfinite(self, epoch: int, step_idx: int, vals: dict[str, float]) -> NonFiniteLossError:
        return NonFiniteLossError(
            f"non-finite loss at step {self._global_step} (epoch {epoch + 1}, batch {step_idx}): "
            + ", ".join(f"{k}={v}" for k, v in vals.items())
            + ". Training stopped; nothing from this step was saved. " + self.state.resume_advice())

    def _best_text(self) -> str:
        best = self.state.best
        return f"{best:.5f}" if best >= 0 else "not available (no validation was scored)"

    def _check_finite_weights(self, ep: int) -> None:
        """Before anything is validated or written for epoch ``ep``: the trained and the
        evaluated weights must be finite (a step can leave NaN weights behind a finite loss)."""
        if self._weights_check is None:
            from utod.finite import FinitenessCheck

            variables = list(self.parts.model.variables)
            if self.parts.eval_model is not self.parts.model:
                variables += list(self.parts.eval_model.variables)
            self._weights_check = FinitenessCheck(variables)  # compiled once for the run
        bad = self._weights_check()
        if bad:
            raise NonFiniteLossError(
                f"the weights became non-finite in epoch {ep} (NaN/Inf in {len(bad)} variable(s), first {bad[0]}): "
                f"nothing of this epoch was validated or saved. " + self.state.resume_advice())

    def _train_epoch(self, epoch: int, skip_steps: int, batches) -> tuple[dict[str, float], float, float]:
        cfg, steps = self.cfg, self.steps_per_epoch
        if skip_steps:
            self.log(f"Epoch {epoch + 1}: continuing after the {skip_steps} batch(es) done before the interruption")
        if self.distill is not None:  # the cosine ramp is constant within an epoch
            self.distill.set_epoch(epoch, cfg.epochs)
        sums = self.state.epoch_sums() if skip_steps else dict.fromkeys(STEP_KEYS, 0.0)
        step_idx = skip_steps  # batches of this epoch done (the loss sums cover all of them)
        log_every = max(1, cfg.log_interval)
        t0 = time.perf_counter()
        images = 0
        for _ in range(steps - skip_steps):
            out = self.steps.train(next(batches))
            vals = {k: float(v.numpy()) for k, v in out.items()}
            step_idx += 1
            self._global_step += 1
            if not math.isfinite(vals["total"]):
                raise self._nonfinite(epoch, step_idx, vals)
            for k, v in vals.items():
                sums[k] += v
            images += cfg.batch_size
            log = step_idx % log_every == 0 or step_idx == steps
            self.callbacks.call("on_step_end", self.run, StepEnd(epoch + 1, step_idx, self._global_step, vals, log))
            if self.signalled:
                self.state.record_position(step_idx, sums)  # fit() saves the state after the loop returns
                break
            if cfg.save_interval > 0 and step_idx % cfg.save_interval == 0 and step_idx < steps:
                self.state.record_position(step_idx, sums)
                self._save("interval")
        seconds = time.perf_counter() - t0
        means = {k: v / max(1, step_idx) for k, v in sums.items() if k != "distill" or self.distill is not None}
        return means, images / max(seconds, 1e-9), seconds

    def _evaluate_due(self, ep: int) -> bool:
        every = max(1, self.cfg.eval_interval)
        return self.validator is not None and (ep % every == 0 or ep == self.cfg.epochs or self.run.stop_requested)

    def _end_epoch(self, ep: int, row: dict[str, Any]) -> None:
        self.parts.sync_eval_model()  # the weights evaluated and saved (EMA with --use-ema)
        self._check_finite_weights(ep)
        result = None
        if self._evaluate_due(ep):
            result = self.validator.run(ep)
            row.update(result.metrics)
            if result.metrics.get("map50") is None:  # non-finite validation: not scored, never best
                result = None
            else:
                self.last_metrics = dict(result.metrics)
                self.callbacks.call("on_eval_end", self.run, result)
        is_best = result is not None and self.state.offer_best(float(result.metrics["map50"]))
        last = ep == self.cfg.epochs or self.run.stop_requested
        self.callbacks.call("on_epoch_end", self.run, EpochEnd(ep, row, result, is_best, self.state.best, last))
        self.state.finish_epoch(ep)
        self._save("epoch")

