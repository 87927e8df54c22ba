"""What every dataset-layout reader shares: the source object it returns, the per-image
reading of YOLO ``.txt`` labels, split names, and the issue log.

Every reader yields :class:`utod.data.dataset.DatasetItem` objects (image path, boxes
normalised ``cx, cy, w, h`` float32 ``[N, 4]``, raw class ids int32 ``[N]``), so the split,
the image cache and the input pipeline never know which layout the data came from.

Issues are ``location: problem — action`` strings, ``location`` being ``file:line`` for text
files, ``file:$.json.path`` for JSON and ``file:<xml path>`` for XML.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from utod.data.dataset import DatasetItem, DatasetSummary
from utod.data.discovery import is_image_name
from utod.data.images import sniff_image
from utod.data.labels import read_label_file

ALL = "all"
"""Split key of a source that defines no train/val split (the ratio split then applies)."""

SPLIT_ALIASES = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val",
                 "minival": "minival", "test": "test", "testing": "test"}


def split_key(name: str) -> str:
    """Normalise a split/subset name: ``valid``/``validation``/``val2017`` -> ``val``,
    ``train2017``/``instances_train`` -> ``train``, ``test-dev`` -> ``test``; others are kept."""
    base = name.strip().lower().removeprefix("instances_").removeprefix("obj_").removesuffix("_data")
    base = base.rstrip("0123456789").rstrip("-_")
    for prefix in ("test",):  # test-dev, test_challenge
        if base.startswith(prefix):
            return "test"
    return SPLIT_ALIASES.get(base, name.strip())


@dataclass
class LabelRules:
    """How class ids are checked while labels are read.

    ``max_class``: ids ``>= max_class`` are reported and skipped (``None``: no upper bound,
    e.g. a ``--classes`` subset on a layout that declares no class count).
    ``names``: the user's class names (``--names``), for layouts that label by name (VOC)."""

    max_class: int | None = None
    names: list[str] | None = None
    check_images: bool = True  # False: no header check (commands that read labels only)


class IssueLog:
    """Collects issue messages and the counters of :class:`DatasetSummary`."""

    def __init__(self) -> None:
        self.issues: list[str] = []
        self.skipped_images = 0
        self.skipped_lines = 0
        self.clipped_boxes = 0

    def add(self, location: str, problem: str, action: str) -> None:
        self.issues.append(f"{location}: {problem} — {action}")

    def image_skipped(self, location: str, problem: str) -> None:
        self.add(location, problem, "image skipped")
        self.skipped_images += 1

    def extend(self, messages: Iterable[str]) -> None:
        self.issues.extend(messages)


