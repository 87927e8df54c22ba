"""Dataset layouts (utod.data.formats): the same tiny dataset written in every layout gives the
same items as the YOLO-beside-images folder; guard rails; bad input reported with its place."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from utod.config import TrainConfig
from utod.data.formats import ALL, detect_layout, open_dataset
from utod.data.loading import (
    load_items,
    load_training_data,
    open_source,
    read_source,
    resolve_source_classes,
    write_data_issues,
)
from utod.errors import DataError

W, H = 40, 32
NAMES = ["cat", "dog", "bird"]
# image stem -> [(class, x1, y1, x2, y2) in pixels]; c has no object (background)
BOXES = {
    "a": [(0, 4, 8, 20, 24), (2, 30, 2, 38, 10)],
    "b": [(1, 0, 0, 40, 32)],
    "c": [],
    "d": [(2, 10, 10, 14, 30), (0, 1, 1, 3, 3)],
    "e": [(1, 16, 4, 36, 28)],
}
TRAIN, VAL = ["a", "b", "c"], ["d", "e"]


def write_jpg(path: Path, seed: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = np.random.default_rng(seed).integers(0, 255, (H, W, 3), dtype=np.uint8)
    ok, buf = cv2.imencode(".jpg", img)
    assert ok
    path.write_bytes(buf.tobytes())


def yolo_rows(stem: str) -> str:
    rows = []
    for c, x1, y1, x2, y2 in BOXES[stem]:
        rows.append(f"{c} {(x1 + x2) / 2 / W:.6f} {(y1 + y2) / 2 / H:.6f} {(x2 - x1) / W:.6f} {(y2 - y1) / H:.6f}")
    return "".join(r + "\n" for r in rows)


def canon(items) -> dict[str, list[tuple]]:
    """stem -> sorted (label, cx, cy, w, h) rows rounded to 1e-4."""
    out = {}
    for it in items:
        rows = sorted((int(c), *np.round(b, 4).tolist()) for c, b in zip(it.labels, it.boxes))
        out[Path(it.image_path).stem] = rows
    return out


def expected(stems) -> dict[str, list[tuple]]:
    out = {}
    for s in stems:
        rows = [(c, (x1 + x2) / 2 / W, (y1 + y2) / 2 / H, (x2 - x1) / W, (y2 - y1) / H)
                for c, x1, y1, x2, y2 in BOXES[s]]
        out[s] = sorted((c, *np.round(np.asarray(r, np.float32), 4).tolist()) for c, *r in rows)
    return out


# ------------------------------------------------------------------ writers, one per layout
def make_yolo_folder(root: Path) -> Path:
    for i, s in enumerate(BOXES):
        write_jpg(root / f"{s}.jpg", i)
        (root / f"{s}.txt").write_text(yolo_rows(s))
    (root / "obj.names").write_text("\n".join(NAMES) + "\n")
    return root


def make_ultralytics(root: Path, *, lists: bool = False, names_dict: bool = False, roboflow: bool = False) -> Path:
    for i, s in enumerate(BOXES):
        split = "train" if s in TRAIN else ("valid" if roboflow else "val")
        img = root / split / "images" / f"{s}.jpg" if roboflow else root / "images" / split / f"{s}.jpg"
        write_jpg(img, i)
        lab = Path(str(img).replace("/images/", "/labels/")).with_suffix(".txt")
        lab.parent.mkdir(parents=True, exist_ok=True)
        lab.write_text(yolo_rows(s))
    data: dict = {"names": {i: n for i, n in enumerate(NAMES)} if names_dict else list(NAMES), "nc": 3}
    if roboflow:
        data.update(train="../train/images", val="../valid/images", test="../test/images",
                    roboflow={"workspace": "w", "project": "p", "version": 1})
    elif lists:
        (root / "train.txt").write_text("".join(f"./images/train/{s}.jpg\n" for s in TRAIN))
        (root / "val.txt").write_text("".join(f"images/val/{s}.jpg\n" for s in VAL))
        data.update(train="train.txt", val=["val.txt"])
    else:
        data.update(path=".", train="images/train", val="images/val")
    (root / "data.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return root


def make_cvat(root: Path) -> Path:
    for i, s in enumerate(BOXES):
        sub = "train" if s in TRAIN else "valid"
        write_jpg(root / f"obj_{sub}_data" / f"{s}.jpg", i)
        (root / f"obj_{sub}_data" / f"{s}.txt").write_text(yolo_rows(s))
    (root / "obj.names").write_text("\n".join(NAMES) + "\n")
    (root / "train.txt").write_text("".join(f"data/obj_train_data/{s}.jpg\n" for s in TRAIN))
    (root / "valid.txt").write_text("".join(f"data/obj_valid_data/{s}.jpg\n" for s in VAL))
    (root / "obj.data").write_text("classes = 3\ntrain = data/train.txt\nvalid = data/valid.txt\n"
                                   "names = data/obj.names\nbackup = backup/\n")
    return root


CAT_IDS = [3, 7, 11]  # non-contiguous on purpose


def coco_json(stems, start_id=1) -> dict:
    images, anns = [], []
    for k, s in enumerate(stems):
        iid = start_id + k * 10
        images.append({"id": iid, "file_name": f"{s}.jpg", "width": W, "height": H})
        for c, x1, y1, x2, y2 in BOXES[s]:
            anns.append({"id": len(anns) + 1, "image_id": iid, "category_id": CAT_IDS[c],
                         "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1), "iscrowd": 0})
    cats = [{"id": cid, "name": n, "supercategory": "animal"} for cid, n in zip(CAT_IDS, NAMES)]
    return {"images": images, "annotations": anns, "categories": cats[::-1]}


def make_coco(root: Path) -> Path:
    for split, stems in (("train2017", TRAIN), ("val2017", VAL)):
        for s in stems:
            write_jpg(root / split / f"{s}.jpg", list(BOXES).index(s))
        (root / "annotations").mkdir(parents=True, exist_ok=True)
        (root / "annotations" / f"instances_{split}.json").write_text(json.dumps(coco_json(stems)))
    return root


def voc_xml(stem: str, with_size: bool = True) -> str:
    objs = "".join(
        f"<object><name>{NAMES[c]}</name><difficult>0</difficult><bndbox><xmin>{x1 + 1}</xmin><ymin>{y1 + 1}</ymin>"
        f"<xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox></object>" for c, x1, y1, x2, y2 in BOXES[stem])
    size = f"<size><width>{W}</width><height>{H}</height><depth>3</depth></size>" if with_size else ""
    return f"<annotation><folder>VOC</folder><filename>{stem}.jpg</filename>{size}{objs}</annotation>"


def make_voc(root: Path) -> Path:
    (root / "Annotations").mkdir(parents=True)
    (root / "ImageSets" / "Main").mkdir(parents=True)
    for i, s in enumerate(BOXES):
        write_jpg(root / "JPEGImages" / f"{s}.jpg", i)
        (root / "Annotations" / f"{s}.xml").write_text(voc_xml(s, with_size=s != "e"))
    (root / "ImageSets" / "Main" / "train.txt").write_text("\n".join(TRAIN) + "\n")
    (root / "ImageSets" / "Main" / "val.txt").write_text("\n".join(VAL) + "\n")
    return root


def read(path, num_classes=None, **kw):
    src = open_source(path, **kw)
    spec = resolve_source_classes(src, None, num_classes, None)
    return src, spec, read_source(src, spec, log=None)


# ------------------------------------------------------------------ same items everywhere
def test_yolo_folder_reference(tmp_path):
    src, spec, ds = read(make_yolo_folder(tmp_path / "yolo"))
    assert src.layout == "yolo" and spec.names == NAMES
    assert canon(ds.splits[ALL]) == expected(BOXES)
    assert ds.issues == []


@pytest.mark.parametrize("kind", ["folders", "lists", "names_dict", "roboflow"])
def test_ultralytics_yaml_gives_the_same_items(tmp_path, kind, monkeypatch):
    monkeypatch.chdir(tmp_path)  # list lines without ./ must not depend on the cwd
    root = make_ultralytics(tmp_path / "ul", lists=kind == "lists", names_dict=kind == "names_dict",
                            roboflow=kind == "roboflow")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    for given in (root, root / "data.yaml"):
        src, spec, ds = read(given)
        assert src.layout == "ultralytics" and spec.names == NAMES
        assert canon(ds.splits["train"]) == expected(TRAIN)
        assert canon(ds.splits["val"]) == expected(VAL)
    yolo = read(make_yolo_folder(tmp_path / "yolo"))[2]
    assert canon(ds.all_items()) == canon(yolo.all_items())
    if kind == "roboflow":  # ../train/images resolved beside the YAML (reported), test/ absent
        assert "test" not in ds.splits


def test_ultralytics_tree_without_yaml(tmp_path):
    root = make_ultralytics(tmp_path / "t")
    (root / "data.yaml").unlink()
    (root / "classes.txt").write_text("\n".join(NAMES))
    src, spec, ds = read(root)
    assert src.layout == "ultralytics-tree" and spec.names == NAMES
    assert canon(ds.splits["train"]) == expected(TRAIN) and canon(ds.splits["val"]) == expected(VAL)
    # a folder inside the tree finds labels/ by the Ultralytics rule
    sub = read(root / "images" / "train", num_classes=3)
    assert canon(sub[2].splits[ALL]) == expected(TRAIN)


def test_cvat_yolo11(tmp_path, monkeypatch):
    root = make_cvat(tmp_path / "cvat")
    monkeypatch.chdir(tmp_path)
    src, spec, ds = read(root)
    assert src.layout == "cvat-yolo" and spec.names == NAMES and src.num_classes == 3
    assert canon(ds.splits["train"]) == expected(TRAIN) and canon(ds.splits["val"]) == expected(VAL)
    assert ds.issues == []


def test_coco_non_contiguous_ids_and_background_image(tmp_path):
    root = make_coco(tmp_path / "coco")
    src, spec, ds = read(root)
    assert src.layout == "coco" and spec.names == NAMES and spec.class_ids == [0, 1, 2]
    assert canon(ds.splits["train"]) == expected(TRAIN)  # c: listed, no annotation -> background
    assert canon(ds.splits["val"]) == expected(VAL)
    # one JSON alone is one pool (ratio split applies)
    src1, _, ds1 = read(root / "annotations" / "instances_train2017.json")
    assert list(ds1.splits) == [ALL] and canon(ds1.splits[ALL]) == expected(TRAIN)


def test_voc_devkit(tmp_path):
    root = make_voc(tmp_path / "voc")
    src, spec, ds = read(root)
    assert src.layout == "voc" and spec.names == sorted(NAMES)
    remap = {sorted(NAMES).index(n): i for i, n in enumerate(NAMES)}  # names sorted: bird, cat, dog
    for split, stems in (("train", TRAIN), ("val", VAL)):
        got = {k: sorted((remap[c], *r) for c, *r in v) for k, v in canon(ds.splits[split]).items()}
        assert got == expected(stems)
    assert any("e.xml:size: no valid <size>" in i for i in ds.issues)  # size read from the image


def test_voc_with_names_file_uses_its_order(tmp_path):
    root = make_voc(tmp_path / "voc")
    names = tmp_path / "n.names"
    names.write_text("\n".join(NAMES[:2]) + "\n")  # no 'bird'
    src = open_source(root)
    spec = resolve_source_classes(src, None, None, str(names))
    ds = read_source(src, spec, str(names), log=None)
    assert spec.names == NAMES[:2]
    got = canon(ds.all_items())
    assert got["b"] == expected(["b"])["b"]
    assert any("class 'bird' is not in the class names" in i and "object[2]/name" in i for i in ds.issues)


# ------------------------------------------------------------------ splits, classes, guard rails
def _cfg(**kw) -> TrainConfig:
    cfg = TrainConfig()
    for k, v in kw.items():
        setattr(cfg, k, v)
    return cfg


def test_description_val_is_the_val_set(tmp_path):
    root = make_ultralytics(tmp_path / "ul")
    run = tmp_path / "run"
    td = load_training_data(_cfg(data=str(root / "data.yaml")), run, log=None)
    assert sorted(Path(i.image_path).stem for i in td.train) == TRAIN
    assert sorted(Path(i.image_path).stem for i in td.val) == VAL
    assert (run / "val.txt").read_text().count("\n") == 2
    meta = json.loads((run / "dataset.json").read_text())
    assert meta["layout"] == "ultralytics" and meta["names"] == NAMES


def test_train_list_val_list(tmp_path):
    root = make_yolo_folder(tmp_path / "y")
    (tmp_path / "tr.txt").write_text("".join(f"{root}/{s}.jpg\n" for s in ["a", "b", "d"]))
    (tmp_path / "va.txt").write_text(f"{root}/e.jpg\n{root}/missing.jpg\n")
    td = load_training_data(_cfg(train_list=str(tmp_path / "tr.txt"), val_list=str(tmp_path / "va.txt"),
                                 num_classes=3), tmp_path / "run", log=None)
    assert [Path(i.image_path).stem for i in td.train] == ["a", "b", "d"]
    assert [Path(i.image_path).stem for i in td.val] == ["e"]
    text = (tmp_path / "run" / "data_issues.txt").read_text()
    assert f"{tmp_path / 'va.txt'}:2: image '{root}/missing.jpg' not found" in text
    assert text.startswith("# 1 data issue(s): 1 entry skipped")


def test_names_apply_to_a_classes_subset_cvat_folder(tmp_path):
    """The seed's command: --image-dir obj_train_data --classes 0, obj.names one folder up."""
    root = make_cvat(tmp_path / "cvat")
    src = open_source(root / "obj_train_data")
    spec = resolve_source_classes(src, "1", None, None)
    assert spec.names == ["dog"] and spec.class_ids == [1]
    spec = resolve_source_classes(src, None, None, None)
    assert spec.names == NAMES


