"""The Python API: the same functions the command line runs.

::

    import utod

    run = utod.train(data="datasets/pets/data.yaml", epochs=30, cnn_width=16, img_size="64x64")
    print(run.run_dir, run.metrics["map50"])
    model = utod.load(run.best)                    # .keras, .onnx or .tflite
    dets = model.predict("photo.jpg")              # one Detections (a list for a list/folder)
    print(dets.class_names, dets.scores, dets.xyxy)
    print(model.evaluate("datasets/pets/data.yaml", split="val")["map50"])
    onnx_path = model.export(format="onnx")

``utod train`` calls :func:`train`, ``utod eval`` calls :func:`evaluate`, and
:meth:`Model.export` runs the implementation of ``utod export``. TensorFlow is imported only
when one of them runs (``import utod`` stays light).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

PathLike = str | os.PathLike


@dataclass
class TrainResult:
    """A finished training run: its folder, the final validation metrics (``map50``,
    ``map``, ``precision``, ``recall``, ... ; empty without validation) and checkpoints."""

    run_dir: Path
    metrics: dict[str, Any] = field(default_factory=dict)

    @property
    def best(self) -> Path:
        """``best.keras`` (``last.keras`` when no validation chose a best one)."""
        p = self.run_dir / "best.keras"
        return p if p.is_file() else self.last

    @property
    def last(self) -> Path:
        return self.run_dir / "last.keras"


def train(data: PathLike | None = None, *, config: PathLike | None = None, **options: Any) -> TrainResult:
    """Train a detector. ``data``: any dataset layout (a data.yaml, an obj.data, a COCO .json,
    a folder; see docs/datasets.md; ``None``: the built-in generated dataset). ``options``: any
    ``utod train`` setting by its field name (``epochs=30``, ``cnn_width=16``,
    ``classes="0"``, ``train_list=...``); ``config``: a run YAML (options win over it).
    Unknown option names raise :class:`utod.errors.ConfigError` with a suggestion."""
    from utod.config import normalise_config_dict
    from utod.train.run import run_training

    given = dict(options)
    if data is not None:
        given["data"] = str(data)
    given = {k: (str(v) if isinstance(v, os.PathLike) else v) for k, v in given.items()}
    normalise_config_dict(given, source="utod.train()")  # unknown keys -> ConfigError
    trainer = run_training(given, config_file=str(config) if config is not None else None)
    return TrainResult(Path(trainer.run_dir), dict(getattr(trainer, "last_metrics", {}) or {}))


@dataclass
class Detections:
    """Detections of one image, sorted by score.

    boxes: float32 [K, 4] normalised (cx, cy, w, h); scores: float32 [K]; class_ids: int [K]
    (contiguous model classes); class_names: [K] names; image_size: (height, width) pixels of
    the original image (``None`` for a preprocessed array); xyxy: float32 [K, 4] pixel corners
    in the original image (clipped), ``None`` without an image size.
    """

    boxes: np.ndarray
    scores: np.ndarray
    class_ids: np.ndarray
    class_names: list[str]
    image_size: tuple[int, int] | None = None
    source: str | None = None

    @property
    def xyxy(self) -> np.ndarray | None:
        if self.image_size is None:
            return None
        h, w = self.image_size
        cx, cy, bw, bh = (self.boxes[:, i] for i in range(4))
        out = np.stack([(cx - bw / 2) * w, (cy - bh / 2) * h, (cx + bw / 2) * w, (cy + bh / 2) * h], -1)
        return np.clip(out, 0, [w, h, w, h]).astype(np.float32).reshape(-1, 4)

    def __len__(self) -> int:
        return len(self.scores)

    def rows(self) -> list[dict[str, Any]]:
        """The rows ``utod predict`` writes to detections.json (pixel and normalised boxes)."""
        from utod.cli.predict_cmd import detection_rows

        h, w = self.image_size or (1, 1)
        return detection_rows((self.boxes, self.scores, self.class_ids), w, h, list(self._names))

    _names: list[str] = field(default_factory=list, repr=False)


class Model:
    """A trained detector (``.keras`` checkpoint or exported ``.onnx`` / ``.tflite``)."""

    def __init__(self, detector: Any) -> None:
        self.detector = detector
        self.path = Path(detector.path)
        self.info = detector.info

    @property
    def class_names(self) -> list[str]:
        return list(self.info.class_names)

    def __repr__(self) -> str:
        return f"utod.Model({self.path}, {self.detector.kind}, classes={self.class_names})"

    # ------------------------------------------------------------------ predict
    def predict(self, source: Any, *, conf: float | None = None, iou: float | None = None,
                batch_size: int = 16) -> Detections | list[Detections]:
        """Detect objects. ``source``: an image path, a folder (searched recursively), an RGB
        uint8 image ``[H, W, 3]``, a preprocessed float batch ``[B, h, w, 3]`` in [0, 1] at the
        model's input size, or a list of paths / images. A single image gives one
        :class:`Detections`, anything else a list. ``conf``/``iou``: default the model's."""
        single = isinstance(source, (str, os.PathLike)) and not Path(source).is_dir()
        if isinstance(source, np.ndarray):
            if source.ndim == 3:
                single, inputs = True, [source]
            elif source.ndim == 4:
                return self._predict_batch(np.asarray(source, np.float32), conf, iou)
            else:
                raise ValueError(f"an image array must be [H, W, 3] or a batch [B, H, W, 3], got {source.shape}")
        elif isinstance(source, (str, os.PathLike)):
            inputs = self._paths(source)
        elif isinstance(source, Sequence):
            inputs = []
            for s in source:
                inputs.extend(self._paths(s) if isinstance(s, (str, os.PathLike)) else [s])
        else:
            raise TypeError(f"predict() takes a path, an image array or a list of them, got {type(source).__name__}")
        out = self._predict_images(inputs, conf, iou, batch_size)
        return out[0] if single else out

    @staticmethod
    def _paths(source: PathLike) -> list[str]:
        from utod.data.discovery import find_images_in_dir
        from utod.errors import DataError

        p = Path(source)
        if p.is_dir():
            return find_images_in_dir(p)
        if not p.is_file():
            raise DataError(f"{source}: no such image or folder")
        return [str(p)]

    def _make(self, dets, size, src) -> Detections:
        boxes, scores, labels = dets
        names = self.class_names
        ids = np.asarray(labels, np.int64)
        return Detections(np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(scores, np.float32), ids,
                          [names[i] if 0 <= i < len(names) else str(i) for i in ids.tolist()], size, src,
                          _names=names)

    def _predict_batch(self, batch: np.ndarray, conf, iou) -> list[Detections]:
        return [self._make(d, None, None) for d in self.detector.detect(batch, conf, iou)]

    def _predict_images(self, inputs: list[Any], conf, iou, batch_size: int) -> list[Detections]:
        from utod.infer.preprocess import read_image

        out: list[Detections] = []
        for start in range(0, len(inputs), batch_size):
            chunk = inputs[start:start + batch_size]
            images = [read_image(x) if isinstance(x, (str, os.PathLike)) else np.asarray(x) for x in chunk]
            for x in images:
                if x.ndim != 3 or x.shape[2] != 3:
                    raise ValueError(f"an image must be RGB [H, W, 3], got shape {x.shape}")
            batch = self.detector.preprocessor.batch([np.asarray(x, np.uint8) for x in images])
            for x, img, d in zip(chunk, images, self.detector.detect(batch, conf, iou)):
                out.append(self._make(d, img.shape[:2], str(x) if isinstance(x, (str, os.PathLike)) else None))
        return out

    # ------------------------------------------------------------------ evaluate / export
    def evaluate(self, data: PathLike, *, split: str = "all", conf: float = 0.001, iou: float | None = None,
                 pr_conf: float | None = None, batch_size: int = 32, train_split: float | None = None,
                 val_split: float | None = None, seed: int | None = None,
                 log: Callable[[str], None] | None = None) -> dict[str, Any]:
        """COCO mAP on ``data`` (any layout), what ``utod eval`` prints: ``map``, ``map50``,
        per-class AP, precision/recall at ``pr_conf`` (default the model's conf_thresh)."""
        return evaluate(self, data, split=split, conf=conf, iou=iou, pr_conf=pr_conf, batch_size=batch_size,
                        train_split=train_split, val_split=val_split, seed=seed, log=log)

    def export(self, format: str = "onnx", output: PathLike | None = None, **options: Any) -> Path:
        """Export a ``.keras`` model with ``utod export``'s implementation (parity-checked).
        ``options``: ``int8``, ``data`` (calibration / check images), ``post`` (default True),
        ``opset``, ``nchw``, ``batch``, ``conf_thresh``, ``iou_thresh``, ``max_detections``,
        ``simplify``, ``check_images``, ``calib_images``, ``split``, ``skip_check``; for
        quantised / ``format="tflm"`` exports also ``int16``, ``split_outputs``, ``kernels``,
        ``max_arena``, ``arena_margin`` (docs/deploy.md).
        Raises :class:`utod.errors.ConfigError` when the parity check fails."""
        return export(self.path, format=format, output=output, **options)


