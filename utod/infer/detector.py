"""The backend-independent :class:`Detector` API: preprocessed NHWC float32 images in,
per-image detections out. Backends (Keras, ONNX Runtime, TFLite) implement ``forward``."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from utod.errors import ConfigError
from utod.infer.decode import ImageDetections, RawDecoder, pad_batch, split_detections
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
        self._decoder: RawDecoder | None = None
        self.last_run: RunTiming | None = None

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
        if "raw" not in out and self.info.raw_groups and all(g in out for g in self.info.raw_groups):
            from utod.deploy.groups import merge_groups  # raw head exported as one tensor per group

            return merge_groups(out, self.info.num_anchors, self.info.has_quality, self.info.head_classes,
                                nchw=self.info.input_layout == "nchw")
        if "raw" not in out:
            raise ConfigError(f"{self.path}: this model outputs final detections, not the raw map")
        raw = out["raw"]
        return np.transpose(raw, (0, 2, 3, 1)) if self.info.input_layout == "nchw" else raw

    # ------------------------------------------------------------------ detection
    batch_size = 32
    """Images per forward pass in :meth:`detect` (compiled paths pad to it: fixed shapes)."""

    def thresholds(self, conf_thresh: float | None, iou_thresh: float | None) -> tuple[float, float]:
        """The decode thresholds to use (default: the model's); warns once when a file with
        post-processing inside is asked for settings it cannot apply."""
        conf = self.info.conf_thresh if conf_thresh is None else float(conf_thresh)
        iou = self.info.nms_iou if iou_thresh is None else float(iou_thresh)
        if self.info.has_postprocess and (conf < self.info.conf_thresh - 1e-9 or abs(iou - self.info.nms_iou) > 1e-9):
            warn_once(self, f"warning: {self.path} has post-processing built in ({self.info.baked_in()}); "
                            "a lower conf threshold or another NMS IoU cannot be applied to it")
        return conf, iou

    def detect(self, images: np.ndarray, conf_thresh: float | None = None,
               iou_thresh: float | None = None) -> list[ImageDetections]:
        """images float32 [N, H, W, 3] NHWC in [0, 1] -> N per-image detections, run in
        chunks of at most :attr:`batch_size`."""
        conf, iou = self.thresholds(conf_thresh, iou_thresh)
        images = np.asarray(images, np.float32)
        out: list[ImageDetections] = []
        step = max(1, int(self.batch_size))
        for start in range(0, images.shape[0], step):
            dets, num = self.detect_batch(images[start:start + step], conf, iou)
            out.extend(split_detections(dets, num, conf))
        return out

    def detect_batch(self, images: np.ndarray, conf: float, iou: float) -> tuple[np.ndarray, np.ndarray]:
        """images [k, H, W, 3] (k <= batch_size) -> (detections [k, K, 6], num_valid [k])."""
        if self.info.has_postprocess:
            out = self.forward(images)
            _refuse_nonfinite(self.path, out["detections"])
            return out["detections"], out.get("num_detections")
        raw = self.raw(images)
        _refuse_nonfinite(self.path, raw)  # NaN/Inf outputs decode to arbitrary boxes: never scored
        k = raw.shape[0]
        dets, num = self.decoder(pad_batch(raw, self.padded_size(k)), conf, iou)
        return dets[:k], num[:k]

    def batching(self) -> str:
        """How batches run, for reports (e.g. "batch 32, compiled")."""
        static = getattr(self, "static_batch", None)
        if static is not None and static != self.batch_size:
            return f"file batch {static}, images in chunks of {self.batch_size}"
        return f"batch {self.batch_size}"

    def padded_size(self, k: int) -> int:
        """The fixed batch a chunk of ``k`` images is padded to: 1 for single images (video,
        camera), else :attr:`batch_size` — at most two compiled shapes."""
        return 1 if k == 1 else max(k, int(self.batch_size))

    @property
    def decoder(self) -> RawDecoder:
        if self._decoder is None:
            self._decoder = RawDecoder(self.info)
        return self._decoder

    def detect_files(self, paths: Sequence[str], conf_thresh: float | None = None,
                     iou_thresh: float | None = None, batch_size: int | None = None,
                     workers: int | None = None) -> list[ImageDetections]:
        """Detections of image files, read and preprocessed by worker threads while the
        previous batch runs. An unreadable image raises ``DataError`` naming it. Timing of
        the run goes to :attr:`last_run`."""
        from utod.infer.preprocess import ImageLoader

        if batch_size:
            self.batch_size = int(batch_size)
        out: list[ImageDetections] = []
        t0 = time.perf_counter()
        first = 0.0
        for batch in ImageLoader(self.preprocessor, self.batch_size, workers).batches(paths):
            batch.raise_failed()
            out.extend(self.detect(batch.images, conf_thresh, iou_thresh))
            if not first:
                first = time.perf_counter() - t0
        self.last_run = RunTiming(len(out), time.perf_counter() - t0, first, min(len(out), self.batch_size))
        return out


@dataclass
class RunTiming:
    """Wall time of one :meth:`Detector.detect_files` run: ``images`` in ``seconds``, of which
    ``first_batch_seconds`` for the first ``first_batch_images`` (it includes compiling)."""

    images: int
    seconds: float
    first_batch_seconds: float
    first_batch_images: int

    @property
    def images_per_s(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else 0.0

    @property
    def steady_images_per_s(self) -> float | None:
        """Images per second after the first batch (None when there was only one batch)."""
        rest = self.seconds - self.first_batch_seconds
        n = self.images - self.first_batch_images
        return n / rest if n > 0 and rest > 0 else None

    def summary(self) -> str:
        text = f"{self.images} images in {self.seconds:.2f}s: {self.images_per_s:.1f} img/s"
        steady = self.steady_images_per_s
        if steady is not None:
            text += f" ({steady:.1f} img/s after the first batch, which took {self.first_batch_seconds:.2f}s)"
        return text


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


def _refuse_nonfinite(path: object, outputs: object) -> None:
    """NonFiniteError when the model's outputs hold NaN/Inf (float outputs only)."""
    arr = np.asarray(outputs)
    if np.issubdtype(arr.dtype, np.floating) and not np.isfinite(arr).all():
        from utod.errors import NonFiniteError

        raise NonFiniteError(f"{path}: the model's outputs are non-finite (NaN/Inf) on these images, so no "
                             "detections or scores are reported; re-export from a checkpoint with finite weights")
