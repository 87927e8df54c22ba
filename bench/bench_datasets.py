"""Time to read a dataset description (before any image is decoded), per layout.

Writes N images (valid JPEG headers, not decodable pixels: the readers only check headers)
with two boxes each in every layout under a temporary folder, then times
``open_source`` + ``read_source`` (median of --repeat runs) and prints images/s. The old
single-layout scanner (``scan_dataset``) is timed on the YOLO folder for comparison.

    python bench/bench_datasets.py --images 10000
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

JPEG_HEAD = b"\xff\xd8\xff\xe0" + b"\0" * 28
W, H = 640, 480
ROWS = "0 0.5 0.5 0.2 0.3\n1 0.25 0.75 0.1 0.1\n"


def write_layouts(root: Path, n: int) -> dict[str, Path]:
    stems = [f"img{i:06d}" for i in range(n)]
    ntr = int(n * 0.8)
    out = {}
    # YOLO beside images
    d = root / "yolo"
    d.mkdir()
    for s in stems:
        (d / f"{s}.jpg").write_bytes(JPEG_HEAD)
        (d / f"{s}.txt").write_text(ROWS)
    (d / "obj.names").write_text("a\nb\n")
    out["yolo folder"] = d
    # Ultralytics tree + data.yaml
    d = root / "ultra"
    for i, s in enumerate(stems):
        split = "train" if i < ntr else "val"
        (d / "images" / split).mkdir(parents=True, exist_ok=True)
        (d / "labels" / split).mkdir(parents=True, exist_ok=True)
        (d / "images" / split / f"{s}.jpg").write_bytes(JPEG_HEAD)
        (d / "labels" / split / f"{s}.txt").write_text(ROWS)
    (d / "data.yaml").write_text("train: images/train\nval: images/val\nnames: [a, b]\n")
    out["ultralytics data.yaml"] = d / "data.yaml"
    # COCO
    d = root / "coco"
    (d / "images").mkdir(parents=True)
    images, anns = [], []
    for i, s in enumerate(stems):
        (d / "images" / f"{s}.jpg").write_bytes(JPEG_HEAD)
        images.append({"id": i, "file_name": f"{s}.jpg", "width": W, "height": H})
        anns.append({"id": 2 * i, "image_id": i, "category_id": 1, "bbox": [256, 168, 128, 144], "iscrowd": 0})
        anns.append({"id": 2 * i + 1, "image_id": i, "category_id": 2, "bbox": [128, 336, 64, 48], "iscrowd": 0})
    cats = [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]
    (d / "train.json").write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    out["coco json"] = d / "train.json"
    # VOC
    d = root / "voc"
    (d / "Annotations").mkdir(parents=True)
    (d / "JPEGImages").mkdir()
    for s in stems:
        (d / "JPEGImages" / f"{s}.jpg").write_bytes(JPEG_HEAD)
        (d / "Annotations" / f"{s}.xml").write_text(
            f"<annotation><filename>{s}.jpg</filename><size><width>{W}</width><height>{H}</height></size>"
            "<object><name>a</name><bndbox><xmin>257</xmin><ymin>169</ymin><xmax>384</xmax><ymax>312</ymax>"
            "</bndbox></object><object><name>b</name><bndbox><xmin>129</xmin><ymin>337</ymin><xmax>192</xmax>"
            "<ymax>384</ymax></bndbox></object></annotation>")
    out["voc xml"] = d
    return out


def timed(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=5000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()

    from utod.data.dataset import scan_dataset
    from utod.data.loading import open_source, read_source, resolve_source_classes

    with tempfile.TemporaryDirectory() as tmp:
        paths = write_layouts(Path(tmp), args.images)

        def read(p):
            src = open_source(p)
            spec = resolve_source_classes(src, None, None, None)
            ds = read_source(src, spec, log=None)
            assert ds.summary.boxes == 2 * args.images, ds.summary.format()

        print(f"{args.images} images, 2 boxes each; median of {args.repeat} reads (warm file cache)")
        base = timed(lambda: scan_dataset(paths["yolo folder"], num_classes=2, log=None), args.repeat)
        print(f"  {'scan_dataset (old, yolo folder)':32s} {base:7.3f} s  {args.images / base:9.0f} img/s")
        for name, p in paths.items():
            t = timed(lambda p=p: read(p), args.repeat)
            print(f"  {name:32s} {t:7.3f} s  {args.images / t:9.0f} img/s")


if __name__ == "__main__":
    main()