def load(path: PathLike, *, threads: int | None = None, kernels: str = "auto") -> Model:
    """A :class:`Model` from a ``.keras`` checkpoint or an exported ``.onnx`` / ``.tflite``
    (``kernels``: what runs a .tflite file, utod.infer.tflite_backend: auto | tflm | ref | xnnpack)."""
    from utod.infer.load import load_detector

    return Model(load_detector(path, threads=threads, kernels=kernels))


def evaluate(model: Model | PathLike, data: PathLike, *, split: str = "all", conf: float = 0.001,
             iou: float | None = None, pr_conf: float | None = None, batch_size: int = 32,
             train_split: float | None = None, val_split: float | None = None, seed: int | None = None,
             log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """``utod eval``: the result dict of :func:`utod.evaluation.evaluate_detector` plus the
    model, backend, data, split and decode settings."""
    from utod.cli._common import split_settings
    from utod.evaluation import evaluate_detector, load_eval_items

    m = model if isinstance(model, Model) else load(model)
    det = m.detector
    settings = split_settings(getattr(det, "meta", {}) or {}, train_split, val_split, seed)
    items = load_eval_items(str(data), det.info, split=split, log=log, **settings)
    pr = det.info.conf_thresh if pr_conf is None else pr_conf
    result = evaluate_detector(det, items, conf_thresh=conf, iou_thresh=iou, eval_conf_thresh=pr,
                               batch_size=batch_size)
    result.update(model=str(m.path), backend=det.kind, image_dir=str(data), split=split, decode_conf_thresh=conf,
                  **({} if split == "all" else settings))
    return result


_EXPORT_DEFAULTS: dict[str, Any] = dict(opset=17, nchw=False, post=True, batch=1, conf_thresh=None, iou_thresh=None,
                                        max_detections=None, simplify=False, data=None, check_images=8,
                                        int8=False, calib_images=100, split="val", train_split=None,
                                        val_split=None, seed=None, skip_check=False,
                                        # mcu (docs/deploy.md): quantised / TFLite Micro exports
                                        int16=False, split_outputs=None, kernels="auto", max_arena=None,
                                        arena_margin=0.10)


def export(checkpoint: PathLike, *, format: str = "onnx", output: PathLike | None = None,
           **options: Any) -> Path:
    """``utod export`` from Python; returns the written file, or the bundle folder for
    ``format="tflm"`` (see :meth:`Model.export`)."""
    from utod.cli.export_cmd import DEFAULT_QUANTISED_SPLIT, _export, default_output
    from utod.errors import ConfigError

    unknown = sorted(set(options) - set(_EXPORT_DEFAULTS))
    if unknown:
        raise ConfigError(f"export(): unknown option(s) {', '.join(unknown)} (known: {', '.join(_EXPORT_DEFAULTS)})")
    o = {**_EXPORT_DEFAULTS, **options}
    if format not in ("onnx", "tflite", "tflm"):
        raise ConfigError(f"export(): format must be 'onnx', 'tflite' or 'tflm', got {format!r}")
    if str(checkpoint).lower().endswith(".keras") is False:
        raise ConfigError(f"{checkpoint}: export takes a .keras checkpoint")
    quantised = o["int8"] or o["int16"] or format == "tflm"
    if (o["int8"] or o["int16"]) and format != "tflite":
        raise ConfigError("int8/int16 export needs format='tflite' (or format='tflm')")
    if quantised and not o["data"]:
        from utod.deploy.calibration import run_train_list

        if run_train_list(checkpoint) is None:
            raise ConfigError("int8 export needs data=... (calibration images): the checkpoint has no run folder")
    split_outputs = o["split_outputs"]
    if split_outputs is None:
        split_outputs = DEFAULT_QUANTISED_SPLIT if quantised else False
    quant = "int16" if o["int16"] else ("int8" if quantised else None)
    out = Path(output) if output else default_output(str(checkpoint), format, o["post"], quant == "int8")
    ok = _export(str(checkpoint), format, str(out), o["opset"], o["nchw"], o["post"], split_outputs, o["batch"],
                 o["conf_thresh"], o["iou_thresh"], o["max_detections"], o["simplify"], o["data"], o["check_images"],
                 quant, o["calib_images"], o["split"], o["train_split"], o["val_split"], o["seed"], o["kernels"],
                 o["max_arena"], o["arena_margin"], o["skip_check"])
    if not ok:
        raise ConfigError(f"{out}: the exported model differs from the Keras model (parity check failed)")
    return out
