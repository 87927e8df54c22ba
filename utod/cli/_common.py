"""Helpers shared by the subcommands (no TensorFlow here): user errors as one line (exit 2),
unexpected errors as one line naming the plugin that raised them (exit 1), the traceback
only with ``utod -v`` or ``UTOD_VERBOSE=1``."""

from __future__ import annotations

import contextlib
import os
import re
import sys
import traceback
from collections.abc import Iterator

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


def _source_span(obj: object) -> tuple[str, int, int] | None:
    """(file, first line, last line) of a class or function's source."""
    import inspect

    target = obj if inspect.isclass(obj) or inspect.isroutine(obj) else type(obj)
    try:
        lines, start = inspect.getsourcelines(target)
        return os.path.realpath(inspect.getsourcefile(target) or ""), start, start + len(lines) - 1
    except (OSError, TypeError):
        return None


def _component_spans() -> list[tuple[str, int, int, object]]:
    """Source spans of every registered component already imported (no new imports)."""
    from utod.registry import get_registry

    try:
        reg = get_registry()
    except Exception:  # noqa: BLE001 - attribution is best effort
        return []
    spans = []
    for comps in reg.components.values():
        for comp in comps:
            factory = comp.factory
            if isinstance(factory, str):
                module, _, attr = factory.partition(":")
                mod = sys.modules.get(module)
                factory = getattr(mod, attr, None) if mod is not None and attr else None
            if factory is None:
                continue
            span = _source_span(factory)
            if span is not None:
                spans.append((*span, comp))
    return spans


# TensorFlow re-raises errors from traced code with the user frames in the message:
#   File "/path/plugin.py", line 12, in __call__
_FRAME_RE = re.compile(r'File "(?P<file>[^"]+)", line (?P<line>\d+)')


def _frames_of(exc: BaseException) -> list[tuple[str, int]]:
    """(file, line) of the frames behind ``exc``, outermost first: its traceback, its causes'
    tracebacks, and the frames TensorFlow quotes in a traced function's error message."""
    frames: list[tuple[str, int]] = []
    seen = set()
    chain: BaseException | None = exc
    while chain is not None and id(chain) not in seen:
        seen.add(id(chain))
        frames += [(frame.f_code.co_filename, lineno) for frame, lineno in traceback.walk_tb(chain.__traceback__)]
        frames += [(m["file"], int(m["line"])) for m in _FRAME_RE.finditer(str(chain))]
        chain = chain.__cause__ or chain.__context__
    return frames


def _plugin_of(exc: BaseException) -> tuple[object, str] | None:
    """(component, "file:line") of the innermost frame that runs a registered plugin
    component's code, or ``None``."""
    spans = _component_spans()
    if not spans:
        return None
    for filename, lineno in reversed(_frames_of(exc)):
        real = os.path.realpath(filename)
        for file, start, end, comp in spans:
            if real == file and start <= lineno <= end:
                return comp, f"{filename}:{lineno}"
    return None


def _message_of(exc: BaseException) -> str:
    """The error's own message in one line; for TensorFlow's "in user code:" wrapping, the
    original error's last line."""
    text = str(getattr(exc, "message", None) or exc).strip()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if not lines:
        return "(no message)"
    if lines[0].startswith("in user code") and len(lines) > 1:
        last = lines[-1]
        prefix = f"{type(exc).__name__}: "
        return last[len(prefix):] if last.startswith(prefix) else last
    return lines[0]


def describe_unexpected(exc: BaseException) -> str:
    """One line for an unexpected error: which plugin component raised it (when one did),
    the exception, where, and how to see the traceback."""
    found = _plugin_of(exc)
    msg = _message_of(exc)
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
