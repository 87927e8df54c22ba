"""Scanning a YOLO dataset: images + labels -> ``DatasetItem`` list and a summary.

``scan_dataset`` finds the images (``utod.data.discovery``), checks each file header cheaply
(``utod.data.images.sniff_image``; full decoding happens once, when the image cache is
built, and images OpenCV cannot decode are dropped there with a message), and reads the
label beside each image by the rules of ``utod.data.labels``. An image without a label file,
or with an empty one, is a background image. Problems are reported as
``path:line: problem — action`` and never stop the scan; only an empty result is an error.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from utod.data.discovery import find_images
from utod.data.images import sniff_image
from utod.data.labels import label_path_for, read_label_file
from utod.errors import DataError

MAX_LOGGED_ISSUES = 20


@dataclass
class DatasetItem:
    """One image and its ground truth.

    image_path: path of the image file.
    boxes:  float32 [N, 4] normalised (cx, cy, w, h), clipped to the image.
    labels: int32 [N] raw class ids (as written in the label file).
    """

    image_path: str
    boxes: np.ndarray
    labels: np.ndarray

    @property
    def num_boxes(self) -> int:
        return int(len(self.labels))


@dataclass
class DatasetSummary:
    """Counts printed before training (``format()``).

    class_counts: raw class id -> number of boxes. ``selected`` lists the raw ids that train
    (``None``: all); boxes of other ids are counted but ignored during training.
    """

    source: str = ""
    images: int = 0
    background_images: int = 0
    missing_labels: int = 0  # images without any label file/record (part of background_images)
    boxes: int = 0
    skipped_lines: int = 0
    clipped_boxes: int = 0
    skipped_images: int = 0
    class_counts: dict[int, int] = field(default_factory=dict)
    selected: list[int] | None = None
    names: dict[int, str] = field(default_factory=dict)

    def format(self) -> str:
        lines = [
            f"dataset {self.source}: {self.images} images ({self.background_images} background"
            + (f", {self.missing_labels} of them without a label file" if self.missing_labels else "")
            + f"), {self.boxes} boxes",
            f"  skipped: {self.skipped_images} images, {self.skipped_lines} label lines; "
            f"{self.clipped_boxes} boxes clipped to the image",
        ]
        if self.class_counts:
            lines.append("  boxes per class (raw id):")
            for cid in sorted(self.class_counts):
                name = self.names.get(cid, "")
                note = ""
                if self.selected is not None:
                    note = f" -> class {self.selected.index(cid)}" if cid in self.selected else " (not selected, ignored)"
                label = f" {name}" if name else ""
                lines.append(f"    {cid}{label}: {self.class_counts[cid]}{note}")
        if self.selected is not None:
            missing = [c for c in self.selected if c not in self.class_counts]
            if missing:
                lines.append(f"  selected classes without any box: {missing}")
        return "\n".join(lines)


@dataclass
class ScanResult:
    items: list[DatasetItem]
    issues: list[str]
    summary: DatasetSummary


def scan_dataset(
    image_dir: str | os.PathLike,
    *,
    class_ids: list[int] | None = None,
    num_classes: int | None = None,
    log: Callable[[str], None] | None = print,
    names: list[str] | None = None,
) -> ScanResult:
    """Find the images of ``image_dir`` (folder, recursively, or list file) and read labels.

    ``class_ids``: the selected raw ids (``--classes``); other ids are legal and ignored later.
    ``num_classes``: without a subset, ids ``>= num_classes`` are reported and skipped.
    ``names``: class names for the summary, aligned with ``class_ids`` when given (as
    ``ClassSpec.names``), else indexed by raw id. For ``--num-classes``/``--names`` without a
    ``--classes`` subset pass ``class_ids=None`` so that ids >= ``num_classes`` are reported. ``log`` receives the first
    ``MAX_LOGGED_ISSUES`` issues and a count of the rest (``None``: silent).
    Items come back sorted by path (folders) or in list-file order.
    Raises ``DataError`` when no usable image is found.
    """
    paths, issues = find_images(image_dir)
    summary = DatasetSummary(source=str(image_dir), selected=list(class_ids) if class_ids is not None else None)
    if names:
        ids = class_ids if class_ids is not None else range(len(names))
        summary.names = {cid: n for cid, n in zip(ids, names)}
    summary.skipped_images = len(issues)
    items: list[DatasetItem] = []
    for path in paths:
        problem = sniff_image(path)
        if problem:
            issues.append(f"{path}:1: {problem} — image skipped")
            summary.skipped_images += 1
            continue
        lf = read_label_file(label_path_for(path), num_classes=num_classes, class_ids=class_ids)
        issues.extend(lf.issues)
        summary.skipped_lines += lf.skipped_lines
        summary.clipped_boxes += lf.clipped_boxes
        items.append(DatasetItem(path, lf.boxes, lf.labels))
        if len(lf.labels) == 0:
            summary.background_images += 1
        summary.boxes += len(lf.labels)
        for cid, cnt in zip(*np.unique(lf.labels, return_counts=True)):
            summary.class_counts[int(cid)] = summary.class_counts.get(int(cid), 0) + int(cnt)
    summary.images = len(items)
    if log is not None:
        for msg in issues[:MAX_LOGGED_ISSUES]:
            log(msg)
        if len(issues) > MAX_LOGGED_ISSUES:
            log(f"... and {len(issues) - MAX_LOGGED_ISSUES} more dataset issues (see ScanResult.issues)")
    if not items:
        raise DataError(f"no usable images found in '{image_dir}' "
                        f"(looked for .jpg .jpeg .png .bmp .webp, recursively)")
    return ScanResult(items, issues, summary)


def print_summary(summary: DatasetSummary, stream=None) -> None:
    print(summary.format(), file=stream or sys.stdout)
