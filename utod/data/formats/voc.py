"""Pascal VOC XML, read directly: the VOC devkit tree (``Annotations/<id>.xml``,
``JPEGImages/<id>.jpg``, optional ``ImageSets/Main/{train,val,trainval,test}.txt``) or a
LabelImg folder (one ``x.xml`` beside each ``x.jpg``).

* Splits: ``ImageSets/Main/train.txt`` + ``val.txt`` are the train and validation sets
  (``test.txt`` is kept apart); with only ``trainval.txt`` (or no ImageSets) every listed
  (or every) annotation forms one pool and the ratio split applies.
* Boxes: VOC corners are 1-based inclusive pixels, so ``[xmin - 1, xmax]`` x ``[ymin - 1, ymax]``
  is the box in continuous pixels, normalised by ``<size>`` (read from the image when missing).
  Boxes outside the image are clipped (reported); empty ones are reported and skipped.
  ``difficult`` objects are kept: they are labelled objects.
* Classes: the ``--names`` file when given (an object name not in it is reported and
  skipped), else every object name found, sorted alphabetically (ids 0..K-1).
* Reported with ``file:<element path>``: listed ids without an XML, XMLs without an image,
  unparsable XML or coordinates.
"""

from __future__ import annotations

import math
import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from utod.data.dataset import DatasetItem
from utod.data.discovery import find_images_in_dir
from utod.data.formats.base import (
    ALL,
    DatasetLayout,
    DatasetSource,
    IssueLog,
    LabelRules,
    ReadResult,
    clip_normalised_box,
)
from utod.data.formats.exif import frame_problem
from utod.data.images import IMAGE_EXTENSIONS, read_image_rgb, sniff_image
from utod.errors import DataError


@dataclass
class VocObject:
    name: str
    box: tuple[float, float, float, float] | None  # xmin, ymin, xmax, ymax as written
    where: str


@dataclass
class VocRecord:
    xml: str
    image: str | None
    size: tuple[float, float] | None  # (width, height)
    objects: list[VocObject] = field(default_factory=list)
    problem: str | None = None


def _num(node: ET.Element | None, tag: str) -> float | None:
    el = node.find(tag) if node is not None else None
    if el is None or el.text is None:
        return None
    try:
        v = float(el.text.strip())
    except ValueError:
        return None
    return v if math.isfinite(v) else None


def parse_xml(xml: Path, image_dirs: list[Path]) -> VocRecord:
    """One annotation file; ``image_dirs``: where its image may be (by ``filename``, then by
    the XML's stem with each image extension)."""
    try:
        root = ET.parse(xml).getroot()
    except (ET.ParseError, OSError) as exc:
        return VocRecord(str(xml), None, None, problem=f"cannot parse XML ({exc})")
    if root.tag != "annotation":
        return VocRecord(str(xml), None, None, problem=f"root element is <{root.tag}>, not <annotation>")
    filename = (root.findtext("filename") or "").strip()
    image = None
    for d in image_dirs:
        names = ([filename] if filename else []) + [xml.stem + e for e in sorted(IMAGE_EXTENSIONS)] \
            + [xml.stem + e.upper() for e in sorted(IMAGE_EXTENSIONS)]
        if filename and not os.path.splitext(filename)[1]:  # old LabelImg: filename without extension
            names += [filename + e for e in sorted(IMAGE_EXTENSIONS)]
        image = next((str(d / n) for n in names if (d / n).is_file()), None)
        if image:
            break
    size_el = root.find("size")
    w, h = _num(size_el, "width"), _num(size_el, "height")
    rec = VocRecord(str(xml), image, (w, h) if w and h and w > 0 and h > 0 else None)
    for k, obj in enumerate(root.findall("object")):
        where = f"{xml}:object[{k + 1}]"
        name = (obj.findtext("name") or "").strip()
        bb = obj.find("bndbox")
        vals = [_num(bb, t) for t in ("xmin", "ymin", "xmax", "ymax")]
        box = tuple(vals) if all(v is not None for v in vals) else None  # type: ignore[arg-type]
        rec.objects.append(VocObject(name, box, where))  # type: ignore[arg-type]
    return rec