def test_no_label_anywhere_is_an_error(tmp_path):
    for i, s in enumerate(BOXES):
        write_jpg(tmp_path / "d" / "pics" / f"{s}.jpg", i)
        (tmp_path / "d" / "annots").mkdir(parents=True, exist_ok=True)
        (tmp_path / "d" / "annots" / f"{s}.txt").write_text(yolo_rows(s))
    with pytest.raises(DataError) as exc:
        load_training_data(_cfg(data=str(tmp_path / "d" / "pics"), num_classes=3), tmp_path / "run", log=None)
    msg = str(exc.value)
    assert "none of the 5 images" in msg and "a.txt" in msg and "Ultralytics / Roboflow data.yaml" in msg
    assert "COCO instances JSON" in msg and "Pascal VOC XML" in msg


def test_zero_usable_boxes_is_an_error(tmp_path):
    root = make_yolo_folder(tmp_path / "y")
    for s in BOXES:  # drop every class-1 box: --classes 1 then has nothing to learn
        (root / f"{s}.txt").write_text("".join(r + "\n" for r in yolo_rows(s).splitlines() if not r.startswith("1 ")))
    with pytest.raises(DataError, match="0 boxes of the classes being trained"):
        load_training_data(_cfg(data=str(root), classes="1"), tmp_path / "run", log=None)


