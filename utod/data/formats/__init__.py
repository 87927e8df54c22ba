"""Dataset layouts: one small reader module per layout, found through the plugin registry.

Layouts are the ``dataset_format`` plugin kind (hook ``register_dataset_formats`` of the
``utod`` entry-point group); the built-ins register through that same group
(``utod_plugins.dataset_formats``) and their readers are the modules of this package:
``ultralytics`` (data.yaml, images/+labels/ tree), ``cvat`` (YOLO 1.1), ``voc``, ``coco``,
``yolo`` (labels beside images, list files). Every reader turns a description into
:class:`utod.data.dataset.DatasetItem` lists per split (``train``, ``val``, ``test`` or
``all``), so the split, cache and pipeline do not depend on the layout.

Auto-detection tries the layouts by ``priority`` (lower first). :func:`register_layout` adds
a layout object in-process (scripts, tests) without packaging it.
"""

from __future__ import annotations

from pathlib import Path

from utod.data.formats.base import ALL, DatasetLayout, DatasetSource, LabelRules, ReadResult
from utod.errors import ConfigError, DataError

KIND = "dataset_format"
_LOCAL: list[DatasetLayout] = []


def register_layout(layout: DatasetLayout) -> None:
    """Add ``layout`` for this process (detected by its ``priority``); names must be unique."""
    if any(x.name == layout.name for x in layouts()):
        raise ConfigError(f"dataset layout '{layout.name}' is registered twice")
    _LOCAL.append(layout)


def unregister_layout(name: str) -> None:
    _LOCAL[:] = [x for x in _LOCAL if x.name != name]


def layouts() -> list[DatasetLayout]:
    """Every layout (plugins and :func:`register_layout`), in detection order."""
    from utod.registry import get_registry

    reg = get_registry()
    if not reg.components.get(KIND):
        _builtin_fallback(reg)
    found: list[DatasetLayout] = []
    for comp in reg.components.get(KIND, []):
        if comp.status != "ok":
            continue
        layout = comp.load()()
        layout.name = comp.name  # the registered name (the readers do not name themselves)
        found.append(layout)
    found += _LOCAL
    return sorted(found, key=lambda x: (getattr(x, "priority", 500), x.name))


_BUILTIN_MODULE, _BUILTIN_PLUGIN = "utod_plugins.dataset_formats", "dataset_formats"


def _builtin_fallback(reg) -> None:
    """An installation made before this plugin kind existed has no ``dataset_formats`` entry
    point (editable installs freeze their entry points): register the built-in layouts from
    their module and say how to fix the installation. Disabling the plugin is respected."""
    import importlib
    import os
    import sys

    from utod import __version__

    disabled = {x.strip() for x in os.environ.get("UTOD_DISABLED_PLUGINS", "").split(",") if x.strip()}
    pm = getattr(reg, "plugin_manager", None)
    if _BUILTIN_PLUGIN in disabled or pm is None or pm.get_plugin(_BUILTIN_PLUGIN) is not None:
        return
    try:
        module = importlib.import_module(_BUILTIN_MODULE)
    except ImportError:
        return
    pm.register(module, name=_BUILTIN_PLUGIN)
    reg.collect(module, _BUILTIN_PLUGIN, "utod", __version__)
    print("warning: this utod installation lacks the dataset_formats entry point; using the built-in "
          "layouts directly (reinstall: pip install -e . or pip install .)", file=sys.stderr)


def get_layout(name: str) -> DatasetLayout:
    from utod.registry import get_registry

    for x in _LOCAL:
        if x.name == name:
            return x
    reg = get_registry()
    if not reg.components.get(KIND):
        _builtin_fallback(reg)
    comp = reg.get(KIND, name)  # an unknown name is an error with a suggestion
    layout = comp.load()()
    layout.name = comp.name
    return layout


def looked_for() -> str:
    """What auto-detection looks for, layout by layout (for error messages)."""
    return "; ".join(f"{x.title}: {x.markers}" for x in layouts())


def detect_layout(path: str | Path) -> DatasetLayout:
    """The first layout (by priority) that recognises ``path``."""
    p = Path(path)
    if not p.exists():
        raise DataError(f"dataset '{path}' does not exist (expected a folder, a data.yaml, an obj.data, "
                        f"a COCO .json or an image list file)")
    found = layouts()
    if not found:
        raise DataError("no dataset layout is installed (the dataset_format plugins are disabled or missing)")
    for layout in found:
        if layout.detect(p):
            return layout
    raise DataError(f"'{path}' is in no known dataset layout. Looked for: {looked_for()}")


def open_dataset(path: str | Path, fmt: str | None = None) -> DatasetSource:
    """Open the dataset description at ``path`` (layout ``fmt`` or auto-detected)."""
    p = Path(path)
    if fmt:
        if not p.exists():
            raise DataError(f"dataset '{path}' does not exist")
        layout = get_layout(fmt)
    else:
        layout = detect_layout(p)
    src = layout.open(p)
    src.layout = layout.name
    return src


__all__ = ["ALL", "DatasetLayout", "DatasetSource", "LabelRules", "ReadResult", "detect_layout", "get_layout",
           "layouts", "looked_for", "open_dataset", "register_layout", "unregister_layout"]
