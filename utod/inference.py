"""Running a trained detector on images: shared preprocessing, and one ``Detector`` API over a
Keras checkpoint (``.keras``), an exported ONNX file (``.onnx``) or a TFLite file (``.tflite``).

Preprocessing (the same for every backend, and the same as training): decode with OpenCV
(BGR) -> RGB uint8 -> the checkpoint's resize backend plugin to the model input (H, W)
(stretch, no letterbox) -> float32 / 255. Batches are NHWC float32 [B, H, W, 3] in [0, 1];
an NCHW model gets them transposed.

Detections are per image ``(boxes [K,4] normalised cxcywh, scores [K], labels [K])``,
sorted by score, the tuple :mod:`utod.metrics` takes. Raw-output models (``--no-post``
ONNX, TFLite) are decoded with :func:`utod.model.postprocess.postprocess`, the same code the
Keras path uses, so every backend is scored the same way.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from utod import __version__
from utod.data.boxes_np import to_float
from utod.errors import CheckpointError, ConfigError, DataError

ImageDetections = tuple[np.ndarray, np.ndarray, np.ndarray]
"""boxes float32 [K, 4] normalised cxcywh, scores float32 [K], labels int64 [K] (contiguous)."""

METADATA_KEY = "utod"  # TFLite metadata entry holding the JSON of ModelInfo
RAW_LAYOUT = "raw: [B, Hg, Wg, A*(5+Q+C)] NHWC, anchor-major, per anchor tx,ty,tw,th,obj,[quality],cls..."
RAW_LAYOUT_NCHW = "raw: [B, A*(5+Q+C), Hg, Wg] NCHW, anchor-major, per anchor tx,ty,tw,th,obj,[quality],cls..."
DET_LAYOUT = ("detections: [B, K, 6] rows (score, class_id, cx, cy, w, h) normalised to the input, "
              "zero padded, sorted by score; num_detections: [B] int32")
MODEL_SUFFIXES = (".keras", ".onnx", ".tflite")


# Decode threshold for mAP: low enough to keep (nearly) the whole precision/recall curve.
MAP_CONF_THRESH = 0.001
MAP_EXPORT_ADVICE = f"export with --conf-thresh {MAP_CONF_THRESH:g} (or --no-post) for mAP evaluation"


# ---------------------------------------------------------------------- model description
@dataclass
class ModelInfo:
    """Everything needed to feed a model and read its output, whatever the backend.

    img_size (H, W) pixels; input_layout "nhwc" | "nchw"; output "detections" | "raw";
    anchors / wh_scale [A, 2] (effective anchors = anchors * wh_scale, normalised w, h);
    conf_thresh / nms_iou / max_detections: the values baked into a "detections" graph.
    """

    img_size: tuple[int, int]
    num_classes: int
    class_names: list[str]
    class_ids: list[int] | None
    resize_mode: str
    anchors: list[list[float]]
    wh_scale: list[list[float]]
    has_quality: bool
    score_mode: str
    quality_power: float
    conf_thresh: float
    nms_iou: float
    max_detections: int
    input_layout: str = "nhwc"
    output: str = "raw"
    input_dtype: str = "float32"
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def num_anchors(self) -> int:
        return len(self.anchors)

    @property
    def has_postprocess(self) -> bool:
        """True when the file outputs final detections (threshold, NMS IoU and K baked in)."""
        return self.output == "detections"

    @property
    def cuts_pr_curve(self) -> bool:
        """True when baked-in post-processing drops detections a mAP evaluation would use
        (its conf threshold is above ``MAP_CONF_THRESH``)."""
        return self.has_postprocess and self.conf_thresh > MAP_CONF_THRESH + 1e-12

    def baked_in(self) -> str:
        """One line naming the post-processing settings a "detections" model has baked in."""
        return (f"conf >= {self.conf_thresh:g}, NMS IoU {self.nms_iou:g}, "
                f"at most {self.max_detections} detections per image")

    def effective_anchors(self) -> np.ndarray:
        return np.asarray(self.anchors, np.float32) * np.asarray(self.wh_scale, np.float32)

    def to_json(self) -> str:
        d = asdict(self)
        d["img_size"] = list(self.img_size)
        return json.dumps(d)

    @classmethod
    def from_json(cls, text: str, source: str = "metadata") -> ModelInfo:
        try:
            d = json.loads(text)
            d["img_size"] = tuple(d["img_size"])
            return cls(**d)
        except (ValueError, TypeError, KeyError) as exc:
            raise CheckpointError(f"{source}: utod metadata cannot be read ({exc})") from exc

    def to_metadata(self) -> dict[str, str]:
        """String key/values for ONNX ``metadata_props`` (every field, plus a description)."""
        h, w = self.img_size
        props = {
            "utod_info": self.to_json(),
            "utod_version": __version__,
            "class_names": json.dumps(self.class_names),
            "class_ids": json.dumps(self.class_ids),
            "num_classes": str(self.num_classes),
            "img_size": f"{h}x{w}",
            "input_layout": self.input_layout,
            "input_range": "float32 RGB in [0, 1] (pixel / 255)",
            "resize_mode": self.resize_mode,
            "anchors": json.dumps(self.anchors),
            "wh_scale": json.dumps(self.wh_scale),
            "has_quality": str(self.has_quality).lower(),
            "score_mode": self.score_mode,
            "quality_power": repr(self.quality_power),
            "postprocess": "full" if self.output == "detections" else "raw",
            "conf_thresh": repr(self.conf_thresh),
            "nms_iou": repr(self.nms_iou),
            "max_detections": str(self.max_detections),
            "decode_bbox": "cx=(sigmoid(tx)+col)/Wg, cy=(sigmoid(ty)+row)/Hg, "
                           "w=anchor_w*wh_scale_w*softplus(tw), h=anchor_h*wh_scale_h*softplus(th)",
        }
        if self.output == "detections":
            props["output_layout"] = DET_LAYOUT
        else:
            props["output_layout"] = (RAW_LAYOUT_NCHW if self.input_layout == "nchw" else RAW_LAYOUT) + \
                "; anchors: [A,2]; wh_scale: [A,2]"
        return props


def resolved_score_mode(model: Any) -> str:
    """The score mode the model decodes with (config value, else the head's auto rule)."""
    from utod.model.postprocess import score_mode_for

    return score_mode_for(model)


def info_from_model(model: Any, *, output: str = "raw", input_layout: str = "nhwc",
                    conf_thresh: float | None = None, nms_iou: float | None = None,
                    max_detections: int | None = None) -> ModelInfo:
    """ModelInfo of a built/loaded Keras ``UltraTinyOD``."""
    cfg = model.config
    return ModelInfo(
        img_size=tuple(cfg.img_size),
        num_classes=int(cfg.num_classes),
        class_names=list(cfg.class_names),
        class_ids=list(cfg.class_ids) if cfg.class_ids is not None else None,
        resize_mode=cfg.resize_mode,
        anchors=np.asarray(model.anchors, np.float32).tolist(),
        wh_scale=np.asarray(model.wh_scale, np.float32).tolist(),
        has_quality=bool(model.has_quality),
        score_mode=resolved_score_mode(model),
        quality_power=float(cfg.quality_power),
        conf_thresh=float(cfg.conf_thresh if conf_thresh is None else conf_thresh),
        nms_iou=float(cfg.nms_iou if nms_iou is None else nms_iou),
        max_detections=int(cfg.max_detections if max_detections is None else max_detections),
        input_layout=input_layout,
        output=output,
    )


# ---------------------------------------------------------------------- preprocessing
def read_image(path: str | os.PathLike) -> np.ndarray:
    """Decode an image file to uint8 RGB [h, w, 3]; ``DataError`` naming the file if it fails."""
    from utod.data.images import read_image_rgb

    path = str(path)
    if not os.path.isfile(path):
        raise DataError(f"{path}: image file not found")
    img = read_image_rgb(path)
    if img is None:
        raise DataError(f"{path}: OpenCV cannot decode this image")
    return img


class Preprocessor:
    """uint8 RGB [h, w, 3] -> float32 [H, W, 3] in [0, 1] with the model's resize backend."""

    def __init__(self, img_size: tuple[int, int], resize_mode: str, registry: Any = None) -> None:
        if registry is None:
            from utod.registry import get_registry

            registry = get_registry()
        self.img_size = (int(img_size[0]), int(img_size[1]))
        self.resize_mode = resize_mode
        self._resize: Callable[[np.ndarray, tuple[int, int]], np.ndarray] = registry.create("resize", resize_mode)

    def __call__(self, image_rgb: np.ndarray) -> np.ndarray:
        img = np.asarray(image_rgb)
        if img.dtype != np.uint8:
            raise ValueError(f"expected a uint8 RGB image, got {img.dtype}")
        if img.shape[:2] != self.img_size:
            img = self._resize(img, self.img_size)
        return to_float(img)  # the same conversion as training, bit for bit

    def batch(self, images: Iterable[np.ndarray]) -> np.ndarray:
        """List of uint8 RGB images -> float32 [B, H, W, 3]."""
        arrs = [self(im) for im in images]
        h, w = self.img_size
        return np.stack(arrs) if arrs else np.zeros((0, h, w, 3), np.float32)

    def load(self, paths: Sequence[str | os.PathLike]) -> np.ndarray:
        return self.batch(read_image(p) for p in paths)


# ---------------------------------------------------------------------- decoding
def decode_raw(raw: np.ndarray, info: ModelInfo, conf_thresh: float, iou_thresh: float,
               max_detections: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Raw NHWC map [B, Hg, Wg, A*D] -> (detections [B, K, 6], num_valid [B]) via the model's
    own post-processing (class-aware NMS)."""
    from utod._keras import tf
    from utod.model.postprocess import postprocess

    dets, num = postprocess(
        tf.constant(raw, tf.float32), tf.constant(info.effective_anchors()), info.num_anchors, info.num_classes,
        info.has_quality, info.score_mode, info.quality_power, float(conf_thresh), float(iou_thresh),
        int(max_detections or info.max_detections),
    )
    return np.asarray(dets), np.asarray(num)


def split_detections(dets: np.ndarray, num_valid: np.ndarray | None, conf_thresh: float = 0.0) -> list[ImageDetections]:
    """[B, K, 6] rows (score, class, cx, cy, w, h) + num_valid [B] -> per-image tuples with
    score >= ``conf_thresh``, sorted by descending score."""
    out = []
    dets = np.asarray(dets, np.float32)
    for i in range(dets.shape[0]):
        n = int(num_valid[i]) if num_valid is not None else dets.shape[1]
        rows = dets[i, :n]
        rows = rows[rows[:, 0] >= conf_thresh]
        rows = rows[np.argsort(-rows[:, 0], kind="stable")]
        out.append((rows[:, 2:6].copy(), rows[:, 0].copy(), np.rint(rows[:, 1]).astype(np.int64)))
    return out


# ---------------------------------------------------------------------- detectors
class Detector:
    """A model that turns preprocessed images into detections.

    ``forward(images [B,H,W,3] float32 NHWC) -> dict`` of the backend's named outputs;
    ``detect(images, conf_thresh, iou_thresh) -> list[ImageDetections]``.
    """

    kind = "?"

    def __init__(self, path: str, info: ModelInfo) -> None:
        self.path = path
        self.info = info
        self._pre: Preprocessor | None = None

    @property
    def preprocessor(self) -> Preprocessor:
        if self._pre is None:
            self._pre = Preprocessor(self.info.img_size, self.info.resize_mode)
        return self._pre

    def forward(self, images: np.ndarray) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def raw(self, images: np.ndarray) -> np.ndarray:
        """Raw NHWC map [B, Hg, Wg, A*D] (only for raw-output models and Keras)."""
        out = self.forward(images)
        if "raw" not in out:
            raise ConfigError(f"{self.path}: this model outputs final detections, not the raw map")
        raw = out["raw"]
        return np.transpose(raw, (0, 2, 3, 1)) if self.info.input_layout == "nchw" else raw

    def detect(self, images: np.ndarray, conf_thresh: float | None = None,
               iou_thresh: float | None = None) -> list[ImageDetections]:
        conf = self.info.conf_thresh if conf_thresh is None else float(conf_thresh)
        iou = self.info.nms_iou if iou_thresh is None else float(iou_thresh)
        images = np.asarray(images, np.float32)
        if self.info.has_postprocess:
            if conf < self.info.conf_thresh - 1e-9 or abs(iou - self.info.nms_iou) > 1e-9:
                _warn_once(self, f"warning: {self.path} has post-processing built in ({self.info.baked_in()}); "
                                 "a lower conf threshold or another NMS IoU cannot be applied to it")
            out = self.forward(images)
            return split_detections(out["detections"], out.get("num_detections"), conf)
        dets, num = decode_raw(self.raw(images), self.info, conf, iou)
        return split_detections(dets, num, conf)

    def detect_files(self, paths: Sequence[str], conf_thresh: float | None = None,
                     iou_thresh: float | None = None, batch_size: int = 32) -> list[ImageDetections]:
        out: list[ImageDetections] = []
        for start in range(0, len(paths), batch_size):
            batch = self.preprocessor.load(paths[start:start + batch_size])
            out.extend(self.detect(batch, conf_thresh, iou_thresh))
        return out


_WARNED: set[tuple[int, str]] = set()


class quiet_fd2:
    """Silence C++ logging written to file descriptor 2 (TFLite converter/interpreter)."""

    def __enter__(self) -> quiet_fd2:
        sys.stderr.flush()
        self._saved = os.dup(2)
        self._tmp = tempfile.TemporaryFile()
        os.dup2(self._tmp.fileno(), 2)
        return self

    def __exit__(self, *exc: object) -> bool:
        sys.stderr.flush()
        os.dup2(self._saved, 2)
        os.close(self._saved)
        self._tmp.close()
        return False


def _warn_once(obj: object, msg: str) -> None:
    key = (id(obj), msg)
    if key not in _WARNED:
        _WARNED.add(key)
        print(msg, file=sys.stderr)


class KerasDetector(Detector):
    """A Keras ``UltraTinyOD`` (from a ``.keras`` checkpoint or in memory)."""

    kind = "keras"

    def __init__(self, model: Any, path: str = "<model>", meta: dict[str, Any] | None = None) -> None:
        super().__init__(path, info_from_model(model))
        self.model = model
        self.meta = meta or {}
        from utod._keras import tf

        self._fn = tf.function(lambda x: model(x, training=False), reduce_retracing=True)

    def forward(self, images: np.ndarray) -> dict[str, np.ndarray]:
        return {"raw": np.asarray(self._fn(np.asarray(images, np.float32)))}


class OnnxDetector(Detector):
    """An ONNX file run by onnxruntime (CPU). Needs utod metadata unless it is a raw model
    whose anchors are among its outputs."""

    kind = "onnx"

    def __init__(self, path: str, threads: int | None = None) -> None:
        import onnxruntime as ort

        ort.set_default_logger_severity(3)  # e.g. the nearest-Resize 'tf_half_pixel_for_nn' notice
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        if threads:
            opts.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types for bad files
            raise CheckpointError(f"{path}: not a loadable ONNX model ({type(exc).__name__}: {exc})") from exc
        props = self.session.get_modelmeta().custom_metadata_map
        if "utod_info" not in props:
            raise CheckpointError(f"{path}: no utod metadata (export it with `utod export`)")
        super().__init__(path, ModelInfo.from_json(props["utod_info"], path))
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        self.static_batch = inp.shape[0] if isinstance(inp.shape[0], int) else None
        self.output_names = [o.name for o in self.session.get_outputs()]

    def _run(self, x: np.ndarray) -> list[np.ndarray]:
        return self.session.run(None, {self.input_name: x})

    def forward(self, images: np.ndarray) -> dict[str, np.ndarray]:
        x = np.asarray(images, np.float32)
        if self.info.input_layout == "nchw":
            x = np.ascontiguousarray(np.transpose(x, (0, 3, 1, 2)))
        return _run_batched(self._run, x, self.static_batch, self.output_names)


def _run_batched(run: Callable[[np.ndarray], list[np.ndarray]], x: np.ndarray, static_batch: int | None,
                 names: list[str]) -> dict[str, np.ndarray]:
    """Run a possibly fixed-batch model over any batch, concatenating batched outputs.
    Outputs without a batch axis (anchors, wh_scale) are taken from the first run."""
    if static_batch is None or static_batch == x.shape[0]:
        return dict(zip(names, run(x)))
    parts: list[list[np.ndarray]] = []
    for start in range(0, x.shape[0], static_batch):
        chunk = x[start:start + static_batch]
        pad = static_batch - chunk.shape[0]
        if pad:
            chunk = np.concatenate([chunk, np.zeros((pad, *chunk.shape[1:]), chunk.dtype)])
        outs = run(chunk)
        parts.append([o[: static_batch - pad] if name not in ("anchors", "wh_scale") else o
                      for name, o in zip(names, outs)])
    result = {}
    for k, name in enumerate(names):
        result[name] = parts[0][k] if name in ("anchors", "wh_scale") else np.concatenate([p[k] for p in parts])
    return result


class TfliteDetector(Detector):
    """A TFLite file (float or int8) run by the TensorFlow Lite interpreter."""

    kind = "tflite"

    def __init__(self, path: str, threads: int | None = None) -> None:
        from utod._keras import tf

        try:
            content = Path(path).read_bytes()
            info_json = read_tflite_metadata(content)
            with warnings.catch_warnings(), quiet_fd2():  # deprecation notice, XNNPACK banner
                warnings.simplefilter("ignore")
                self.interpreter = tf.lite.Interpreter(model_content=content, num_threads=threads)
                self.interpreter.allocate_tensors()
        except CheckpointError:
            raise
        except Exception as exc:
            raise CheckpointError(f"{path}: not a loadable TFLite model ({type(exc).__name__}: {exc})") from exc
        if info_json is None:
            raise CheckpointError(f"{path}: no utod metadata (export it with `utod export --format tflite`)")
        super().__init__(path, ModelInfo.from_json(info_json, path))
        self.input_detail = self.interpreter.get_input_details()[0]
        outs = self.interpreter.get_output_details()
        self.output_details = _name_tflite_outputs(outs, self.info)
        self.static_batch = int(self.input_detail["shape"][0])

    def _run(self, x: np.ndarray) -> list[np.ndarray]:
        d = self.input_detail
        if d["dtype"] != np.float32:
            scale, zero = d["quantization"]
            x = np.clip(np.round(x / scale + zero), np.iinfo(d["dtype"]).min, np.iinfo(d["dtype"]).max).astype(d["dtype"])
        self.interpreter.set_tensor(d["index"], x)
        self.interpreter.invoke()
        outs = []
        for _, detail in self.output_details:
            y = self.interpreter.get_tensor(detail["index"])
            if detail["dtype"] in (np.int8, np.uint8, np.int16):
                scale, zero = detail["quantization"]
                y = (y.astype(np.float32) - zero) * scale
            outs.append(y)
        return outs

    def forward(self, images: np.ndarray) -> dict[str, np.ndarray]:
        x = np.asarray(images, np.float32)
        if self.info.input_layout == "nchw":
            x = np.ascontiguousarray(np.transpose(x, (0, 3, 1, 2)))
        return _run_batched(self._run, x, self.static_batch, [n for n, _ in self.output_details])


def _name_tflite_outputs(details: list[dict[str, Any]], info: ModelInfo) -> list[tuple[str, dict[str, Any]]]:
    """TFLite renames outputs (``StatefulPartitionedCall:0``...); identify them by shape."""
    named = []
    for d in details:
        shape = tuple(int(s) for s in d["shape"])
        if len(shape) == 4:
            name = "raw"
        elif len(shape) == 3 and shape[-1] == 6:
            name = "detections"
        elif len(shape) == 1:
            name = "num_detections"
        elif len(shape) == 2 and shape == (info.num_anchors, 2):
            name = "anchors" if "anchors" not in {n for n, _ in named} else "wh_scale"
        else:
            name = d["name"]
        named.append((name, d))
    return named


def add_tflite_metadata(content: bytes, info_json: str) -> bytes:
    """Return the TFLite flatbuffer with a metadata entry ``utod`` holding ``info_json``."""
    from utod._keras import tf  # noqa: F401, I001  (quiet TF import first)
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(content))
    buf = schema.BufferT()
    buf.data = np.frombuffer(info_json.encode("utf-8"), np.uint8)
    model.buffers.append(buf)
    entry = schema.MetadataT()
    entry.name = METADATA_KEY
    entry.buffer = len(model.buffers) - 1
    model.metadata = [m for m in (model.metadata or []) if m.name != METADATA_KEY.encode()] + [entry]
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def read_tflite_metadata(content: bytes) -> str | None:
    """The ``utod`` metadata JSON of a TFLite flatbuffer, or ``None``."""
    from utod._keras import tf  # noqa: F401, I001
    from tensorflow.lite.python import schema_py_generated as schema

    model = schema.Model.GetRootAsModel(content, 0)
    for i in range(model.MetadataLength()):
        meta = model.Metadata(i)
        if meta.Name() and meta.Name().decode() == METADATA_KEY:
            data = model.Buffers(meta.Buffer()).DataAsNumpy()
            return bytes(data).decode("utf-8")
    return None


def load_detector(path: str | os.PathLike, *, threads: int | None = None) -> Detector:
    """Open a ``.keras`` checkpoint, ``.onnx`` or ``.tflite`` file as a :class:`Detector`."""
    path = str(path)
    if not os.path.exists(path):
        raise CheckpointError(f"{path}: model file not found")
    suffix = Path(path).suffix.lower()
    if suffix == ".onnx":
        return OnnxDetector(path, threads=threads)
    if suffix == ".tflite":
        return TfliteDetector(path, threads=threads)
    if suffix == ".keras" or os.path.isdir(path):
        from utod.model.io import load_checkpoint

        model, meta = load_checkpoint(path)
        return KerasDetector(model, path, meta)
    raise ConfigError(f"{path}: unknown model format '{suffix}' (expected one of {', '.join(MODEL_SUFFIXES)})")


# ---------------------------------------------------------------------- datasets
def contiguous_labels(labels: np.ndarray, info: ModelInfo) -> tuple[np.ndarray, np.ndarray]:
    """Raw dataset ids [N] -> (contiguous class index [N'], keep mask [N]): ids outside the
    model's classes (``class_ids`` or 0..C-1) are dropped."""
    labels = np.asarray(labels, np.int64).reshape(-1)
    ids = info.class_ids if info.class_ids is not None else list(range(info.num_classes))
    table = {raw: k for k, raw in enumerate(ids)}
    mapped = np.array([table.get(int(v), -1) for v in labels], np.int64)
    keep = mapped >= 0
    return mapped[keep], keep


def evaluate_detector(detector: Detector, items: Sequence[Any], *, conf_thresh: float | None = None,
                      iou_thresh: float | None = None, eval_conf_thresh: float = 0.15,
                      batch_size: int = 32) -> dict[str, Any]:
    """COCO mAP of ``detector`` on ``items`` (``DatasetItem``: image_path, boxes, raw labels).

    ``conf_thresh`` / ``iou_thresh``: decode thresholds (default: the model's);
    ``eval_conf_thresh``: the threshold of the reported precision/recall.

    A model with post-processing inside (``info.output == "detections"``) can only give what
    it outputs: its baked-in threshold (or a higher ``conf_thresh``), its NMS IoU and top-K.
    The mAP is then computed on those detections, which cuts the precision/recall curve at
    the baked threshold (a lower mAP than the checkpoint's at 0.001 when it was exported
    with a high ``--conf-thresh``). The result says which settings were used:
    ``effective_conf_thresh``, ``effective_nms_iou`` and ``baked_conf_thresh`` /
    ``baked_nms_iou`` / ``baked_max_detections`` (``None`` for raw-output models and Keras).
    """
    from utod.metrics import evaluate_detections

    info = detector.info
    conf = info.conf_thresh if conf_thresh is None else float(conf_thresh)
    iou = info.nms_iou if iou_thresh is None else float(iou_thresh)
    if info.has_postprocess:  # what the file can give: nothing below its threshold, its own NMS
        conf = max(conf, info.conf_thresh)
    gts = []
    for it in items:
        labels, keep = contiguous_labels(it.labels, info)
        gts.append((np.asarray(it.boxes, np.float32).reshape(-1, 4)[keep], labels))
    dets = detector.detect_files([it.image_path for it in items], conf, iou, batch_size)
    result = evaluate_detections(gts, dets, info.num_classes, img_size=info.img_size,
                                 conf_thresh=eval_conf_thresh, class_names=info.class_names,
                                 max_detections=max(100, info.max_detections))
    baked = info.has_postprocess
    result.update(
        effective_conf_thresh=conf,
        effective_nms_iou=info.nms_iou if baked else iou,
        baked_conf_thresh=info.conf_thresh if baked else None,
        baked_nms_iou=info.nms_iou if baked else None,
        baked_max_detections=info.max_detections if baked else None,
    )
    return result


def load_eval_items(image_dir: str, info: ModelInfo, *, split: str = "all", train_split: float = 0.8,
                    val_split: float = 0.2, seed: int = 42, log: Callable[[str], None] | None = None) -> list[Any]:
    """Labelled images of ``image_dir`` for evaluation: all of them (``split="all"``) or the
    ``"val"``/``"train"`` part of the trainer's deterministic split (same ratios and seed
    give the same images as ``utod train``)."""
    from utod.data.dataset import scan_dataset
    from utod.data.split import split_items

    if split not in ("all", "val", "train"):
        raise ConfigError(f"--split must be all, val or train, got '{split}'")
    ids = info.class_ids if info.class_ids is not None else list(range(info.num_classes))
    scan = scan_dataset(image_dir, class_ids=ids, num_classes=len(ids), log=log)
    items = scan.items
    if split != "all":
        train, val = split_items(items, train_split, val_split, seed)
        items = val if split == "val" else train
        if not items:
            raise DataError(f"the {split} split of '{image_dir}' is empty "
                            f"(train_split {train_split}, val_split {val_split}, {len(scan.items)} images)")
    return items
