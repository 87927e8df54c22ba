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
import time
from pathlib import Path
from typing import Any

import click

from utod.cli._common import UtodCliError, user_errors
from utod.diagnostics.threshold import CONF_THRESH, resolve_for_model

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
@click.option("--conf-thresh", type=CONF_THRESH, default=None,
              help="Score threshold (default: the model's); 'best' (or 'f1'): the F1-optimal confidence "
                   "stored in the .keras checkpoint by training.")
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
        from utod.atomic import check_writable_dir
        from utod.infer.load import load_detector

        out = check_writable_dir(out_dir)  # before any work: a read-only --out fails at once
        conf_thresh = resolve_for_model(conf_thresh, model_path, click.echo)
        detector = load_detector(model_path)
        detector.batch_size = batch_size
        records: list[dict[str, Any]] = []
        records += _predict_images(detector, images, out, conf_thresh, iou_thresh, batch_size, not no_draw)
        for v in videos:
            records += _predict_stream(detector, v, out, conf_thresh, iou_thresh, max_frames, not no_draw, batch_size)
        if camera is not None:
            records += _predict_stream(detector, camera, out, conf_thresh, iou_thresh, max_frames, not no_draw, 1)
        _write_outputs(out, records, detector)
        n_det = sum(len(r["detections"]) for r in records)
        click.echo(f"{len(records)} images/frames, {n_det} detections -> {out}")


def _annotated_name(path: str, used: set[str]) -> str:
    """File name of the annotated copy of ``path`` (unique when two folders share a name;
    formats OpenCV may not write become .png)."""
    name = Path(path).name
    if name in used:  # same file name from two folders
        name = f"{Path(path).stem}_{len(used)}{Path(path).suffix}"
    used.add(name)
    ext = Path(name).suffix.lower()
    return name if ext in (".jpg", ".jpeg", ".png", ".bmp") else Path(name).stem + ".png"


def _write_annotated(target: Path, image_rgb: Any, rows: list[dict[str, Any]]) -> None:
    import cv2

    from utod.atomic import atomic_path

    with atomic_path(target) as tmp:  # the temporary name keeps the extension OpenCV encodes by
        if not cv2.imwrite(str(tmp), draw(cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR), rows)):
            raise UtodCliError(f"{target}: OpenCV cannot write this image")


def _predict_images(detector, paths, out, conf, iou, batch_size, draw_boxes) -> list[dict[str, Any]]:
    """Images read and preprocessed by worker threads a batch or two ahead, detected in
    batches, annotated copies written by a worker thread; prints img/s."""
    from concurrent.futures import ThreadPoolExecutor

    from utod.infer.preprocess import ImageLoader

    if not paths:
        return []
    records = []
    names = detector.info.class_names
    used: set[str] = set()
    t0 = time.perf_counter()
    model_s = 0.0
    with ThreadPoolExecutor(1, thread_name_prefix="utod-write") as writer:
        pending = []
        for batch in ImageLoader(detector.preprocessor, batch_size, keep_originals=True).batches(paths):
            for _, exc in batch.failed:  # an unreadable image is reported and skipped
                click.echo(f"warning: {exc} — skipped", err=True)
            if not batch.paths:
                continue
            t = time.perf_counter()
            dets = detector.detect(batch.images, conf, iou)
            model_s += time.perf_counter() - t
            for path, img, d in zip(batch.paths, batch.originals, dets):
                h, w = img.shape[:2]
                rows = detection_rows(d, w, h, names)
                records.append({"image": path, "frame": None, "width": w, "height": h, "detections": rows})
                if draw_boxes:
                    pending.append(writer.submit(_write_annotated, out / _annotated_name(path, used), img, rows))
        for fut in pending:
            fut.result()
    if records:
        wall = time.perf_counter() - t0
        click.echo(f"{len(records)} images in {wall:.2f}s: {len(records) / wall:.1f} img/s "
                   f"(model alone {len(records) / max(model_s, 1e-9):.1f} img/s, {detector.batching()})", err=True)
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


_END = object()  # end-of-stream marker in the reader/writer queues


class _FrameReader:
    """Reads and preprocesses frames on a thread, a few frames ahead: ``get()`` returns
    ``(bgr frame, float32 [H, W, 3])`` or ``None`` at the end (or after ``max_frames``)."""

    def __init__(self, cap: Any, preprocessor: Any, max_frames: int | None, depth: int) -> None:
        import queue
        import threading

        self._cap, self._pre, self._max = cap, preprocessor, max_frames
        self._queue: queue.Queue = queue.Queue(maxsize=max(2, depth))
        self._stop = threading.Event()
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="utod-frames", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import cv2

        n = 0
        try:
            while not self._stop.is_set() and (self._max is None or n < self._max):
                ok, frame = self._cap.read()
                if not ok:
                    break
                self._put((frame, self._pre(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))))
                n += 1
        except BaseException as exc:  # re-raised in the consumer
            self.error = exc
        finally:
            self._put(_END)

    def _put(self, item: Any) -> None:
        import queue

        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def get(self, block: bool = True) -> Any:
        """The next frame, ``None`` at the end, or ``False`` when ``block`` is False and none is ready."""
        import queue

        try:
            item = self._queue.get(block=block)
        except queue.Empty:
            return False
        if item is _END:
            self._queue.put(_END)  # later calls see the end too
            if self.error is not None:
                raise self.error
            return None
        return item

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


