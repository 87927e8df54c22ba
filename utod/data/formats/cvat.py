"""CVAT "YOLO 1.1" exports (the Darknet layout): ``obj.data``, ``obj.names``, one image list
per subset (``train.txt``, ``valid.txt``) and ``obj_<subset>_data/`` with a ``.txt`` label
beside each image.

``obj.data`` holds ``key = value`` lines: ``classes``, ``names`` (the names file), ``backup``,
and one line per subset (any other key) naming its list file. CVAT writes paths with a
``data/`` prefix (Darknet's working folder); utod resolves them against the folder of
``obj.data`` with and without that prefix. A subset whose list file is missing is read from
its ``obj_<subset>_data/`` folder (reported). Subsets: ``train``; ``valid``/``val`` is the
validation set; others (``test``) are kept apart.
"""

from __future__ import annotations

import re
from pathlib import Path

from utod.data.classes import read_names_file
from utod.data.discovery import find_images_in_dir, read_list_file
from utod.data.formats.base import (
    DatasetLayout,
    DatasetSource,
    IssueLog,
    LabelRules,
    ReadResult,
    split_key,
)
from utod.data.formats.yolo import read_split_images
from utod.errors import DataError

_LINE = re.compile(r"^\s*(\w+)\s*=\s*(.*?)\s*$")
NON_SUBSET_KEYS = {"classes", "names", "backup", "eval", "results"}
PREFIXES = ("data/", "./data/", "./")


class CvatSource(DatasetSource):
    expected_labels = "x.txt beside each listed image in obj_<subset>_data/"

    def __init__(self, path: Path) -> None:
        self.path = path
        self.folder = path.parent
        self.issues: list[str] = []
        self.subsets: dict[str, tuple[str, int]] = {}  # subset -> (list value, line)
        try:
            lines = path.read_text(encoding="utf-8-sig").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise DataError(f"cannot read {path}: {exc}") from None
        values: dict[str, tuple[str, int]] = {}
        for lineno, raw in enumerate(lines, start=1):
            if not raw.strip() or raw.lstrip().startswith("#"):
                continue
            m = _LINE.match(raw)
            if not m:
                self.issues.append(f"{path}:{lineno}: expected 'key = value', got '{raw.strip()}' — line ignored")
                continue
            values[m.group(1)] = (m.group(2), lineno)
        for key, (value, lineno) in values.items():
            if key not in NON_SUBSET_KEYS:
                self.subsets[key] = (value, lineno)
        self.names, self.names_origin = self._names(values)
        if "classes" in values:
            value, lineno = values["classes"]
            try:
                self.num_classes = int(value)
            except ValueError:
                raise DataError(f"{path}:{lineno}: classes = '{value}' is not an integer") from None
            if self.names is not None and len(self.names) != self.num_classes:
                self.issues.append(f"{path}:{lineno}: classes = {self.num_classes} but {self.names_origin} has "
                                   f"{len(self.names)} names — the names count is used")
                self.num_classes = len(self.names)
        elif self.names is not None:
            self.num_classes = len(self.names)
        if not self.subsets:
            raise DataError(f"{path}: no subset line (e.g. 'train = data/train.txt')")

    def _resolve(self, value: str) -> Path:
        cands = [self.folder / value] + [self.folder / value[len(p):] for p in PREFIXES if value.startswith(p)]
        return next((c for c in cands if c.exists()), cands[-1])

    def _names(self, values: dict[str, tuple[str, int]]) -> tuple[list[str] | None, str]:
        if "names" in values:
            value, lineno = values["names"]
            p = self._resolve(value)
            if p.is_file():
                return read_names_file(str(p)), str(p)
            self.issues.append(f"{self.path}:{lineno}: names file '{value}' not found — looking for obj.names")
        p = self.folder / "obj.names"
        if p.is_file():
            return read_names_file(str(p)), str(p)
        return None, ""

    def read(self, rules: LabelRules) -> ReadResult:
        log = IssueLog()
        log.extend(self.issues)
        result = ReadResult({}, log)
        for subset, (value, lineno) in self.subsets.items():
            lst = self._resolve(value)
            if lst.is_file():
                paths, missing = read_list_file(lst, extra_bases=[self.folder], strip_prefixes=PREFIXES)
                log.extend(missing)
                log.skipped_images += len(missing)
            else:
                folder = self.folder / f"obj_{subset}_data"
                if not folder.is_dir():
                    raise DataError(f"{self.path}:{lineno}: list file '{value}' of subset '{subset}' not found, "
                                    f"and there is no {folder.name}/ folder")
                log.add(f"{self.path}:{lineno}", f"list file '{value}' not found",
                        f"every image of {folder.name}/ used")
                paths = find_images_in_dir(folder)
            key = split_key(subset)
            result.splits.setdefault(key, []).extend(read_split_images(paths, rules, log, result))
        if "train" not in result.splits and len(result.splits) == 1:  # one unnamed subset: ratio split
            from utod.data.formats.base import ALL

            result.splits = {ALL: next(iter(result.splits.values()))}
        return result

    def describe(self) -> str:
        return f"CVAT YOLO 1.1 export {self.path} (subsets: {', '.join(self.subsets)})"


class CvatLayout(DatasetLayout):
    priority = 200
    title = "CVAT YOLO 1.1 export (Darknet obj.data)"
    markers = "obj.data (with obj.names, train.txt, obj_train_data/) in the folder, or the .data file itself"

    def detect(self, path: Path) -> bool:
        if path.is_file():
            return path.suffix.lower() == ".data"
        return path.is_dir() and (path / "obj.data").is_file()

    def open(self, path: Path) -> DatasetSource:
        return CvatSource(path if path.is_file() else path / "obj.data")
