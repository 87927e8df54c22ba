"""``utod train`` end to end: plan -> components -> steps + callbacks -> loop (see
:func:`run_training`); the strategy and which worker writes come from
:mod:`utod.train.distribution`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from utod.train.distribution import (
    configure_devices,
    make_strategy,
    release_write_dir,
    worker_role,
    write_dir_for,
)


def log(msg: str) -> None:
    print(msg, flush=True)


def run_training(cli_given: dict[str, Any], config_file: str | None = None,
                 callbacks: Sequence[Any] = (), log: Callable[[str], None] = log):
    """``utod train`` as four steps: plan (settings, data, components, model config; no
    TensorFlow) -> build each component once -> compiled steps + callbacks -> the loop.

    ``callbacks``: extra :mod:`utod.train.callbacks` objects, called after the built-in ones.
    Returns the finished :class:`~utod.train.loop.Trainer` (``trainer.last_metrics`` holds the
    final validation metrics). The folder this process writes is locked
    (:class:`utod.runlock.RunLock`) from its first write to the end; only the chief of a
    multi-worker run writes the run folder."""
    from utod.runlock import RunLock
    from utod.train.setup import resolve_config

    resolved = resolve_config(cli_given, config_file)  # every setting validated here
    from utod.devices import apply_device, parse_device, strategy_for

    device = parse_device(resolved.cfg.device)
    apply_device(device, log)  # --device: before TensorFlow starts, before any write
    strategy_name = strategy_for(device, resolved.cfg.strategy)
    role = worker_role(strategy_name)
    write_dir = write_dir_for(resolved.run_dir, role, resolved.resuming)
    if not role.is_chief:
        log(f"Worker {role.task_type}:{role.task_id} of {role.num_workers}: the chief writes the run folder "
            f"{resolved.run_dir}; this worker writes to {write_dir}")
    lock = RunLock(write_dir, log=log)
    try:
        return _train(resolved, strategy_name, lock, write_dir, role.is_chief, callbacks, log)
    finally:
        lock.release()
        release_write_dir(write_dir, resolved.run_dir)


def _train(resolved, strategy_name: str, lock, write_dir: Path, is_chief: bool, callbacks: Sequence[Any],
           log: Callable[[str], None]):
    # the strategy first: logical devices and collective ops are fixed when TensorFlow starts
    configure_devices(strategy_name)
    strategy = make_strategy(strategy_name)
    from utod.registry import get_registry, warn_failures
    from utod.train.plan import make_plan, write_run_files

    registry = get_registry()
    warn_failures(registry)
    plan = make_plan(resolved, registry, lock, log, run_dir=write_dir, is_chief=is_chief)
    write_run_files(plan, log)
    cfg = plan.cfg
    from utod._keras import keras
    from utod.train.components import build_components
    from utod.train.loop import Trainer
    from utod.train.outputs import default_callbacks

    if cfg.use_amp:
        keras.mixed_precision.set_global_policy("mixed_float16")
        log("Mixed precision: float16 compute, float32 loss and weights.")
    try:
        parts = build_components(plan, registry, strategy, log)
        trainer = Trainer(plan, parts, [*default_callbacks(plan), *_option_callbacks(plan, registry, log), *callbacks],
                          log)
        trainer.fit()
    finally:
        if cfg.use_amp:  # the policy is process-wide: do not leak it into later work
            keras.mixed_precision.set_global_policy("float32")
    return trainer


def _option_callbacks(plan, registry, log: Callable[[str], None]) -> list[Any]:
    """Callbacks the run's settings ask for: the run-folder diagnostics (with a validation
    split) and early stopping (``--patience``)."""
    out: list[Any] = []
    if plan.has_validation:
        from utod.diagnostics.callback import DiagnosticsCallback

        out.append(DiagnosticsCallback(registry=registry))
    if plan.cfg.patience:
        if plan.has_validation:
            from utod.train.early_stop import EarlyStopping

            out.append(EarlyStopping(plan.cfg.patience))
        else:
            log(f"--patience {plan.cfg.patience} has no effect: there is no validation split")
    return out
