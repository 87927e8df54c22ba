"""The ``utod`` command line (click).

Importing this package never imports TensorFlow: each subcommand module imports heavy code
inside its function body, so ``utod --help`` and ``utod list-plugins`` stay fast.
Subcommands live one per module in this package and are listed in ``_COMMANDS``.
"""

from __future__ import annotations

import importlib
import sys

import click

from utod import __version__

# (module in utod.cli, attribute) of every subcommand, in help order.
_COMMANDS: list[tuple[str, str]] = [
    ("train_cmd", "train"),
    ("eval_cmd", "eval_cmd"),
    ("predict_cmd", "predict"),
    ("export_cmd", "export"),
    ("inspect_cmd", "inspect_cmd"),
    ("anchors_cmd", "anchors"),
    ("plugins_cmd", "list_plugins"),
]


class _Group(click.Group):
    """The command group: an exception that is neither a user error nor a click one (a
    plugin's bug, a library failure) is one line naming the plugin that raised it, exit 1;
    the traceback only with ``utod -v`` / ``UTOD_VERBOSE=1``."""

    def invoke(self, ctx: click.Context):
        from utod.cli._common import user_errors

        try:
            with user_errors():  # user errors raised outside a command's own guard: still exit 2
                return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Abort, click.exceptions.Exit,
                KeyboardInterrupt, SystemExit, EOFError):
            raise
        except Exception as exc:  # noqa: BLE001 - the one place unexpected errors are reported
            from utod.cli._common import unexpected_error

            raise unexpected_error(exc) from exc


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(__version__, "-V", "--version", prog_name="utod")
@click.option("-v", "--verbose", is_flag=True, help="Show the traceback of errors (also UTOD_VERBOSE=1).")
def cli(verbose: bool) -> None:
    """Train, evaluate and export UltraTinyOD detectors. Every assigner, loss, head, resize
    backend and augmentation is a plugin: see `utod list-plugins`."""
    from utod.cli._common import set_verbose

    set_verbose(verbose)


for _module, _attr in _COMMANDS:
    cli.add_command(getattr(importlib.import_module(f"utod.cli.{_module}"), _attr))


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point; plugin and option errors exit with code 2."""
    from utod.registry import PluginError

    try:
        cli.main(args=argv, prog_name="utod", standalone_mode=True)
    except PluginError as exc:  # raised outside a click context (should be rare)
        click.echo(f"Error: {exc}", err=True)
        sys.exit(exc.exit_code)