def test_many_missing_labels_warn(tmp_path):
    root = make_yolo_folder(tmp_path / "y")
    for s in ["b", "c", "d"]:
        (root / f"{s}.txt").unlink()
    logged: list[str] = []
    read_source(open_source(root), resolve_source_classes(open_source(root), None, None, None), log=logged.append)
    assert any(m.startswith("warning: 3 of 5 images (60%) have no label file") for m in logged)


# ------------------------------------------------------------------ bad input, with its place
def test_bad_input_reported_with_location(tmp_path):
    root = make_coco(tmp_path / "coco")
    f = root / "annotations" / "instances_train2017.json"
    data = json.loads(f.read_text())
    data["annotations"].append({"id": 99, "image_id": 12345, "category_id": 3, "bbox": [1, 1, 2, 2]})
    data["annotations"].append({"id": 100, "image_id": 1, "category_id": 5, "bbox": [1, 1, 2, 2]})
    data["annotations"].append({"id": 101, "image_id": 1, "category_id": 3, "bbox": [30, 20, 20, 20]})
    data["images"].append({"id": 500, "file_name": "gone.jpg", "width": W, "height": H})
    f.write_text(json.dumps(data))
    _, _, ds = read(root)
    text = "\n".join(ds.issues)
    n = len(data["annotations"])
    assert f"{f}:$.annotations[{n - 3}].image_id: unknown image id 12345" in text
    assert f"{f}:$.annotations[{n - 2}].category_id: unknown category id 5" in text
    assert f"{f}:$.annotations[{n - 1}].bbox: box [30, 20, 20, 20] extends outside" in text
    assert f"{f}:$.images[3].file_name: image 'gone.jpg' not found" in text


