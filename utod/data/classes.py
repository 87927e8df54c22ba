"""Which classes train and what they are called (``--classes``, ``--num-classes``, ``--names``).

Priority (the seed's rule, docs/pipeline.md §1.3): ``--classes "a,b,c"`` (count = list length, raw id ``a`` ->
index 0, ``b`` -> 1 ...), then ``--num-classes N`` (ids 0..N-1), then the number of non-empty
lines of the ``--names`` file, then the class count of the dataset description. Names come
from the names file when given (line ``i`` names raw id ``i``), else from the dataset
description (data.yaml, obj.names, COCO categories, VOC object names), else ``class<id>``;
a ``--classes`` subset keeps the names of its raw ids (deviation from the seed, which called them
``class<id>`` whenever ``--classes`` was given). Deviations from the seed, on purpose: a missing or empty names
file is an error (the seed ignored a missing one), and duplicate or negative ids are errors.
"""

from __future__ import annotations

from dataclasses import dataclass

from utod.errors import ConfigError


@dataclass
class ClassSpec:
    """class_ids[k] is the raw label id trained as contiguous class k; names[k] its name.
    ``subset`` is True when ``--classes`` chose the ids (other raw ids are then legal in label
    files and ignored; without a subset, ids >= len(class_ids) are label errors)."""

    class_ids: list[int]
    names: list[str]
    subset: bool = False

    @property
    def num_classes(self) -> int:
        return len(self.class_ids)


def parse_class_list(text: str) -> list[int]:
    """``"0, 1,3"`` -> ``[0, 1, 3]`` (spaces removed, empty parts dropped)."""
    parts = [p for p in text.replace(" ", "").split(",") if p]
    ids: list[int] = []
    for p in parts:
        try:
            ids.append(int(p))
        except ValueError:
            raise ConfigError(f"--classes '{text}': '{p}' is not an integer class id") from None
    if any(i < 0 for i in ids):
        raise ConfigError(f"--classes '{text}': class ids must be >= 0")
    if len(set(ids)) != len(ids):
        raise ConfigError(f"--classes '{text}': a class id is listed twice")
    return ids


def read_names_file(path: str) -> list[str]:
    """Non-empty stripped lines of ``path``."""
    try:
        with open(path, encoding="utf-8-sig") as f:  # utf-8-sig: tolerate a BOM (Windows tools)
            names = [ln.strip() for ln in f.read().splitlines() if ln.strip()]
    except FileNotFoundError:
        raise ConfigError(f"names file '{path}' not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"names file '{path}' cannot be read: {exc}") from exc
    if not names:
        raise ConfigError(f"names file '{path}' is empty (expected one class name per line)")
    return names


def resolve_classes(classes: str | None, num_classes: int | None, names_path: str | None, *,
                    dataset_names: list[str] | None = None, dataset_num_classes: int | None = None) -> ClassSpec:
    """Combine the three class flags by the module's priority into a ``ClassSpec``.

    ``dataset_names`` / ``dataset_num_classes``: what the dataset description declares
    (data.yaml ``names``/``nc``, obj.names, COCO categories, VOC object names). They come
    after the flags: the names name every raw id (a ``--classes`` subset too) unless a
    ``--names`` file is given, and the count applies when no flag gives one."""
    file_names = read_names_file(names_path) if names_path else dataset_names
    if file_names is None and dataset_num_classes:
        file_names = [f"class{i}" for i in range(dataset_num_classes)]
    subset = False
    if classes is not None and classes.strip():
        ids = parse_class_list(classes)
        if not ids:
            raise ConfigError(f"--classes '{classes}' selects no class")
        subset = True
    elif num_classes is not None:
        if num_classes < 1:
            raise ConfigError(f"--num-classes must be >= 1, got {num_classes}")
        ids = list(range(num_classes))
    elif file_names is not None:
        ids = list(range(len(file_names)))
    else:
        raise ConfigError("the number of classes is unknown: give --names FILE, --num-classes N or --classes LIST "
                          "(or a dataset description that names its classes)")
    names = [file_names[i] if file_names is not None and i < len(file_names) else f"class{i}" for i in ids]
    return ClassSpec(class_ids=ids, names=names, subset=subset)
