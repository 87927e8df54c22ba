"""Dataset layouts: one small reader module per layout, one registry, auto-detection.

Every reader turns a user's dataset description into :class:`utod.data.dataset.DatasetItem`
lists per split (``train``, ``val``, ``test`` or ``all``), so the split, cache and pipeline
do not depend on the layout. Built-in layouts, in detection order:

==================  ===============================================================
``ultralytics``     data.yaml (Ultralytics, Roboflow, CVAT "Ultralytics YOLO")
``cvat-yolo``       CVAT "YOLO 1.1" export (obj.data, obj.names, train.txt, obj_*_data/)
``voc``             Pascal VOC XML (devkit tree or LabelImg folder)
``coco``            COCO instances JSON
``ultralytics-tree`` images/ + labels/ folders without a YAML
``yolo``            YOLO .txt beside the images, a list file, or one image (the fallback)
==================  ===============================================================

A new layout is a :class:`DatasetLayout` subclass passed to :func:`register_layout`.
"""

from __future__ import annotations

from pathlib import Path

from utod.data.formats.base import ALL, DatasetLayout, DatasetSource, LabelRules, ReadResult
from utod.errors import ConfigError, DataError

_LAYOUTS: list[DatasetLayout] = []


def register_layout(layout: DatasetLayout, *, before: str | None = None) -> None:
    """Add ``layout`` to the registry (detected before the layout named ``before``, else
    before the ``yolo`` fallback). Names must be unique."""
    if any(x.name == layout.name for x in _LAYOUTS):
        raise ConfigError(f"dataset layout '{layout.name}' is registered twice")
    names = [x.name for x in _LAYOUTS]
    anchor = before if before in names else ("yolo" if "yolo" in names else None)
    _LAYOUTS.insert(names.index(anchor) if anchor else len(_LAYOUTS), layout)


def layouts() -> list[DatasetLayout]:
    """Registered layouts in detection order."""
    return list(_LAYOUTS)


def get_layout(name: str) -> DatasetLayout:
    for x in _LAYOUTS:
        if x.name == name:
            return x
    raise ConfigError(f"unknown dataset format '{name}' (known: {', '.join(x.name for x in _LAYOUTS)})")


def looked_for() -> str:
    """One line per layout: what auto-detection looks for (for error messages)."""
    return "; ".join(f"{x.title}: {x.markers}" for x in _LAYOUTS)


def detect_layout(path: str | Path) -> DatasetLayout:
    """The first registered layout that recognises ``path``."""
    p = Path(path)
    if not p.exists():
        raise DataError(f"dataset '{path}' does not exist (expected a folder, a data.yaml, an obj.data, "
                        f"a COCO .json or an image list file)")
    for layout in _LAYOUTS:
        if layout.detect(p):
            return layout
    raise DataError(f"'{path}' is in no known dataset layout. Looked for: {looked_for()}")


def open_dataset(path: str | Path, fmt: str | None = None) -> DatasetSource:
    """Open the dataset description at ``path`` (layout ``fmt`` or auto-detected)."""
    p = Path(path)
    if fmt:
        if not p.exists():
            raise DataError(f"dataset '{path}' does not exist")
        return get_layout(fmt).open(p)
    return detect_layout(p).open(p)


def _register_builtins() -> None:
    from utod.data.formats.coco import CocoLayout
    from utod.data.formats.cvat import CvatLayout
    from utod.data.formats.ultralytics import UltralyticsLayout, UltralyticsTreeLayout
    from utod.data.formats.voc import VocLayout
    from utod.data.formats.yolo import YoloLayout

    for layout in (UltralyticsLayout(), CvatLayout(), VocLayout(), CocoLayout(), UltralyticsTreeLayout(),
                   YoloLayout()):
        register_layout(layout)


_register_builtins()

__all__ = ["ALL", "DatasetLayout", "DatasetSource", "LabelRules", "ReadResult", "detect_layout", "get_layout",
           "layouts", "looked_for", "open_dataset", "register_layout"]