def test_yaml_typo_and_orphan_label(tmp_path):
    root = make_ultralytics(tmp_path / "ul")
    (root / "data.yaml").write_text((root / "data.yaml").read_text() + "tset: images/test\n")
    (root / "labels" / "train" / "zz.txt").write_text("0 0.5 0.5 0.1 0.1\n")  # no image zz
    _, _, ds = read(root)
    text = "\n".join(ds.issues)
    line = (root / "data.yaml").read_text().splitlines().index("tset: images/test") + 1
    assert f"{root / 'data.yaml'}:{line}: unknown key 'tset' (did you mean 'test'?)" in text
    assert f"{root / 'labels' / 'train' / 'zz.txt'}:1: label file without a matching image" in text
    (root / "data.yaml").write_text("trian: images/train\nval: images/val\nnames: [a]\n")
    with pytest.raises(DataError, match="no 'train' key .*'trian' at line 1"):
        open_dataset(root)


def test_yolo_box_outside_and_case_near_miss(tmp_path):
    root = make_yolo_folder(tmp_path / "y")
    (root / "a.txt").write_text("0 0.95 0.5 0.2 0.2\n")
    (root / "b.txt").rename(root / "b.TXT")
    _, _, ds = read(root)
    text = "\n".join(ds.issues)
    assert f"{root / 'a.txt'}:1: coordinates outside [0, 1] — box clipped" in text
    assert "b.TXT: label file name differs in letter case" in text
    assert canon(ds.splits[ALL])["b"] == expected(["b"])["b"]