class VocSource(DatasetSource):

    def __init__(self, folder: Path) -> None:
        self.path = folder
        self.devkit = (folder / "Annotations").is_dir()
        ann_dir = folder / "Annotations" if self.devkit else folder
        self.expected_labels = (f"{ann_dir}/<id>.xml for each image" if self.devkit
                                else "x.xml beside each image x.jpg")
        image_dirs = [folder / "JPEGImages", folder / "images", folder] if self.devkit else [folder]
        self.issues: list[str] = []
        self.split_ids: dict[str, list[str]] = {}
        sets = folder / "ImageSets" / "Main"
        lists = {n: sets / f"{n}.txt" for n in ("train", "val", "trainval", "test")}
        xmls: dict[str, Path] = {}
        if self.devkit:
            xmls = {p.stem: p for p in sorted(ann_dir.glob("*.xml"))}
        else:
            for root, dirs, files in os.walk(folder, followlinks=True):
                dirs[:] = [d for d in dirs if not d.startswith(".")]
                for f in sorted(files):
                    if f.lower().endswith(".xml"):
                        p = Path(root) / f
                        xmls[str(p.with_suffix(""))] = p
        if lists["train"].is_file() and lists["val"].is_file():
            chosen = ("train", "val", "test")
        elif lists["trainval"].is_file():
            chosen = ("trainval", "test")
        else:
            chosen = ()
        for n in chosen:
            if lists[n].is_file():
                key = ALL if n == "trainval" else n
                self.split_ids[key] = self._read_ids(lists[n])
        if not chosen:
            self.split_ids[ALL] = list(xmls)
        self.records: dict[str, VocRecord] = {}
        self.listed_without_xml: dict[str, str] = {}
        for key, ids in self.split_ids.items():
            for i in ids:
                xml = xmls.get(i)
                if xml is None:
                    self.listed_without_xml[i] = key
                    continue
                dirs = image_dirs if self.devkit else [xml.parent]
                self.records[i] = parse_xml(xml, dirs)
        found = sorted({o.name for r in self.records.values() for o in r.objects if o.name})
        self.names = found or None
        self.names_origin = f"object names in the XML files of {folder} (sorted)" if found else ""
        self.num_classes = len(found) if found else None
        self.image_dirs = image_dirs

    def _read_ids(self, lst: Path) -> list[str]:
        ids = []
        for line in lst.read_text(encoding="utf-8-sig").splitlines():
            parts = line.split()
            if parts and not parts[0].startswith("#"):
                ids.append(parts[0])
        return ids

    def read(self, rules: LabelRules) -> ReadResult:
        log = IssueLog()
        result = ReadResult({}, log)
        table = rules.names if rules.names else (self.names or [])
        index = {n: k for k, n in enumerate(table)}
        for key, ids in self.split_ids.items():
            items: list[DatasetItem] = []
            for i in ids:
                rec = self.records.get(i)
                if rec is None:
                    image = next((str(d / (i + e)) for d in self.image_dirs for e in sorted(IMAGE_EXTENSIONS)
                                  if (d / (i + e)).is_file()), None)
                    if image is None:
                        log.image_skipped(f"{self.path}/ImageSets/Main: id '{i}'", "no annotation XML and no image")
                        continue
                    log.add(f"{image}:1", f"listed id '{i}' has no Annotations/{i}.xml",
                            "image used as a background image")
                    result.unlabelled_images += 1
                    items.append(DatasetItem(image, np.zeros((0, 4), np.float32), np.zeros((0,), np.int32)))
                    continue
                item = self._item(rec, index, rules, log)
                if item is not None:
                    result.labelled_images += 1
                    items.append(item)
            result.splits[key] = items
        if not self.devkit:  # images of a LabelImg folder without an XML
            have = {it.image_path for its in result.splits.values() for it in its}
            for img in find_images_in_dir(self.path):
                if img in have or os.path.isfile(os.path.splitext(img)[0] + ".xml"):
                    continue
                result.unlabelled_images += 1
                if len(result.unlabelled_examples) < 3:
                    result.unlabelled_examples.append(f"{img} -> {os.path.splitext(img)[0]}.xml")
                if sniff_image(img) is None:
                    result.splits.setdefault(ALL, []).append(
                        DatasetItem(img, np.zeros((0, 4), np.float32), np.zeros((0,), np.int32)))
        for items in result.splits.values():
            items.sort(key=lambda it: it.image_path)
        return result

    def _item(self, rec: VocRecord, index: dict[str, int], rules: LabelRules, log: IssueLog) -> DatasetItem | None:
        if rec.problem:
            log.image_skipped(f"{rec.xml}:1", rec.problem)
            return None
        if rec.image is None:
            log.image_skipped(f"{rec.xml}:filename", "annotation without an image (no file found for it)")
            return None
        problem = sniff_image(rec.image) if rules.check_images else None
        if problem:
            log.image_skipped(f"{rec.image}:1", problem)
            return None
        size = rec.size
        if size is not None and rules.check_images:
            turned = frame_problem(rec.image, *size)
            if turned:
                log.add(f"{rec.xml}:size", turned, "boxes used as declared (check them)")
        if size is None:
            arr = read_image_rgb(rec.image)
            if arr is None:
                log.image_skipped(f"{rec.image}:1", "cannot be decoded")
                return None
            size = (float(arr.shape[1]), float(arr.shape[0]))
            log.add(f"{rec.xml}:size", "no valid <size>", f"size {size[0]:g}x{size[1]:g} read from the image")
        W, H = size
        boxes, labels = [], []
        for o in rec.objects:
            if o.name not in index:
                log.add(f"{o.where}/name", f"class '{o.name}' is not in the class names", "object skipped")
                log.skipped_lines += 1
                continue
            cls = index[o.name]
            if rules.max_class is not None and cls >= rules.max_class:
                log.add(f"{o.where}/name", f"class {cls} '{o.name}' outside the {rules.max_class} classes in use",
                        "object skipped")
                continue
            if o.box is None:
                log.add(f"{o.where}/bndbox", "missing or non-numeric xmin/ymin/xmax/ymax", "object skipped")
                log.skipped_lines += 1
                continue
            xmin, ymin, xmax, ymax = o.box
            x1, y1, x2, y2 = (xmin - 1) / W, (ymin - 1) / H, xmax / W, ymax / H
            if x2 <= x1 or y2 <= y1:
                log.add(f"{o.where}/bndbox", f"empty box {o.box}", "object skipped")
                log.skipped_lines += 1
                continue
            box = clip_normalised_box(x1, y1, x2, y2, where=f"{o.where}/bndbox", shown=o.box, image_wh=(W, H),
                                      log=log, skip_action="object skipped")
            if box is None:
                continue
            boxes.append(box)
            labels.append(cls)
        return DatasetItem(rec.image, np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(labels, np.int32))

    def describe(self) -> str:
        kind = "VOC devkit folder" if self.devkit else "VOC XML (LabelImg) folder"
        return f"{kind} {self.path}"


def _has_voc_xml(folder: Path) -> bool:
    for p in sorted(folder.glob("*.xml"))[:3]:
        try:
            with open(p, encoding="utf-8", errors="replace") as f:
                if "<annotation" in f.read(4096):
                    return True
        except OSError:
            continue
    return False


class VocLayout(DatasetLayout):
    priority = 300
    title = "Pascal VOC XML"
    markers = "Annotations/*.xml (with JPEGImages/, ImageSets/Main/), or x.xml beside x.jpg (LabelImg)"

    def detect(self, path: Path) -> bool:
        if not path.is_dir():
            return False
        ann = path / "Annotations"
        return (ann.is_dir() and any(ann.glob("*.xml"))) or _has_voc_xml(path)

    def open(self, path: Path) -> DatasetSource:
        if not path.is_dir():
            raise DataError(f"{path}: a VOC dataset is a folder")
        return VocSource(path)
