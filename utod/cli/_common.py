"""Helpers shared by the subcommands (no TensorFlow here): user errors as one line (exit 2),
unexpected errors as one line naming the plugin that raised them (exit 1), the traceback
only with ``utod -v`` or ``UTOD_VERBOSE=1``."""

from __future__ import annotations

import contextlib
import os
import sys
import traceback
from collections.abc import Iterator
from types import TracebackType

import click

VERBOSE_ENV = "UTOD_VERBOSE"
_verbose = False


def set_verbose(on: bool) -> None:
    global _verbose
    _verbose = bool(on)


def verbose() -> bool:
    """``utod -v`` or ``UTOD_VERBOSE`` set to anything but ``0``/empty."""
    return _verbose or os.environ.get(VERBOSE_ENV, "") not in ("", "0")


class UtodCliError(click.ClickException):
    """A user-facing error: printed as ``Error: ...``, exit code 2."""

    exit_code = 2


class UnexpectedError(click.ClickException):
    """An error that is not the user's input (a plugin bug, a library failure): one line,
    exit code 1."""

    exit_code = 1


def _one_line(text: str) -> str:
    lines = [ln.strip() for ln in str(text).strip().splitlines() if ln.strip()]
    return lines[0] if lines else ""


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Turn registry/config/data/storage errors into clean CLI errors (exit 2) instead of
    tracebacks; ``OSError`` (read-only folder, disk full, missing file) names its path."""
    from utod.errors import UserError
    from utod.registry import PluginError

    try:
        yield
    except (PluginError, UserError) as exc:
        _maybe_traceback()
        raise UtodCliError(str(exc)) from exc
    except OSError as exc:
        from utod.atomic import describe_os_error

        _maybe_traceback()
        where = exc.filename or ""
        raise UtodCliError(f"{where}: {describe_os_error(exc)}" if where else describe_os_error(exc)) from exc


def _maybe_traceback() -> None:
    if verbose():
        traceback.print_exc(file=sys.stderr)


def _plugin_of_traceback(tb: TracebackType | None) -> tuple[object, str] | None:
    """(component, "file:line") of the innermost traceback frame that runs a registered
    plugin component's code, or ``None``."""
    from utod.registry import get_registry

    try:
        reg = get_registry()
    except Exception:  # noqa: BLE001 - attribution is best effort
        return None
    owners = []
    for comps in reg.components.values():
        for comp in comps:
            factory = comp.factory
            if isinstance(factory, str):
                module, _, attr = factory.partition(":")
                qual = attr
            else:
                module = getattr(factory, "__module__", None) or type(factory).__module__
                qual = getattr(factory, "__qualname__", None) or type(factory).__qualname__
            if module:
                owners.append((module, qual, comp))
    frames = list(traceback.walk_tb(tb))
    for frame, lineno in reversed(frames):
        mod = frame.f_globals.get("__name__", "")
        code_qual = getattr(frame.f_code, "co_qualname", frame.f_code.co_name)
        for module, qual, comp in owners:
            if mod == module and qual and (code_qual == qual or code_qual.startswith(qual + ".")):
                return comp, f"{frame.f_code.co_filename}:{lineno}"
    return None


def describe_unexpected(exc: BaseException) -> str:
    """One line for an unexpected error: which plugin component raised it (when one did),
    the exception, where, and how to see the traceback."""
    found = _plugin_of_traceback(exc.__traceback__)
    msg = _one_line(getattr(exc, "message", None) or str(exc)) or "(no message)"
    kind = type(exc).__name__
    hint = f" (run with utod -v or {VERBOSE_ENV}=1 for the traceback)"
    if found is not None:
        comp, where = found
        return (f"{comp.kind} plugin '{comp.name}' from {comp.provider} {comp.version} failed: {kind}: {msg} "
                f"[{where}]{hint}")
    return f"{kind}: {msg}{hint}"


def unexpected_error(exc: BaseException) -> UnexpectedError:
    if verbose():
        traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
    return UnexpectedError(describe_unexpected(exc))


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