def test_detect_and_eval_items(tmp_path):
    assert detect_layout(make_cvat(tmp_path / "c")).name == "cvat-yolo"
    assert detect_layout(make_voc(tmp_path / "v")).name == "voc"
    assert detect_layout(make_coco(tmp_path / "co")).name == "coco"
    items, _ = load_items(tmp_path / "co", split="val")
    assert sorted(Path(i.image_path).stem for i in items) == VAL
    with pytest.raises(DataError, match="does not exist"):
        detect_layout(tmp_path / "nope")


def test_write_data_issues_counts(tmp_path):
    p = write_data_issues(tmp_path, ["a:1: x — line skipped", "b:2: y — line skipped", "c: z — image skipped"])
    lines = p.read_text().splitlines()
    assert lines[0] == "# 3 data issue(s): 2 line skipped, 1 image skipped" and len(lines) == 4


def test_cvat_export_without_images_and_voc_xml_without_image(tmp_path):
    root = make_cvat(tmp_path / "cvat")
    (root / "obj_valid_data" / "e.jpg").unlink()
    _, _, ds = read(root)
    assert f"{root / 'valid.txt'}:2: image 'data/obj_valid_data/e.jpg' not found — entry skipped" in ds.issues
    assert any("obj_valid_data/e.txt:1: label file without a matching image" in i for i in ds.issues)
    voc = make_voc(tmp_path / "voc")
    (voc / "JPEGImages" / "d.jpg").unlink()
    (voc / "Annotations" / "zz.xml").write_text(voc_xml("a").replace("a.jpg", "zz.jpg"))
    (voc / "ImageSets" / "Main" / "val.txt").write_text("d\ne\nzz\nnoxml\n")
    write_jpg(voc / "JPEGImages" / "noxml.jpg")
    _, _, ds = read(voc)
    text = "\n".join(ds.issues)
    assert f"{voc / 'Annotations' / 'd.xml'}:filename: annotation without an image" in text
    assert f"{voc / 'Annotations' / 'zz.xml'}:filename: annotation without an image" in text
    assert "listed id 'noxml' has no Annotations/noxml.xml — image used as a background image" in text
    assert sorted(Path(i.image_path).stem for i in ds.splits["val"]) == ["e", "noxml"]