def clip_normalised_box(x1: float, y1: float, x2: float, y2: float, *, where: str, shown: object,
                        image_wh: tuple[float, float], log: IssueLog, skip_action: str
                        ) -> tuple[float, float, float, float] | None:
    """Clip a normalised corner box (x1, y1, x2, y2 as fractions of the image) to the image.

    Returns the box as normalised (cx, cy, w, h), or None when nothing of it lies inside the image
    (reported at ``where`` and counted as a skipped line). A box that reaches outside the image by
    more than 1e-6 is clipped, reported and counted in ``log.clipped_boxes``. ``shown`` is the box as
    the user wrote it (for the message); ``image_wh`` is the image size in pixels.
    """
    W, H = image_wh
    outside = x1 < -1e-6 or y1 < -1e-6 or x2 > 1 + 1e-6 or y2 > 1 + 1e-6
    x1, y1, x2, y2 = (min(max(v, 0.0), 1.0) for v in (x1, y1, x2, y2))
    if x2 <= x1 or y2 <= y1:
        log.add(where, f"box {shown} lies outside the {W:g}x{H:g} image", skip_action)
        log.skipped_lines += 1
        return None
    if outside:
        log.add(where, f"box {shown} extends outside the {W:g}x{H:g} image", "clipped to the image and kept")
        log.clipped_boxes += 1
    return (x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1


@dataclass
class ReadResult:
    """What a source's ``read`` returns.

    splits: split key (``train``, ``val``, ``test``, ... or :data:`ALL`) -> items.
    labelled_images: images that have a label record (a label file, even an empty one; an XML
    file; any image listed in a COCO JSON), the others count as "without a label".
    unlabelled_examples: a few images without a label record, with where it was expected.
    notes: informational lines for the log (e.g. how category ids were mapped), not issues.
    """

    splits: dict[str, list[DatasetItem]]
    log: IssueLog
    labelled_images: int = 0
    unlabelled_images: int = 0
    unlabelled_examples: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # informational lines for the log (not issues)
    used_labels: set[str] = field(default_factory=set)  # real paths of the label files read

    @property
    def issues(self) -> list[str]:
        return self.log.issues

    def all_items(self) -> list[DatasetItem]:
        return [it for items in self.splits.values() for it in items]


class DatasetSource(ABC):
    """One dataset description, opened (metadata and class names read) but not yet scanned.

    ``names``: class names indexed by raw class id, ``None`` when the layout has none.
    ``num_classes``: the class count the description declares (``None``: not declared).
    ``expected_labels``: where this layout looks for labels, for error messages.
    ``layout``: the registered name of the layout that opened it (set by ``open_dataset``).
    """

    layout: str = ""
    path: Path
    names: list[str] | None = None
    names_origin: str = ""
    num_classes: int | None = None
    expected_labels: str = ""

    @abstractmethod
    def read(self, rules: LabelRules) -> ReadResult:
        """Scan images and labels by ``rules``."""

    def describe(self) -> str:
        return f"{self.layout} dataset {self.path}"


class DatasetLayout(ABC):
    """A dataset layout reader, registered in :mod:`utod.data.formats`.

    ``name`` is the name the layout is registered under (set by the registry). ``detect(path)`` says whether ``path`` (a file or folder the user gave) is in this
    layout; ``open(path)`` reads the description. ``markers`` names what ``detect`` looks
    for (shown when no layout matches); ``priority``: lower is tried first (the fallback
    that accepts any folder has 1000)."""

    priority: int = 500
    name: str = ""
    title: str = ""
    markers: str = ""

    @abstractmethod
    def detect(self, path: Path) -> bool:
        ...

    @abstractmethod
    def open(self, path: Path) -> DatasetSource:
        ...


# ------------------------------------------------------------------ YOLO .txt labels
def path_key(path: str) -> str:
    """Absolute, normalised form of ``path`` used to compare files (cheap: no symlink resolution,
    which costs several stat calls per path on a large dataset)."""
    return os.path.normcase(os.path.abspath(path))


def label_candidates(image_path: str) -> list[str]:
    """Label files tried for ``image_path``, in order: the Ultralytics rule (the last
    ``/images/`` path component replaced by ``/labels/``, extension ``.txt``) when the path has
    such a component, then the ``.txt`` beside the image (Darknet, CVAT, UHD)."""
    stem = os.path.splitext(image_path)[0]
    out = []
    sep = os.sep
    marker = f"{sep}images{sep}"
    probe = stem if stem.startswith(sep) else sep + stem
    k = probe.rfind(marker)
    if k >= 0:
        swapped = probe[:k] + f"{sep}labels{sep}" + probe[k + len(marker):]
        out.append((swapped if stem.startswith(sep) else swapped[1:]) + ".txt")
    out.append(stem + ".txt")
    return out


class _DirIndex:
    """Case-insensitive listing of folders, cached, to find ``x.TXT`` when ``x.txt`` is asked."""

    def __init__(self) -> None:
        self._dirs: dict[str, dict[str, str]] = {}

    def near_miss(self, path: str) -> str | None:
        folder, name = os.path.split(path)
        if folder not in self._dirs:
            try:
                self._dirs[folder] = {n.lower(): n for n in os.listdir(folder or ".")}
            except OSError:
                self._dirs[folder] = {}
        hit = self._dirs[folder].get(name.lower())
        return os.path.join(folder, hit) if hit and hit != name else None


def read_yolo_images(paths: Iterable[str], rules: LabelRules, log: IssueLog, result: ReadResult,
                     label_for=label_candidates) -> list[DatasetItem]:
    """Items for image ``paths`` with YOLO ``.txt`` labels found by ``label_for(path)``
    (candidates, first existing wins). Images failing the header check are skipped; an image
    without a label file is a background item and is counted in ``result``; a label file whose
    name differs only in letter case is read and reported."""
    items: list[DatasetItem] = []
    index = _DirIndex()
    owner: dict[str, str] = {}  # label file -> the image that read it first
    for path in paths:
        problem = sniff_image(path) if rules.check_images else None
        if problem:
            log.image_skipped(f"{path}:1", problem)
            continue
        candidates = label_for(path)
        label = next((c for c in candidates if os.path.isfile(c)), None)
        if label is None:
            near = next((m for m in (index.near_miss(c) for c in candidates) if m), None)
            if near is not None:
                log.add(near, f"label file name differs in letter case from the expected '{candidates[0]}'",
                        "read anyway (rename it for other tools)")
                label = near
        if label is None:
            result.unlabelled_images += 1
            if len(result.unlabelled_examples) < 3:
                result.unlabelled_examples.append(f"{path} -> {' or '.join(candidates)}")
            items.append(DatasetItem(path, np.zeros((0, 4), np.float32), np.zeros((0,), np.int32)))
            continue
        result.labelled_images += 1
        real = path_key(label)
        if real in owner:  # a.jpg and a.png share a.txt
            log.add(f"{label}:1", f"label file of '{path}' is also the label of '{owner[real]}'",
                    "read for both (rename one image)")
        owner.setdefault(real, path)
        result.used_labels.add(real)
        lf = read_label_file(label, num_classes=rules.max_class)
        log.extend(lf.issues)
        log.skipped_lines += lf.skipped_lines
        log.clipped_boxes += lf.clipped_boxes
        items.append(DatasetItem(path, lf.boxes, lf.labels))
    return items


def looks_like_label_file(path: str) -> bool:
    """True when the first non-blank line of ``path`` starts with numbers (a YOLO row); list
    files, ``classes.txt`` and READMEs are not label files."""
    try:
        with open(path, encoding="utf-8-sig", errors="replace") as f:
            for line in f:
                parts = line.split()
                if not parts or parts[0].startswith("#"):
                    continue
                try:
                    [float(p) for p in parts[:5]]
                except ValueError:
                    return False
                return len(parts) >= 5
    except OSError:
        return False
    return False


def report_orphan_labels(folders: Iterable[str], used_labels: set[str], log: IssueLog,
                         image_stems: set[str]) -> None:
    """Report label files directly in ``folders`` (not recursive) that belong to no image
    (nothing is trained from them). ``used_labels``: real paths of label files read;
    ``image_stems``: real-path label stems of every image found (so the label of a skipped
    image is not an orphan)."""
    seen: set[str] = set()
    for folder in folders:
        try:
            names = sorted(os.listdir(folder))
        except OSError:
            continue
        for f in names:
            if not f.lower().endswith(".txt"):
                continue
            p = path_key(os.path.join(folder, f))
            if p in seen or p in used_labels or os.path.splitext(p)[0] in image_stems or not os.path.isfile(p):
                continue
            seen.add(p)
            if looks_like_label_file(p):
                log.add(f"{os.path.join(folder, f)}:1", "label file without a matching image",
                        "not used (its boxes are not trained)")


def all_subfolders(root: str) -> list[str]:
    """``root`` and every folder below it (hidden ones skipped, symlinks followed once)."""
    out, seen = [], set()
    for d, dirs, _ in os.walk(root, followlinks=True):
        real = os.path.realpath(d)  # real path: a symlink loop must end
        if real in seen:
            dirs[:] = []
            continue
        seen.add(real)
        dirs[:] = [x for x in dirs if not x.startswith(".")]
        out.append(d)
    return out


def image_stems(paths: Iterable[str]) -> set[str]:
    out = set()
    for p in paths:
        for c in label_candidates(p):
            out.add(os.path.splitext(path_key(c))[0])
    return out


def finish_result(result: ReadResult, names: dict[int, str] | None = None, source: str = "") -> DatasetSummary:
    """The :class:`DatasetSummary` over every split of ``result``."""
    s = DatasetSummary(source=source)
    s.names = dict(names or {})
    for it in result.all_items():
        s.images += 1
        s.boxes += it.num_boxes
        if it.num_boxes == 0:
            s.background_images += 1
        for cid, cnt in zip(*np.unique(it.labels, return_counts=True)):
            s.class_counts[int(cid)] = s.class_counts.get(int(cid), 0) + int(cnt)
    s.missing_labels = result.unlabelled_images
    s.skipped_images = result.log.skipped_images
    s.skipped_lines = result.log.skipped_lines
    s.clipped_boxes = result.log.clipped_boxes
    return s


def is_image_file(path: Path) -> bool:
    return path.is_file() and is_image_name(path.name)
