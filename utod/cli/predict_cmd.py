"""``utod predict MODEL INPUTS... --out DIR``: run a .keras / .onnx / .tflite model on images,
folders (recursive), videos or a camera; write annotated copies plus detections.json/.csv.

Boxes are written in original-image pixels (x1, y1, x2, y2; the model stretches the image,
so normalised cxcywh maps back by the original width and height) and also as normalised
(cx, cy, w, h).
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any

import click

from utod.cli._common import UtodCliError, user_errors

VIDEO_EXTENSIONS = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg"}
CSV_COLUMNS = ("image", "frame", "class_id", "class_name", "score", "x1", "y1", "x2", "y2", "cx", "cy", "w", "h")


def collect_inputs(inputs: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """Split CLI inputs into (image paths, video paths); folders are searched recursively."""
    from utod.data.discovery import find_images_in_dir

    images: list[str] = []
    videos: list[str] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            images.extend(find_images_in_dir(p))  # the same discovery rules as training
        elif p.is_file():
            if p.suffix.lower() in VIDEO_EXTENSIONS:
                videos.append(str(p))
            else:
                images.append(str(p))
        else:
            raise UtodCliError(f"{item}: no such file or folder")
    return images, videos


def detection_rows(dets: Any, width: int, height: int, names: list[str]) -> list[dict[str, Any]]:
    """One image's ``(boxes, scores, labels)`` -> rows with pixel xyxy (clipped) and normalised cxcywh."""
    boxes, scores, labels = dets
    rows = []
    for (cx, cy, w, h), s, c in zip(boxes.tolist(), scores.tolist(), labels.tolist()):
        x1, y1 = max(0.0, (cx - w / 2) * width), max(0.0, (cy - h / 2) * height)
        x2, y2 = min(float(width), (cx + w / 2) * width), min(float(height), (cy + h / 2) * height)
        rows.append({
            "class_id": int(c), "class_name": names[c] if 0 <= c < len(names) else str(c), "score": round(s, 6),
            "x1": round(x1, 2), "y1": round(y1, 2), "x2": round(x2, 2), "y2": round(y2, 2),
            "cx": round(cx, 6), "cy": round(cy, 6), "w": round(w, 6), "h": round(h, 6),
        })
    return rows


_COLOURS = [(0, 0, 255), (255, 128, 0), (0, 200, 0), (200, 0, 200), (0, 200, 255), (255, 255, 0)]


def draw(image_bgr: Any, rows: list[dict[str, Any]]) -> Any:
    """Draw boxes with ``name score`` labels on a BGR image (in place) and return it."""
    import cv2

    for r in rows:
        colour = _COLOURS[r["class_id"] % len(_COLOURS)]
        p1, p2 = (int(round(r["x1"])), int(round(r["y1"]))), (int(round(r["x2"])), int(round(r["y2"])))
        thick = max(1, round(min(image_bgr.shape[:2]) / 200))
        cv2.rectangle(image_bgr, p1, p2, colour, thick)
        text = f"{r['class_name']} {r['score']:.2f}"
        scale = max(0.3, min(image_bgr.shape[:2]) / 600)
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
        ty = max(p1[1], th + base)
        cv2.rectangle(image_bgr, (p1[0], ty - th - base), (p1[0] + tw, ty), colour, -1)
        cv2.putText(image_bgr, text, (p1[0], ty - base), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1,
                    cv2.LINE_AA)
    return image_bgr


@click.command("predict")
@click.argument("model_path", metavar="MODEL", type=click.Path(dir_okay=False))
@click.argument("inputs", nargs=-1, type=click.Path())
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="predictions", show_default=True,
              help="Output folder for annotated images/videos and detections.json/.csv.")
@click.option("--conf-thresh", type=float, default=None, help="Score threshold (default: the model's).")
@click.option("--iou-thresh", type=float, default=None, help="NMS IoU (default: the model's).")
@click.option("--camera", type=int, default=None,
              help="Read frames from camera N (OpenCV index); stop with --max-frames or Ctrl-C.")
@click.option("--max-frames", type=click.IntRange(min=1), default=None, help="Stop a video/camera after N frames.")
@click.option("--batch-size", type=int, default=16, show_default=True)
@click.option("--no-draw", is_flag=True, help="Write only detections.json/.csv.")
def predict(model_path, inputs, out_dir, conf_thresh, iou_thresh, camera, max_frames, batch_size, no_draw):
    """Detect objects with a .keras checkpoint or an exported .onnx / .tflite model.

    INPUTS are image files, folders (searched recursively) or video files. Annotated copies go
    to --out with detections.json and detections.csv (pixel x1,y1,x2,y2 in the original
    image plus normalised cx,cy,w,h); videos (and --camera) become <name>_pred.mp4 and one
    record per frame (`frame` = 0-based frame number).
    """
    with user_errors():
        if not inputs and camera is None:
            raise UtodCliError("give image/video paths or folders, or --camera N")
        images, videos = collect_inputs(inputs)
        if inputs and not images and not videos and camera is None:
            raise UtodCliError("no images or videos found in the given inputs")
        from utod.infer.load import load_detector

        detector = load_detector(model_path)
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        records: list[dict[str, Any]] = []
        records += _predict_images(detector, images, out, conf_thresh, iou_thresh, batch_size, not no_draw)
        for v in videos:
            records += _predict_stream(detector, v, out, conf_thresh, iou_thresh, max_frames, not no_draw)
        if camera is not None:
            records += _predict_stream(detector, camera, out, conf_thresh, iou_thresh, max_frames, not no_draw)
        _write_outputs(out, records, detector)
        n_det = sum(len(r["detections"]) for r in records)
        click.echo(f"{len(records)} images/frames, {n_det} detections -> {out}")