# ------------------------------------------------------------------ a third-party layout plugin
class CsvLayout:
    """boxes.csv: ``image,class,cx,cy,w,h`` rows (a made-up layout, as a third party would add)."""

    name, title, markers, priority = "boxes-csv", "boxes.csv", "a boxes.csv in the folder", 50

    def detect(self, path):
        return path.is_dir() and (path / "boxes.csv").is_file()

    def open(self, path):
        from utod.data.dataset import DatasetItem
        from utod.data.formats.base import DatasetSource, IssueLog, ReadResult

        class Source(DatasetSource):
            layout, expected_labels = "boxes-csv", "rows of boxes.csv"

            def __init__(self):
                self.path, self.names, self.num_classes = path, ["x", "y", "z"], 3

            def read(self, rules):
                rows: dict[str, list] = {}
                for line in (path / "boxes.csv").read_text().splitlines():
                    img, *vals = line.split(",")
                    rows.setdefault(img, []).append([float(v) for v in vals])
                items = [DatasetItem(str(path / k), np.asarray([r[1:] for r in v], np.float32),
                                     np.asarray([r[0] for r in v], np.int32)) for k, v in sorted(rows.items())]
                return ReadResult({ALL: items}, IssueLog(), labelled_images=len(items))

        return Source()


def test_a_plugin_adds_a_dataset_layout(tmp_path, install_registry):
    from utod import hookimpl
    from utod.data.formats import layouts

    class Plugin:
        @hookimpl
        def register_dataset_formats(register):
            register("boxes-csv", CsvLayout, summary="boxes.csv", params={})

    install_registry((Plugin, "csvplug", "acme", "1.0"), load_entry_points=True)
    assert [x.name for x in layouts()][0] == "boxes-csv"  # priority 50: tried first
    root = make_yolo_folder(tmp_path / "d")  # also a YOLO folder: the plugin's layout wins
    (root / "boxes.csv").write_text("a.jpg,1,0.5,0.5,0.2,0.2\n")
    src, spec, ds = read(root)
    assert src.layout == "boxes-csv" and spec.names == ["x", "y", "z"]
    assert list(canon(ds.splits[ALL])) == ["a"] and ds.splits[ALL][0].labels.tolist() == [1]
    assert read(root, fmt="yolo")[0].layout == "yolo"


def test_label_collision_roboflow_leak_and_missing_count(tmp_path):
    root = make_yolo_folder(tmp_path / "y")
    write_jpg(root / "a.png")  # shares a.txt with a.jpg
    (root / "c.txt").unlink()
    _, _, ds = read(root)
    assert any("a.txt:1: label file of" in i and "is also the label of" in i for i in ds.issues)
    assert "7 images" not in ds.summary.format() and "1 of them without a label file" in ds.summary.format()
    from utod.data.dataset import DatasetItem
    from utod.data.loading import roboflow_leaks

    def item(n):
        return DatasetItem(n, np.zeros((0, 4), np.float32), np.zeros((0,), np.int32))

    train = [item("t/IMG_1_jpg.rf.aaa.jpg"), item("t/IMG_2_jpg.rf.bbb.jpg")]
    val = [item("v/IMG_1_jpg.rf.ccc.jpg"), item("v/IMG_3_jpg.rf.ddd.jpg")]
    assert roboflow_leaks(train, val) == ["v/IMG_1_jpg.rf.ccc.jpg"]


