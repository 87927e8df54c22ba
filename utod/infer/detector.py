"""The backend-independent :class:`Detector` API: preprocessed NHWC float32 images in,
per-image detections out. Backends (Keras, ONNX Runtime, TFLite) implement ``forward``."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence

import numpy as np

from utod.errors import ConfigError
from utod.infer.decode import ImageDetections, decode_raw, split_detections
from utod.infer.modelinfo import ModelInfo
from utod.infer.preprocess import Preprocessor

BATCHLESS_OUTPUTS = ("anchors", "wh_scale")  # outputs without a batch axis


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
                warn_once(self, f"warning: {self.path} has post-processing built in ({self.info.baked_in()}); "
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


def warn_once(obj: object, msg: str) -> None:
    """Print ``msg`` to stderr the first time it is said about ``obj``."""
    key = (id(obj), msg)
    if key not in _WARNED:
        _WARNED.add(key)
        print(msg, file=sys.stderr)


def run_batched(run: Callable[[np.ndarray], list[np.ndarray]], x: np.ndarray, static_batch: int | None,
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
        parts.append([o[: static_batch - pad] if name not in BATCHLESS_OUTPUTS else o
                      for name, o in zip(names, outs)])
    result = {}
    for k, name in enumerate(names):
        result[name] = parts[0][k] if name in BATCHLESS_OUTPUTS else np.concatenate([p[k] for p in parts])
    return result