def _predict_images(detector, paths, out, conf, iou, batch_size, draw_boxes) -> list[dict[str, Any]]:
    import cv2

    from utod.errors import DataError
    from utod.infer.preprocess import read_image

    records = []
    names = detector.info.class_names
    used: set[str] = set()
    for start in range(0, len(paths), batch_size):
        chunk, originals = [], []
        for p in paths[start:start + batch_size]:  # an unreadable image is reported and skipped
            try:
                originals.append(read_image(p))
                chunk.append(p)
            except DataError as exc:
                click.echo(f"warning: {exc} — skipped", err=True)
        if not chunk:
            continue
        batch = detector.preprocessor.batch(originals)
        for path, img, dets in zip(chunk, originals, detector.detect(batch, conf, iou)):
            h, w = img.shape[:2]
            rows = detection_rows(dets, w, h, names)
            records.append({"image": path, "frame": None, "width": w, "height": h, "detections": rows})
            if draw_boxes:
                name = Path(path).name
                if name in used:  # same file name from two folders
                    name = f"{Path(path).stem}_{len(used)}{Path(path).suffix}"
                used.add(name)
                bgr = draw(cv2.cvtColor(img, cv2.COLOR_RGB2BGR), rows)
                ext = Path(name).suffix.lower()
                target = out / (name if ext in (".jpg", ".jpeg", ".png", ".bmp") else Path(name).stem + ".png")
                cv2.imwrite(str(target), bgr)
    return records


def open_capture(source: str | int) -> Any:
    """``cv2.VideoCapture`` of a video file or camera index; ``UtodCliError`` when it cannot be
    opened (OpenCV's own backend warnings are kept off the terminal)."""
    import cv2

    from utod.quiet import quiet_fd2

    with quiet_fd2():  # V4L2/FFMPEG "can't open camera by index" warnings
        cap = cv2.VideoCapture(source)
        opened = cap.isOpened()
    if not opened:
        cap.release()
        if isinstance(source, int):
            raise UtodCliError(f"camera {source}: OpenCV cannot open camera index {source} "
                               "(no such device, busy, or no permission)")
        raise UtodCliError(f"{source}: OpenCV cannot open this video (unsupported codec or not a video)")
    return cap


def _predict_stream(detector, source, out, conf, iou, max_frames, draw_boxes=True) -> list[dict[str, Any]]:
    """Video file path or camera index -> annotated ``<name>_pred.mp4`` (unless not
    ``draw_boxes``) + one record per frame."""
    import cv2

    cap = open_capture(source)
    label = f"camera{source}" if isinstance(source, int) else str(source)
    fps = cap.get(cv2.CAP_PROP_FPS) or 30.0
    stem = f"camera{source}" if isinstance(source, int) else Path(source).stem
    target = out / f"{stem}_pred.mp4"
    writer = None
    records = []
    names = detector.info.class_names
    frame_no = 0
    try:
        while max_frames is None or frame_no < max_frames:
            ok, frame = cap.read()
            if not ok:
                break
            rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
            dets = detector.detect(detector.preprocessor.batch([rgb]), conf, iou)[0]
            h, w = frame.shape[:2]
            rows = detection_rows(dets, w, h, names)
            records.append({"image": label, "frame": frame_no, "width": w, "height": h, "detections": rows})
            if draw_boxes:
                if writer is None:
                    writer = cv2.VideoWriter(str(target), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
                    if not writer.isOpened():
                        raise UtodCliError(f"{target}: OpenCV cannot write an mp4v video here")
                writer.write(draw(frame, rows))
            frame_no += 1
    except KeyboardInterrupt:  # Ctrl-C ends a camera stream; the frames so far are written
        click.echo(f"{label}: stopped after {frame_no} frames", err=True)
    finally:
        cap.release()
        if writer is not None:
            writer.release()
    if not records:
        raise UtodCliError(f"{label}: no frame could be read")
    return records


def _write_outputs(out: Path, records: list[dict[str, Any]], detector) -> None:
    info = detector.info
    doc = {
        "model": os.path.abspath(detector.path),
        "backend": detector.kind,
        "class_names": info.class_names,
        "img_size": list(info.img_size),
        "box_format": "x1,y1,x2,y2: pixels of the original image; cx,cy,w,h: normalised to the image",
        "images": records,
    }
    (out / "detections.json").write_text(json.dumps(doc, indent=1), encoding="utf-8")
    with open(out / "detections.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=CSV_COLUMNS)
        w.writeheader()
        for rec in records:
            for row in rec["detections"]:
                w.writerow({"image": rec["image"], "frame": "" if rec["frame"] is None else rec["frame"], **row})
