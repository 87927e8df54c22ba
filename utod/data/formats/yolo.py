"""YOLO labels found from the images: a folder (searched recursively), an image list file,
or UHD's fixed ``--train-list`` / ``--val-list`` pair.

Each image's label is the ``.txt`` of the Ultralytics rule (``.../images/...`` ->
``.../labels/...``) when the path has an ``images`` component and that file exists, else
the ``.txt`` beside the image. Class names: ``obj.names`` or ``classes.txt`` in the folder
(or beside the list file), else ``obj.names`` in the parent folder (a CVAT
``obj_train_data/`` folder given directly, as the seed's README does).
"""

from __future__ import annotations

import os
from pathlib import Path

from utod.data.classes import read_names_file
from utod.data.discovery import find_images_in_dir, is_image_name, read_list_file
from utod.data.formats.base import (
    ALL,
    DatasetLayout,
    DatasetSource,
    IssueLog,
    LabelRules,
    ReadResult,
    all_subfolders,
    image_stems,
    read_yolo_images,
    report_orphan_labels,
)
from utod.errors import DataError

NAMES_FILES = ("obj.names", "classes.txt")
EXPECTED = "a YOLO .txt beside each image (x.jpg -> x.txt), or labels/.../x.txt for images/.../x.jpg"


def names_near(folder: Path, *, parent_too: bool = True) -> tuple[list[str] | None, str]:
    """Class names from ``obj.names`` / ``classes.txt`` in ``folder`` (or ``obj.names`` in its
    parent) and the file they came from."""
    candidates = [folder / n for n in NAMES_FILES]
    if parent_too:
        candidates.append(folder.parent / "obj.names")
    for c in candidates:
        if c.is_file():
            return read_names_file(str(c)), str(c)
    return None, ""


def label_folders(paths: list[str]) -> list[str]:
    """Folders where labels of ``paths`` may live (the image folders and their labels/ twins),
    for the orphan-label report."""
    dirs = {os.path.dirname(p) for p in paths}
    out = set(dirs)
    for d in dirs:
        parts = d.split(os.sep)
        if "images" in parts:
            k = len(parts) - 1 - parts[::-1].index("images")
            out.add(os.sep.join(parts[:k] + ["labels"] + parts[k + 1:]))
    return sorted(out)


def read_split_images(paths: list[str], rules: LabelRules, log: IssueLog, result: ReadResult,
                      orphan_roots: list[str] | None = None):
    """Items of ``paths`` plus a report of label files (under ``orphan_roots``, default the
    image folders) that no image uses."""
    items = read_yolo_images(paths, rules, log, result)
    # an orphan is a label with no image on disk at all (an unlisted image is not an orphan)
    on_disk = set(paths)
    for d in sorted({os.path.dirname(p) for p in paths}):
        try:
            on_disk.update(os.path.join(d, f) for f in os.listdir(d) if is_image_name(f))
        except OSError:
            pass
    report_orphan_labels(orphan_roots if orphan_roots is not None else label_folders(paths),
                         result.used_labels, log, image_stems(on_disk))
    return items


class YoloSource(DatasetSource):
    """A folder of images or an image list file; no split given (the ratio split applies)."""

    expected_labels = EXPECTED

    def __init__(self, path: Path) -> None:
        self.path = path
        folder = path if path.is_dir() else path.parent
        self.names, self.names_origin = names_near(folder, parent_too=path.is_dir())

    def read(self, rules: LabelRules) -> ReadResult:
        log = IssueLog()
        result = ReadResult({}, log)
        p = self.path
        if p.is_dir():
            paths = find_images_in_dir(p, log.issues)  # repeats through symlinks reported
            items = read_split_images(paths, rules, log, result,
                                          orphan_roots=all_subfolders(str(p)) + label_folders(paths))
        else:
            if is_image_name(p.name):
                paths = [str(p)]
            else:
                paths, missing = read_list_file(p)
                log.extend(missing)
                log.skipped_images += len(missing)
            items = read_split_images(paths, rules, log, result)
        result.splits[ALL] = items
        return result

    def describe(self) -> str:
        kind = "folder" if self.path.is_dir() else "list file"
        return f"YOLO labels, image {kind} {self.path}"


class ListsSource(DatasetSource):
    """UHD's fixed split: ``--train-list`` and optionally ``--val-list`` (image list files).

    List lines are found as UHD finds them: relative to the list file, then ``image_dir``
    (``--image-dir``/``--data`` given beside the lists), then its file name in ``image_dir``,
    then the current directory. The two lists are the train and val sets as they are; when
    both flags name the same file (as UHD's README does, with ``--val-split``), that one list
    is split by the ratio split instead of validating on the training images."""

    layout = "lists"  # not a registered layout: chosen by the --train-list flag

    def __init__(self, train_list: Path, val_list: Path | None, image_dir: Path | None = None) -> None:
        for p, flag in ((train_list, "--train-list"), (val_list, "--val-list")):
            if p is not None and not p.is_file():
                raise DataError(f"{flag} {p}: no such list file")
        if image_dir is not None and not image_dir.is_dir():
            raise DataError(f"--image-dir {image_dir} (beside --train-list) is not a folder")
        self.path = train_list
        self.val_list = val_list
        self.image_dir = image_dir
        self.same_list = val_list is not None and train_list.resolve() == val_list.resolve()
        self.names, self.names_origin = names_near(train_list.parent, parent_too=False)
        if self.names is None and image_dir is not None:
            self.names, self.names_origin = names_near(image_dir)

    def read(self, rules: LabelRules) -> ReadResult:
        log = IssueLog()
        result = ReadResult({}, log)
        dirs = [self.image_dir] if self.image_dir is not None else []
        lists = (("train", self.path),) if self.same_list else (("train", self.path), ("val", self.val_list))
        for key, lst in lists:
            if lst is None:
                continue
            paths, missing = read_list_file(lst, extra_bases=dirs, basename_dirs=dirs)
            log.extend(missing)
            log.skipped_images += len(missing)
            result.splits[ALL if self.same_list else key] = read_split_images(paths, rules, log, result)
        if self.same_list:
            result.notes.append(f"--train-list and --val-list are the same file ({self.path}): it is split by "
                                f"--train-split/--val-split, so no image validates that it trained on")
        return result

    def describe(self) -> str:
        return f"fixed lists: train {self.path}" + (f", val {self.val_list}" if self.val_list else "")


class YoloLayout(DatasetLayout):
    """The fallback: any folder, image list file or single image."""

    priority = 1000
    title = "YOLO .txt labels beside the images (Darknet / UHD / LabelImg)"
    markers = "images with x.txt beside x.jpg, searched recursively; or an image list file"

    def detect(self, path: Path) -> bool:
        return path.is_dir() or path.is_file()

    def open(self, path: Path) -> DatasetSource:
        return YoloSource(path)