def test_coco_polygon_without_bbox_and_crowd(tmp_path):
    root = make_coco(tmp_path / "coco")
    f = root / "annotations" / "instances_val2017.json"
    data = json.loads(f.read_text())
    e = next(im["id"] for im in data["images"] if im["file_name"] == "e.jpg")
    data["annotations"] = [a for a in data["annotations"] if a["image_id"] != e]
    data["annotations"].append({"id": 50, "image_id": e, "category_id": 7, "iscrowd": 0,
                                "segmentation": [[16, 4, 36, 4, 36, 28, 16, 28]]})  # = e's box, no bbox
    data["annotations"].append({"id": 51, "image_id": e, "category_id": 7, "iscrowd": 1, "bbox": [0, 0, 5, 5]})
    f.write_text(json.dumps(data))
    _, _, ds = read(root)
    assert canon(ds.splits["val"])["e"] == expected(["e"])["e"]
    assert any("crowd region (iscrowd 1)" in i and "$.annotations[" in i for i in ds.issues)


def test_eval_items_warn_when_the_dataset_names_the_classes_differently(tmp_path):
    root = make_yolo_folder(tmp_path / "y")
    logged: list[str] = []
    load_items(root, class_ids=[0, 1], model_names=["cat", "dog"], log=logged.append)
    assert not any("warning: the model's classes" in m for m in logged)
    load_items(root, class_ids=[0, 1], model_names=["dog", "cat"], log=logged.append)
    assert any("warning: the model's classes are ['dog', 'cat']" in m and "['cat', 'dog']" in m for m in logged)


def test_roboflow_coco_export_drops_the_root_category(tmp_path):
    root = tmp_path / "rf"
    for split, stems in (("train", TRAIN), ("valid", VAL)):
        for s in stems:
            write_jpg(root / split / f"{s}.jpg", list(BOXES).index(s))
        data = coco_json(stems)
        for c in data["categories"]:
            c["supercategory"] = "pets"
        data["categories"].insert(0, {"id": 0, "name": "pets", "supercategory": "none"})
        (root / split / "_annotations.coco.json").write_text(json.dumps(data))
    src, spec, ds = read(root)
    assert src.layout == "coco" and spec.names == NAMES
    assert canon(ds.splits["train"]) == expected(TRAIN) and canon(ds.splits["val"]) == expected(VAL)
    assert any("Roboflow's root" in n for n in ds.result.notes)


def test_declared_size_of_an_exif_rotated_jpeg_is_reported(tmp_path):
    from PIL import Image  # a dependency of matplotlib

    from utod.data.formats.exif import jpeg_size_orientation

    root = make_voc(tmp_path / "voc")
    exif = Image.Exif()
    exif[0x0112] = 6  # shown rotated by 90 degrees: the decoded image is H x W = 40 x 32
    Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(root / "JPEGImages" / "a.jpg", exif=exif.tobytes())
    assert jpeg_size_orientation(str(root / "JPEGImages" / "a.jpg")) == (W, H, 6)
    assert jpeg_size_orientation(str(root / "JPEGImages" / "b.jpg"))[:2] == (W, H)
    _, _, ds = read(root)
    hits = [i for i in ds.issues if "EXIF orientation 6" in i]
    assert len(hits) == 1 and hits[0].startswith(f"{root / 'Annotations' / 'a.xml'}:size: declared size 40x32")


def test_uhd_lists_with_image_dir_and_one_list_for_both(tmp_path, monkeypatch):
    """UHD's README: --image-dir obj_train_data --train-list train.txt --val-list train.txt --val-split 0.2."""
    root = make_yolo_folder(tmp_path / "wb" / "obj_train_data")
    (tmp_path / "wb" / "lists").mkdir()
    lst = tmp_path / "wb" / "lists" / "train.txt"
    lst.write_text("".join(f"somewhere/else/{s}.jpg\n" for s in BOXES))  # found by file name in --image-dir
    monkeypatch.chdir(tmp_path)
    td = load_training_data(_cfg(image_dir=str(root), train_list=str(lst), val_list=str(lst), train_split=0.6,
                                 val_split=0.4), tmp_path / "run", log=None)
    got = sorted(Path(i.image_path).stem for i in td.train + td.val)
    assert got == sorted(BOXES) and len(td.val) == 2  # one list, ratio split: no image in both sets
    assert not {i.image_path for i in td.train} & {i.image_path for i in td.val}
    assert td.classes.names == NAMES  # obj.names of --image-dir
