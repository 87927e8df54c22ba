"""Shared fixtures: registries installed as the process-wide one, fake entry points."""

from __future__ import annotations

import importlib.metadata as md
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from utod import ENTRY_POINT_GROUP
from utod.registry import Registry, build_registry, set_registry


@pytest.fixture
def fresh_registry() -> Iterator[Registry]:
    """A freshly built registry (real entry points) installed with ``set_registry``;
    the process-wide registry is reset afterwards."""
    reg = build_registry()
    set_registry(reg)
    yield reg
    set_registry(None)


@pytest.fixture
def install_registry() -> Iterator[Callable[..., Registry]]:
    """``install_registry(*plugins, load_entry_points=False)`` builds a registry from
    ``(object, plugin_name, provider, version)`` tuples and installs it process-wide."""

    def make(*plugins: tuple[object, str, str, str], load_entry_points: bool = False) -> Registry:
        reg = build_registry(load_entry_points=load_entry_points, plugins=plugins)
        set_registry(reg)
        return reg

    yield make
    set_registry(None)


class FakeDistribution:
    """Just enough of ``importlib.metadata.Distribution`` for the registry's loader."""

    def __init__(self, name: str, version: str, entry_points: dict[str, str]):
        self.metadata = {"Name": name}
        self.version = version
        self.entry_points = [md.EntryPoint(ep, value, ENTRY_POINT_GROUP) for ep, value in entry_points.items()]


@pytest.fixture
def fake_distributions(monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """``fake_distributions([(dist_name, version, {entry_point: "module[:attr]"}), ...],
    keep_real=False)`` makes ``importlib.metadata.distributions()`` return those
    distributions (after the real ones when ``keep_real``)."""
    real = md.distributions

    def install(dists: list[tuple[str, str, dict[str, str]]], keep_real: bool = False) -> None:
        fakes = [FakeDistribution(*d) for d in dists]
        monkeypatch.setattr(md, "distributions", lambda: [*(real() if keep_real else []), *fakes])

    return install


@pytest.fixture
def plugin_modules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str, str], str]]:
    """``plugin_modules(name, source)`` writes an importable module into a temporary folder
    on ``sys.path`` and returns its name; the modules are forgotten afterwards."""
    monkeypatch.syspath_prepend(str(tmp_path))
    names: list[str] = []

    def write(name: str, source: str) -> str:
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(source), encoding="utf-8")
        names.append(name)
        return name

    yield write
    for name in names:
        sys.modules.pop(name, None)
