"""Helpers shared by the subcommands (no TensorFlow here)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import click


class UtodCliError(click.ClickException):
    """A user-facing error: printed as ``Error: ...``, exit code 2."""

    exit_code = 2


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Turn registry/config/data errors into clean CLI errors (exit 2) instead of tracebacks."""
    from utod.errors import UserError
    from utod.registry import PluginError

    try:
        yield
    except (PluginError, UserError) as exc:
        raise UtodCliError(str(exc)) from exc


def split_settings(meta: dict, train_split: float | None, val_split: float | None, seed: int | None) -> dict:
    """The trainer's split of a checkpoint: the flags, else the checkpoint's training config,
    else the training defaults."""
    from utod.config import TrainConfig

    tc = (meta.get("extra") or {}).get("train_config") or {}
    d = TrainConfig()
    return {
        "train_split": float(train_split if train_split is not None else tc.get("train_split", d.train_split)),
        "val_split": float(val_split if val_split is not None else tc.get("val_split", d.val_split)),
        "seed": int(seed if seed is not None else tc.get("seed", d.seed)),
    }
