"""`utod eval` / `utod predict` throughput per format (prints numbers; not a test).

Builds the N model (width 64, seed README configuration, untrained: speed does not depend on
the weights), saves it as ``.keras`` and exports it to ONNX (batch 1, as ``utod export``
writes by default, and ``--dynamic-batch``) and TFLite (float), post-processing inside and
``--conf-thresh 0.001`` as advised for mAP files, generates ``--images`` labelled
640x640 JPEGs and a 640x480 video of ``--frames`` frames, then runs the commands in-process
through the CLI (so the numbers are what a user gets) and prints, per format:

* eval img/s: images read + preprocessed + detected + decoded per second (COCO scoring and
  model loading excluded; the command prints the same number), and the whole command's wall;
* predict img/s on the image folder (``--no-draw``: detections.json/.csv only);
* predict fps on the video (annotated ``.mp4`` written), against 30 fps.

The machine is shared (8 engineers on 2 cores when these numbers were taken): the load
average before and after is printed; compare runs only at similar load.

    python bench/bench_infer.py [--images 300] [--frames 300] [--formats keras,onnx,onnx_dynamic,tflite]

``export_models(folder, formats)`` and ``measure(folder, video, models, work)`` are importable.
"""

from __future__ import annotations

import argparse
import os
import re
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
from bench_export import load_average, n_model  # same folder: run as `python bench/bench_infer.py`
from bench_pipeline import make_images

FORMATS = ("keras", "onnx", "onnx_dynamic", "tflite")


def make_video(path: Path, frames: int, size: tuple[int, int] = (480, 640), fps: float = 30.0) -> None:
    """An mp4v video of a few rectangles moving over a gradient, ``size`` = (h, w)."""
    h, w = size
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    base = np.zeros((h, w, 3), np.uint8)
    base[:] = np.linspace(30, 120, w, dtype=np.uint8)[None, :, None]
    for i in range(frames):
        img = base.copy()
        for k in range(3):
            x = int((i * (3 + k) + 80 * k) % (w - 120))
            y = int(60 + 120 * k + 20 * np.sin(i / 10 + k))
            cv2.rectangle(img, (x, y), (x + 100 + 20 * k, y + 70), (40 + 60 * k, 200, 220 - 50 * k), -1)
        writer.write(img)
    writer.release()


def export_models(folder: Path, formats: tuple[str, ...]) -> dict[str, Path]:
    """The N model as .keras, .onnx (batch 1, and dynamic batch) and .tflite (batch 1),
    post-processing inside, conf 0.001."""
    from utod.export import export_onnx, export_tflite
    from utod.model.io import save_checkpoint

    model = n_model()
    paths = {"keras": save_checkpoint(folder / "n.keras", model)}
    if "onnx" in formats:
        paths["onnx"] = folder / "n.onnx"
        export_onnx(model, paths["onnx"], post=True, conf_thresh=0.001)
    if "onnx_dynamic" in formats:  # `utod export --dynamic-batch`: runs whole batches
        paths["onnx_dynamic"] = folder / "n_dynamic.onnx"
        export_onnx(model, paths["onnx_dynamic"], post=True, conf_thresh=0.001, batch=None)
    if "tflite" in formats:
        paths["tflite"] = folder / "n.tflite"
        export_tflite(model, paths["tflite"], post=True, conf_thresh=0.001, log=lambda m: None)
    return {k: v for k, v in paths.items() if k in formats}


def _rate(text: str, pattern: str) -> float:
    """The number the command printed in its own throughput report (``pattern`` has one group)."""
    found = re.findall(pattern, text)
    return float(found[-1]) if found else float("nan")


_TOTAL = r"(?:images|frames) in [0-9.]+s: ([0-9.]+) (?:img/s|fps)"
_STEADY = r"\(([0-9.]+) img/s after the first batch"


def measure(folder: Path, video: Path | None, models: dict[str, Path], work: Path) -> list[dict[str, float | str]]:
    """Run `utod eval` / `utod predict` on every model; one row of numbers per format."""
    from click.testing import CliRunner

    from utod.cli import cli

    runner = CliRunner()
    rows = []
    for fmt, path in models.items():
        row: dict[str, float | str] = {"format": fmt}
        t = time.perf_counter()
        res = runner.invoke(cli, ["eval", str(path), "--image-dir", str(folder)])
        row["eval_wall_s"] = time.perf_counter() - t
        if res.exit_code != 0:
            raise RuntimeError(f"utod eval {path} failed: {res.output}")
        row["eval_img_s"] = _rate(res.output, _TOTAL)
        row["eval_steady_img_s"] = _rate(res.output, _STEADY)
        res = runner.invoke(cli, ["predict", str(path), str(folder), "--out", str(work / f"pred_{fmt}"),
                                  "--no-draw"])
        if res.exit_code != 0:
            raise RuntimeError(f"utod predict {path} failed: {res.output}")
        row["predict_img_s"] = _rate(res.output, _TOTAL)
        if video is not None:
            res = runner.invoke(cli, ["predict", str(path), str(video), "--out", str(work / f"vid_{fmt}")])
            if res.exit_code != 0:
                raise RuntimeError(f"utod predict {video} failed: {res.output}")
            row["video_fps"] = _rate(res.output, _TOTAL)
        rows.append(row)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=300)
    ap.add_argument("--frames", type=int, default=300, help="video frames (0: no video)")
    ap.add_argument("--formats", default=",".join(FORMATS))
    args = ap.parse_args()
    formats = tuple(f.strip() for f in args.formats.split(",") if f.strip())

    from utod._keras import tf  # noqa: F401  (import TF before timing)

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = tmp / "data"
        data.mkdir()
        t = time.perf_counter()
        make_images(data, args.images)
        video = None
        if args.frames:
            video = tmp / "clip.mp4"
            make_video(video, args.frames)
        print(f"generated {args.images} 640x640 JPEGs and a {args.frames}-frame 640x480 video "
              f"in {time.perf_counter() - t:.1f}s")
        models = export_models(tmp, formats)
        load_before = load_average()
        rows = measure(data, video, models, tmp)
    print(f"\n=== bench_infer (N model, 64x64, {os.cpu_count()} cores; load average before {load_before}, "
          f"after {load_average()}) ===")
    print(f"{'format':<12} {'eval img/s':>11} {'(steady)':>9} {'eval wall s':>12} {'predict img/s':>14} "
          f"{'video fps':>10}")
    for r in rows:
        print(f"{r['format']:<12} {r['eval_img_s']:>11.1f} {r['eval_steady_img_s']:>9.1f} {r['eval_wall_s']:>12.1f} "
              f"{r['predict_img_s']:>14.1f} {r.get('video_fps', float('nan')):>10.1f}")
    print("eval img/s: read + preprocess + detect (COCO scoring and model loading excluded; steady: after "
          "the first batch, which includes compiling); eval wall: the whole command in-process")
    print("video target: 30 fps (predict on a 640x480 video, annotated mp4 written)")


if __name__ == "__main__":
    main()
