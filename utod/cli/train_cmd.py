"""``utod train``: options generated from :class:`utod.config.TrainConfig`."""

from __future__ import annotations

import dataclasses
from typing import Any

import click

from utod.cli._common import UtodCliError, user_errors
from utod.config import TrainConfig
from utod.presets import describe_presets
from utod.seed_compat import RESIZE_SHORTCUTS


def _option_for(f: dataclasses.Field) -> click.Option:
    meta = f.metadata
    flags = list(meta["flags"]) or ["--" + f.name.replace("_", "-")]
    default = f.default if f.default is not dataclasses.MISSING else None
    kwargs: dict[str, Any] = {"help": meta["help"], "show_default": default not in (None, False, [], "")}
    if meta["is_flag"]:
        kwargs.update(is_flag=True, default=False)
        if not f.name.startswith("no_"):  # every switch can also be turned off (--no-use-ema)
            flags[0] = f"{flags[0]}/--no-{flags[0][2:]}"
    elif meta["multiple"]:
        kwargs.update(multiple=True, default=(), metavar="KEY=VALUE")
    else:
        ann = str(f.type)
        typ: Any = click.STRING
        if meta["choices"]:
            typ = click.Choice(meta["choices"], case_sensitive=False)
        elif ann.startswith("int"):
            typ = click.INT
        elif ann.startswith("float"):
            typ = click.FLOAT
        kwargs.update(type=typ, default=default)
    return click.Option(flags + [f.name], **kwargs)


def _build_command() -> click.Command:
    params: list[click.Parameter] = [
        click.Option(["--config", "config_file"], type=click.Path(dir_okay=False),
                     help="YAML file with any of these settings (flags given here win)."),
    ]
    params += [_option_for(f) for f in dataclasses.fields(TrainConfig)]
    params += [click.Option(["--" + name, "shortcut_" + name], is_flag=True, help=f"Same as --resize-mode {name}.")
               for name in RESIZE_SHORTCUTS]
    return click.Command(
        "train",
        callback=_train_callback,
        params=params,
        help="Train an UltraTinyOD detector. Without --image-dir it trains on a built-in generated "
             "dataset, so `utod train` alone is a complete demo. Components are plugins chosen by "
             "name: --assigner, --iou-loss, --cls-loss-type, --head, --resize-mode, aug YAML ops.",
        epilog="Presets (--preset NAME sets these flags; explicit flags and --config win; docs/recipe.md):\n\n"
               + describe_presets(),
        context_settings={"show_default": True, "max_content_width": 110},
    )


def _train_callback(config_file: str | None, **values: Any) -> None:
    ctx = click.get_current_context()
    from click.core import ParameterSource

    cli_given: dict[str, Any] = {}
    for name, value in values.items():
        if name.startswith("shortcut_"):
            continue
        if ctx.get_parameter_source(name) == ParameterSource.COMMANDLINE:
            cli_given[name] = list(value) if isinstance(value, tuple) else value
    shortcut = [n for n in RESIZE_SHORTCUTS if values.get("shortcut_" + n)]
    if shortcut:
        cli_given["resize_mode"] = shortcut[-1]
    with user_errors():
        from utod.api import train as api_train  # the Python API's function: one implementation

        try:
            api_train(config=config_file, **cli_given)
        except KeyboardInterrupt:
            raise UtodCliError("interrupted; the last saved state can be resumed with --resume") from None


train = _build_command()