class _VideoWriter:
    """Draws and encodes annotated frames on a thread (mp4v, opened at the first frame)."""

    def __init__(self, target: Path, fps: float) -> None:
        import queue
        import threading

        self.target, self.fps = target, fps
        self._queue: queue.Queue = queue.Queue(maxsize=32)
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="utod-video", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import cv2

        writer = None
        try:
            while (item := self._queue.get()) is not _END:
                if self.error is not None:
                    continue  # drain after a failure
                frame, rows = item
                if writer is None:
                    h, w = frame.shape[:2]
                    writer = cv2.VideoWriter(str(self.target), cv2.VideoWriter_fourcc(*"mp4v"), self.fps, (w, h))
                    if not writer.isOpened():
                        raise UtodCliError(f"{self.target}: OpenCV cannot write an mp4v video here")
                writer.write(draw(frame, rows))
        except BaseException as exc:  # re-raised by close()
            self.error = exc
            while self._queue.get() is not _END:
                pass
        finally:
            if writer is not None:
                writer.release()

    def write(self, frame: Any, rows: list[dict[str, Any]]) -> None:
        if self.error is not None:
            raise self.error
        self._queue.put((frame, rows))

    def close(self) -> None:
        self._queue.put(_END)
        self._thread.join()
        if self.error is not None:
            raise self.error


def _predict_stream(detector, source, out, conf, iou, max_frames, draw_boxes=True, batch_size=1) -> list[dict[str, Any]]:
    """Video file path or camera index -> annotated ``<name>_pred.mp4`` (unless not
    ``draw_boxes``) + one record per frame. Frames are read and preprocessed on one thread,
    detected in batches of up to ``batch_size`` (a camera: what is ready, so latency stays one
    frame), drawn and encoded on another; prints the frames per second reached."""
    import cv2
    import numpy as np

    cap = open_capture(source)
    label = f"camera{source}" if isinstance(source, int) else str(source)
    fps = cap.get(cv2.CAP_PROP_FPS) or 30.0
    stem = f"camera{source}" if isinstance(source, int) else Path(source).stem
    reader = _FrameReader(cap, detector.preprocessor, max_frames, 2 * max(1, batch_size))
    writer = _VideoWriter(out / f"{stem}_pred.mp4", fps) if draw_boxes else None
    records: list[dict[str, Any]] = []
    names = detector.info.class_names
    t0 = time.perf_counter()
    model_s = 0.0
    try:
        ended = False
        while not ended and (first := reader.get()) is not None:
            frames = [first]
            while len(frames) < batch_size:  # a file fills the batch; a camera takes what is ready
                nxt = reader.get(block=not isinstance(source, int))
                if nxt is None:
                    ended = True
                if not nxt:
                    break
                frames.append(nxt)
            t = time.perf_counter()
            dets = detector.detect(np.stack([x for _, x in frames]), conf, iou)
            model_s += time.perf_counter() - t
            for (frame, _), d in zip(frames, dets):
                h, w = frame.shape[:2]
                rows = detection_rows(d, w, h, names)
                records.append({"image": label, "frame": len(records), "width": w, "height": h, "detections": rows})
                if writer is not None:
                    writer.write(frame, rows)
    except KeyboardInterrupt:  # Ctrl-C ends a camera stream; the frames so far are written
        click.echo(f"{label}: stopped after {len(records)} frames", err=True)
    finally:
        reader.close()
        cap.release()
        if writer is not None:
            writer.close()
    if not records:
        raise UtodCliError(f"{label}: no frame could be read")
    wall = time.perf_counter() - t0
    rate = len(records) / wall
    verdict = "keeps up with" if rate >= fps else "is below"
    click.echo(f"{label}: {len(records)} frames in {wall:.2f}s: {rate:.1f} fps, which {verdict} the source's "
               f"{fps:g} fps (model alone {len(records) / max(model_s, 1e-9):.1f} img/s, "
               f"{detector.batching()})", err=True)
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
    from utod.atomic import atomic_open, write_text

    write_text(out / "detections.json", json.dumps(doc, indent=1))
    with atomic_open(out / "detections.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=CSV_COLUMNS)
        w.writeheader()
        for rec in records:
            for row in rec["detections"]:
                w.writerow({"image": rec["image"], "frame": "" if rec["frame"] is None else rec["frame"], **row})
