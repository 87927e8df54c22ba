"""COCO instances JSON, read directly (no converted copy of the dataset).

Accepted: one ``*.json`` file (all its images form one pool: the ratio split applies), or a
folder holding ``annotations/instances_<split>.json`` (official COCO, CVAT/datumaro), Roboflow's
``<split>/_annotations.coco.json``, or ``*.json`` files at its top; with several files each
one is the split its name says (``train``, ``val``/``valid``, ``test``).

* Classes: the categories of every file, sorted by id, become the contiguous classes 0..K-1
  with their names kept (ids 1, 3, 7 -> classes 0, 1, 2). Roboflow's root category (no
  annotation of its own, the supercategory of all others) is dropped, and said so.
* Boxes: ``bbox`` = ``[x, y, w, h]`` pixels (top-left corner) -> normalised ``cx, cy, w, h``
  by the image's ``width``/``height`` (read from the file when the JSON lacks them). Boxes
  outside the image are clipped (reported); ``w <= 0``/``h <= 0`` and ``iscrowd: 1`` regions
  are reported and not trained. An annotation without ``bbox`` gets the box around its
  polygon ``segmentation``.
* Images are looked up below the first of: the JSON's folder, its ``images/``, the dataset
  root's ``<split>/``, ``images/<split>/``, ``images/`` and the root itself, that holds them.
* Reported with ``file:$.json.path``: images whose file is missing, annotations whose image
  id or category id is unknown, bad ``bbox`` values. An image with no annotation is a
  background image (COCO lists it on purpose).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from utod.data.dataset import DatasetItem
from utod.data.formats.base import (
    ALL,
    DatasetLayout,
    DatasetSource,
    IssueLog,
    LabelRules,
    ReadResult,
    clip_normalised_box,
    split_key,
)
from utod.data.formats.exif import frame_problem
from utod.data.images import read_image_rgb, sniff_image
from utod.errors import DataError

ROBOFLOW_JSON = "_annotations.coco.json"
PROBE = 50


def load_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read {path}: {exc}") from None
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}:{exc.lineno}: invalid JSON ({exc.msg})") from None
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise DataError(f"{path}: not a COCO instances file (no 'images' list at $.images)")
    for key in ("annotations", "categories"):
        if not isinstance(data.get(key, []), list):
            raise DataError(f"{path}: $.{key} must be a list")
    return data


def is_coco_json(path: Path) -> bool:
    """Cheap check on the first 64 KB (a COCO file's first list may be megabytes long): COCO
    images (``"images"`` with ``"file_name"``), annotations (``"bbox"``) or categories."""
    try:
        with open(path, encoding="utf-8-sig", errors="replace") as f:
            head = f.read(1 << 16)
    except OSError:
        return False
    return (('"images"' in head and '"file_name"' in head) or ('"annotations"' in head and '"bbox"' in head)
            or ('"categories"' in head and '"supercategory"' in head))


def json_files(folder: Path) -> list[Path]:
    """The COCO files of a dataset folder (see the module docstring)."""
    ann = folder / "annotations"
    if ann.is_dir():
        inst = sorted(ann.glob("instances_*.json"))  # by name: the official and CVAT layouts
        hits = inst or sorted(p for p in ann.glob("*.json") if is_coco_json(p))
        if hits:
            return hits
    rf = sorted(p for p in folder.glob(f"*/{ROBOFLOW_JSON}"))
    if rf:
        return rf
    return sorted(p for p in folder.glob("*.json") if is_coco_json(p))


def _split_of(path: Path, folder_given: bool) -> str:
    if not folder_given:
        return ALL
    name = path.parent.name if path.name == ROBOFLOW_JSON else path.stem
    return split_key(name)


class CocoSource(DatasetSource):
    expected_labels = "entries of $.annotations in the COCO JSON"

    def __init__(self, path: Path, files: list[Path], folder_given: bool) -> None:
        self.path = path
        self.root = path if path.is_dir() else path.parent
        self.files = [(f, _split_of(f, folder_given), load_json(f)) for f in files]
        keys = [k for _, k, _ in self.files]
        if folder_given and (len(set(keys)) != len(keys) or "train" not in keys):
            self.files = [(f, ALL, d) for f, _, d in self.files]  # splits not recognisable: one pool
        self.notes: list[str] = []
        self._categories()

    def _categories(self) -> None:
        cats: dict[int, str] = {}
        supers: dict[int, str] = {}
        used: set[int] = set()
        for f, _, data in self.files:
            for i, c in enumerate(data.get("categories", [])):
                where = f"{f}:$.categories[{i}]"
                if not isinstance(c, dict) or not isinstance(c.get("id"), int) or isinstance(c.get("id"), bool):
                    raise DataError(f"{where}: a category needs an integer 'id'")
                cid, name = c["id"], str(c.get("name", c["id"]))
                if cid in cats and cats[cid] != name:
                    raise DataError(f"{where}: category id {cid} is '{name}' here but '{cats[cid]}' elsewhere")
                cats[cid] = name
                supers[cid] = str(c.get("supercategory", ""))
            for a in data.get("annotations", []):
                if isinstance(a, dict) and isinstance(a.get("category_id"), int):
                    used.add(a["category_id"])
        for cid in sorted(cats):  # Roboflow's root category: unused, the supercategory of the others
            others = [k for k in cats if k != cid]
            if cid not in used and others and all(supers[k] == cats[cid] for k in others):
                self.notes.append(f"{self.files[0][0]}: category {cid} '{cats[cid]}' has no annotations and is the "
                                  f"supercategory of all others (Roboflow's root): not a class")
                del cats[cid]
        if not cats:
            raise DataError(f"{self.files[0][0]}: no categories at $.categories")
        self.cat_ids = sorted(cats)
        self.class_of = {cid: k for k, cid in enumerate(self.cat_ids)}
        self.names = [cats[c] for c in self.cat_ids]
        self.names_origin = f"COCO categories of {self.files[0][0]}" + (" (sorted by id)" if len(cats) > 1 else "")
        self.num_classes = len(self.names)
        if self.cat_ids != list(range(self.cat_ids[0], self.cat_ids[0] + len(self.cat_ids))) or self.cat_ids[0] > 1:
            self.notes.append(f"{self.files[0][0]}: category ids {self.cat_ids} are mapped to classes "
                              f"0..{len(self.cat_ids) - 1} in id order")

    def _image_root(self, f: Path, split: str, images: list[dict]) -> Path:
        names = [str(im.get("file_name", "")) for im in images[:PROBE] if isinstance(im, dict)]
        split_name = f.stem.removeprefix("instances_") if f.name != ROBOFLOW_JSON else f.parent.name
        base = f.parent.parent if f.parent.name == "annotations" else f.parent
        cands = [f.parent, f.parent / "images", base / split_name, base / "images" / split_name, base / "images",
                 base, self.root]
        best, hits = cands[0], -1
        for c in dict.fromkeys(cands):
            n = sum(1 for name in names if name and (c / name).is_file())
            if n > hits:
                best, hits = c, n
        return best

    def read(self, rules: LabelRules) -> ReadResult:
        log = IssueLog()
        result = ReadResult({}, log, notes=list(self.notes))
        for f, split, data in self.files:
            result.splits.setdefault(split, []).extend(self._read_file(f, split, data, rules, log, result))
        return result

    def _read_file(self, f: Path, split: str, data: dict, rules: LabelRules, log: IssueLog,
                   result: ReadResult) -> list[DatasetItem]:
        images = data["images"]
        root = self._image_root(f, split, images)
        by_id: dict[Any, dict] = {}
        order: list[Any] = []
        for i, im in enumerate(images):
            where = f"{f}:$.images[{i}]"
            if not isinstance(im, dict) or "id" not in im or not im.get("file_name"):
                log.image_skipped(where, "image entry needs 'id' and 'file_name'")
                continue
            if im["id"] in by_id:
                log.image_skipped(where, f"image id {im['id']} repeated (first at another index)")
                continue
            path = root / str(im["file_name"])
            if not path.is_file():
                log.image_skipped(f"{where}.file_name", f"image '{im['file_name']}' not found under {root}")
                continue
            problem = sniff_image(str(path)) if rules.check_images else None
            if problem:
                log.image_skipped(f"{path}:1", problem)
                continue
            w, h = im.get("width"), im.get("height")
            if _positive(w) and _positive(h) and rules.check_images:
                turned = frame_problem(str(path), w, h)
                if turned:
                    log.add(where, turned, "boxes used as declared (check them)")
            if not (_positive(w) and _positive(h)):
                arr = read_image_rgb(str(path))
                if arr is None:
                    log.image_skipped(f"{path}:1", "cannot be decoded")
                    continue
                h, w = arr.shape[:2]
                log.add(where, "no valid width/height", f"size {w}x{h} read from the image")
            by_id[im["id"]] = {"path": str(path), "w": float(w), "h": float(h), "boxes": [], "labels": []}
            order.append(im["id"])
        for i, a in enumerate(data.get("annotations", [])):
            where = f"{f}:$.annotations[{i}]"
            if not isinstance(a, dict):
                log.add(where, "annotation is not an object", "skipped")
                continue
            img = by_id.get(a.get("image_id"))
            if img is None:
                known = any(isinstance(im, dict) and im.get("id") == a.get("image_id") for im in images)
                if not known:
                    log.add(f"{where}.image_id", f"unknown image id {a.get('image_id')!r} (a label without an image)",
                            "annotation skipped")
                continue  # its image was skipped (already reported)
            cid = a.get("category_id")
            if cid not in self.class_of:
                log.add(f"{where}.category_id", f"unknown category id {cid!r} (not in $.categories)",
                        "annotation skipped")
                continue
            cls = self.class_of[cid]
            if rules.max_class is not None and cls >= rules.max_class:
                log.add(f"{where}.category_id", f"class {cls} (category {cid}) outside the {rules.max_class} "
                        f"classes in use", "annotation skipped")
                continue
            if a.get("iscrowd") in (1, True):
                log.add(where, "crowd region (iscrowd 1), not one object", "not trained as a box")
                continue
            bbox = a.get("bbox")
            if bbox is None:
                bbox = _polygon_box(a.get("segmentation"))
            if (not isinstance(bbox, list) or len(bbox) != 4
                    or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in bbox)):
                log.add(f"{where}.bbox", f"bbox must be 4 finite numbers [x, y, w, h], got {bbox!r}", "skipped")
                log.skipped_lines += 1
                continue
            x, y, bw, bh = (float(v) for v in bbox)
            if bw <= 0 or bh <= 0:
                log.add(f"{where}.bbox", f"non-positive box size w={bw:g} h={bh:g}", "skipped")
                log.skipped_lines += 1
                continue
            W, H = img["w"], img["h"]
            box = clip_normalised_box(x / W, y / H, (x + bw) / W, (y + bh) / H, where=f"{where}.bbox",
                                      shown=bbox, image_wh=(W, H), log=log, skip_action="skipped")
            if box is None:
                continue
            img["boxes"].append(box)
            img["labels"].append(cls)
        items = []
        for iid in order:
            rec = by_id[iid]
            items.append(DatasetItem(rec["path"], np.asarray(rec["boxes"], np.float32).reshape(-1, 4),
                                     np.asarray(rec["labels"], np.int32)))
        result.labelled_images += len(items)
        items.sort(key=lambda it: it.image_path)
        return items

    def describe(self) -> str:
        files = ", ".join(os.path.relpath(f, self.root) for f, _, _ in self.files)
        return f"COCO instances JSON {self.root} ({files})"


def _polygon_box(seg: Any) -> list[float] | None:
    """``[x, y, w, h]`` around the polygon(s) of ``segmentation`` (an annotation without ``bbox``)."""
    if not isinstance(seg, list) or not seg:
        return None
    pts = [v for poly in seg if isinstance(poly, list) for v in poly]
    if len(pts) < 6 or not all(isinstance(v, (int, float)) for v in pts):
        return None
    xs, ys = pts[0::2], pts[1::2]
    return [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)]


def _positive(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0


class CocoLayout(DatasetLayout):
    priority = 400
    title = "COCO instances JSON"
    markers = ("a COCO .json file, or a folder with annotations/instances_*.json, */_annotations.coco.json "
               "(Roboflow) or a COCO *.json at its top")

    def detect(self, path: Path) -> bool:
        if path.is_file():
            return path.suffix.lower() == ".json"
        return path.is_dir() and bool(json_files(path))

    def open(self, path: Path) -> DatasetSource:
        if path.is_file():
            return CocoSource(path, [path], folder_given=False)
        return CocoSource(path, json_files(path), folder_given=True)
