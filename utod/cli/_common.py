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
