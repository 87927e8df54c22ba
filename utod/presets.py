"""Named groups of training settings: ``utod train --preset NAME``.

A preset is a bundled YAML file ``utod/data/preset_<NAME>.yaml`` with a one-line ``summary``
and ``settings``: TrainConfig field names and values. It sits between the defaults and
everything the user says: defaults < preset < ``--config`` YAML < flags on the command line,
so any explicit flag overrides the preset's value. A value ``"utod:data/FILE"`` names a file
bundled with utod (an augmentation YAML) and is resolved to the installed path by
:func:`preset_settings`. docs/recipe.md lists every preset, why its values were chosen and
what it measured. The presets are data (they name components, which the core's code does
not). No TensorFlow here.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import yaml

_DATA = Path(__file__).resolve().parent / "data"
_PREFIX = "preset_"
_PACKAGE_PREFIX = "utod:"


@functools.lru_cache(maxsize=1)
def _load() -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for path in sorted(_DATA.glob(f"{_PREFIX}*.yaml")):
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        out[path.stem[len(_PREFIX):]] = {"summary": str(data.get("summary", "")),
                                          "settings": dict(data.get("settings") or {})}
    return out


PRESET_NAMES: tuple[str, ...] = tuple(_load())


def preset_summary(name: str) -> str:
    return _load()[name]["summary"]


def preset_settings(name: str) -> dict[str, Any]:
    """The TrainConfig overrides of preset ``name`` with bundled file names resolved.

    Raises ``KeyError`` for an unknown name (the CLI restricts the choices)."""
    out: dict[str, Any] = {}
    for key, value in _load()[name]["settings"].items():
        if isinstance(value, str) and value.startswith(_PACKAGE_PREFIX):
            value = str(_DATA.parent / value[len(_PACKAGE_PREFIX):])
        out[key] = value
    return out


def describe_presets() -> str:
    """One paragraph per preset: its summary and the flags it sets (``utod train --help``)."""
    lines = []
    for name in PRESET_NAMES:
        flags = " ".join(_flag(k, v) for k, v in _load()[name]["settings"].items())
        lines.append(f"{name}: {preset_summary(name)}. Sets: {flags}")
    return "\n\n".join(lines)


def _flag(key: str, value: Any) -> str:
    flag = "--" + key.replace("_", "-")
    if value is True:
        return flag
    if value is False:
        return f"--no-{key.replace('_', '-')}"
    if isinstance(value, str) and value.startswith(_PACKAGE_PREFIX):
        value = "<utod>/" + value[len(_PACKAGE_PREFIX):]
    return f"{flag} {value}"
