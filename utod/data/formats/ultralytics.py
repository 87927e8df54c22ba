"""Ultralytics ``data.yaml`` datasets (Roboflow "YOLOv5/v8/v11 PyTorch TXT" exports and CVAT's
"Ultralytics YOLO" export included), and an ``images/`` + ``labels/`` tree without a YAML.

Keys read: ``path`` (root), ``train``, ``val`` (or ``validation``), ``test`` (each a folder,
an image list file, or a list of those), ``names`` (list, or dict whose keys are exactly
0..n-1), ``nc``. ``download`` is never run. Other keys are ignored; a key that looks like a
misspelt known key (``trian``) is reported with its line.

Paths: the root is ``path`` (relative: to the YAML's folder, else the current directory),
or the YAML's folder. A split value is ``root/value``; when that does not exist, a leading
``../`` is dropped (Roboflow writes ``../train/images``) and an absolute path from another
machine is matched by its last components under the root. List-file lines are relative to
the list file, then the root, then the current directory. Labels: the last ``images`` path
component replaced by ``labels``, extension ``.txt`` (else the ``.txt`` beside the image).
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Any

import yaml

from utod.data.discovery import find_images_in_dir, is_image_name, read_list_file
from utod.data.formats.base import (
    ALL,
    DatasetLayout,
    DatasetSource,
    IssueLog,
    LabelRules,
    ReadResult,
    split_key,
)
from utod.data.formats.yolo import names_near, read_split_images
from utod.errors import DataError

SPLIT_KEYS = ("train", "val", "test", "minival")
KNOWN_KEYS = {"path", "train", "val", "validation", "test", "minival", "names", "nc", "download", "channels",
              "roboflow", "kpt_shape", "flip_idx", "yaml_file", "text_val", "kpt_names"}
EXPECTED = "labels/.../x.txt for images/.../x.jpg (Ultralytics rule), else x.txt beside the image"


def _key_lines(text: str) -> dict[str, int]:
    """Top-level key -> 1-based line in the YAML text (best effort)."""
    try:
        node = yaml.compose(text)
    except yaml.YAMLError:
        return {}
    if not isinstance(node, yaml.MappingNode):
        return {}
    return {str(k.value): k.start_mark.line + 1 for k, _ in node.value}


def parse_names(value: Any, where: str) -> list[str]:
    """``names`` as a list or a dict ``{0: a, 1: b}`` (keys exactly 0..n-1, any order)."""
    if isinstance(value, list):
        return [str(v) for v in value]
    if isinstance(value, dict):
        try:
            table = {int(k): str(v) for k, v in value.items()}
        except (TypeError, ValueError):
            raise DataError(f"{where}: 'names' keys must be class ids 0..n-1, got {list(value)}") from None
        if not table:
            raise DataError(f"{where}: 'names' is empty")
        if sorted(table) != list(range(len(table))):
            raise DataError(f"{where}: 'names' keys must be exactly 0..{len(table) - 1}, got {sorted(table)}")
        return [table[i] for i in range(len(table))]
    raise DataError(f"{where}: 'names' must be a list or a mapping id: name, got {type(value).__name__}")


class UltralyticsSource(DatasetSource):
    """An opened data.yaml (or an equivalent mapping for a YAML-less tree)."""

    expected_labels = EXPECTED
    tree = False  # an images/ + labels/ folder without a YAML

    def __init__(self, path: Path, data: dict[str, Any], lines: dict[str, int], root: Path,
                 issues: list[str]) -> None:
        self.path = path
        self.data = data
        self.lines = lines
        self.root = root
        self.open_issues = issues

    def _where(self, key: str) -> str:
        line = self.lines.get(key)
        return f"{self.path}:{line}" if line else str(self.path)

    def _resolve(self, value: str, key: str, notes: list[str]) -> Path | None:
        """A split value -> an existing path (the fallbacks of the module docstring), or None."""
        raw = Path(os.path.expanduser(value))
        first = raw if raw.is_absolute() else self.root / raw
        if first.exists():
            return first
        tries: list[Path] = []
        if not raw.is_absolute() and value.replace("\\", "/").startswith("../"):
            tries.append(self.root / value.replace("\\", "/")[3:])
        parts = raw.parts
        for n in range(min(3, len(parts)), 0, -1):  # a path from another machine: match its tail
            tries.append(self.root / Path(*parts[len(parts) - n:]))
            tries.append(self.path.parent / Path(*parts[len(parts) - n:]))
        for t in tries:
            if t.exists():
                notes.append(f"{self._where(key)}: '{key}: {value}' is not there as written; read from {t}")
                return t
        return None

    def split_images(self, key: str, log: IssueLog, notes: list[str]) -> list[str] | None:
        """Image paths of split ``key`` (None when the key is absent or empty)."""
        value = self.data.get(key)
        if value in (None, "", []):
            return None
        values = value if isinstance(value, list) else [value]
        paths: list[str] = []
        for v in values:
            if not isinstance(v, str):
                raise DataError(f"{self._where(key)}: '{key}' entries must be paths, got {v!r}")
            p = self._resolve(v, key, notes)
            if p is None:
                hint = (" (utod never runs the 'download' key: fetch the data yourself)"
                        if "download" in self.data else "")
                if key not in ("train", "val"):  # like Ultralytics: only a split in use must exist
                    log.add(self._where(key), f"{key} '{v}' not found (looked under {self.root})",
                            f"no {key} set")
                    continue
                raise DataError(f"{self._where(key)}: {key} '{v}' not found (looked under {self.root}){hint}")
            if p.is_dir():
                found = find_images_in_dir(p)
                if not found:
                    log.add(self._where(key), f"{key} folder {p} holds no images", "nothing read from it")
                paths.extend(found)
            elif is_image_name(p.name):
                paths.append(str(p))
            else:
                listed, missing = read_list_file(p, extra_bases=[self.root])
                log.extend(missing)
                log.skipped_images += len(missing)
                paths.extend(listed)
        return paths

    def read(self, rules: LabelRules) -> ReadResult:
        log = IssueLog()
        log.extend(self.open_issues)
        result = ReadResult({}, log)
        if ALL in self.data:  # a YAML-less tree without split folders: one pool, ratio split
            paths = find_images_in_dir(self.root / self.data[ALL])
            result.splits[ALL] = read_split_images(paths, rules, log, result)
            return result
        for key in SPLIT_KEYS:
            paths = self.split_images(key, log, result.notes)
            if paths is None or (not paths and key not in ("train", "val")):
                continue
            result.splits[split_key(key)] = read_split_images(paths, rules, log, result)
        return result

    def describe(self) -> str:
        if self.tree:
            return f"images/ + labels/ tree {self.root}"
        return f"Ultralytics data.yaml {self.path} (root {self.root})"


def open_yaml(path: Path) -> UltralyticsSource:
    try:
        text = path.read_text(encoding="utf-8-sig")
        data = yaml.safe_load(text)
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read {path}: {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise DataError(f"{where}: invalid YAML ({getattr(exc, 'problem', exc)})") from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a mapping with train/val/names keys")
    lines = _key_lines(text)
    data = {str(k): v for k, v in data.items()}
    issues: list[str] = []

    def where(key: str) -> str:
        return f"{path}:{lines[key]}" if key in lines else str(path)

    for key in list(data):
        if key in KNOWN_KEYS:
            continue
        close = difflib.get_close_matches(key, sorted(KNOWN_KEYS), n=1, cutoff=0.7)
        if close:
            issues.append(f"{where(key)}: unknown key '{key}' (did you mean '{close[0]}'?) — ignored")
    if "validation" in data and "val" not in data:
        data["val"] = data.pop("validation")
        lines["val"] = lines.get("validation", 0)
    if "train" not in data:
        close = [k for k in data if difflib.get_close_matches(k, ["train"], cutoff=0.7)]
        hint = f" ('{close[0]}' at line {lines.get(close[0], '?')} looks like a typo)" if close else ""
        raise DataError(f"{path}: no 'train' key{hint}")
    for key in ("path", *SPLIT_KEYS):
        v = data.get(key)
        if v is not None and not isinstance(v, (str, list)):
            raise DataError(f"{where(key)}: '{key}' must be a path or a list of paths, got {v!r}")
    names = parse_names(data["names"], where("names")) if data.get("names") is not None else None
    nc = data.get("nc")
    if nc is not None:
        try:
            if float(nc) != int(float(nc)):
                raise ValueError
            nc = int(float(nc))
        except (TypeError, ValueError):
            raise DataError(f"{where('nc')}: 'nc' must be an integer, got {nc!r}") from None
        if names is not None and len(names) != nc:
            raise DataError(f"{where('nc')}: nc is {nc} but 'names' has {len(names)} entries")
    if names is None and nc is None:
        raise DataError(f"{path}: neither 'names' nor 'nc' is given")
    root_value = data.get("path")
    root = path.parent
    if isinstance(root_value, str) and root_value.strip():
        rp = Path(os.path.expanduser(root_value))
        if rp.is_absolute():
            root = rp
        else:  # beside the YAML first (what users mean), then Ultralytics' current directory
            root = next((c for c in (path.parent / rp, Path.cwd() / rp) if c.is_dir()), path.parent / rp)
    src = UltralyticsSource(path, data, lines, root.resolve() if root.exists() else root, issues)
    src.names = names
    src.names_origin = f"{path} 'names'" if names else ""
    src.num_classes = len(names) if names is not None else nc
    return src


def find_yaml(folder: Path) -> Path | None:
    """The data YAML of ``folder``: ``data.yaml``, else the only ``*.yaml``/``*.yml`` with a
    ``train`` key."""
    for name in ("data.yaml", "data.yml", "dataset.yaml"):
        if (folder / name).is_file():
            return folder / name
    hits = []
    for p in sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")]):
        try:
            d = yaml.safe_load(p.read_text(encoding="utf-8-sig"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError):
            continue
        if isinstance(d, dict) and "train" in d and ("names" in d or "nc" in d):
            hits.append(p)
    return hits[0] if len(hits) == 1 else None


class UltralyticsLayout(DatasetLayout):
    priority = 100
    title = "Ultralytics / Roboflow data.yaml"
    markers = "data.yaml (or one *.yaml with train/val/names) in the folder, or the YAML file itself"

    def detect(self, path: Path) -> bool:
        if path.is_file():
            return path.suffix.lower() in (".yaml", ".yml")
        return path.is_dir() and find_yaml(path) is not None

    def open(self, path: Path) -> DatasetSource:
        return open_yaml(path if path.is_file() else find_yaml(path))


def tree_splits(folder: Path) -> dict[str, str]:
    """``images/<split>/`` folders of an images/ + labels/ tree (``train``, ``val``/``valid``,
    ``test``); ``{"train": "images"}``-like mapping when there are no split folders."""
    images = folder / "images"
    subs = {split_key(d.name): f"images/{d.name}" for d in sorted(images.iterdir()) if d.is_dir()}
    return {k: v for k, v in subs.items() if k in SPLIT_KEYS}


class UltralyticsTreeLayout(DatasetLayout):
    """``images/`` + ``labels/`` without a YAML (the layout of issue 16's example)."""

    priority = 500
    title = "images/ + labels/ tree (Ultralytics layout without a YAML)"
    markers = "images/ and labels/ folders side by side (split folders train/, val/ or valid/, test/ optional)"

    def detect(self, path: Path) -> bool:
        return path.is_dir() and (path / "images").is_dir() and (path / "labels").is_dir()

    def open(self, path: Path) -> DatasetSource:
        splits = tree_splits(path)
        data: dict[str, Any] = dict(splits) if "train" in splits else {ALL: "images"}
        src = UltralyticsSource(path / "images", data, {}, path, [])
        src.tree = True
        src.names, src.names_origin = names_near(path, parent_too=False)
        src.num_classes = len(src.names) if src.names else None
        return src
