"""Images in, model input out — the same preprocessing as training, for every backend:
decode with OpenCV -> uint8 RGB -> the model's resize backend plugin to (H, W) (stretch, no
letterbox) -> float32 / 255, NHWC -> the plugin's input conversion (Y, YUV422, ...; identity for RGB)."""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from utod.data.boxes_np import to_float
from utod.data.model_input import input_channels, to_model_input
from utod.errors import DataError


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
    """uint8 RGB [h, w, 3] -> float32 [H, W, C] in [0, 1] with the model's resize backend and its
    input conversion (C = 3 for RGB)."""

    def __init__(self, img_size: tuple[int, int], resize_mode: str, registry: Any = None) -> None:
        if registry is None:
            from utod.registry import get_registry

            registry = get_registry()
        self.img_size = (int(img_size[0]), int(img_size[1]))
        self.resize_mode = resize_mode
        self._resize: Callable[[np.ndarray, tuple[int, int]], np.ndarray] = registry.create("resize", resize_mode)
        self.channels = input_channels(self._resize)

    def __call__(self, image_rgb: np.ndarray) -> np.ndarray:
        img = np.asarray(image_rgb)
        if img.dtype != np.uint8:
            raise ValueError(f"expected a uint8 RGB image, got {img.dtype}")
        if img.shape[:2] != self.img_size:
            img = self._resize(img, self.img_size)
        return to_model_input(self._resize, to_float(img))  # the same conversion as training, bit for bit

    def batch(self, images: Iterable[np.ndarray]) -> np.ndarray:
        """List of uint8 RGB images -> float32 [B, H, W, C]."""
        arrs = [self(im) for im in images]
        h, w = self.img_size
        return np.stack(arrs) if arrs else np.zeros((0, h, w, self.channels), np.float32)

    def load(self, paths: Sequence[str | os.PathLike]) -> np.ndarray:
        return self.batch(read_image(p) for p in paths)


@dataclass
class LoadedBatch:
    """One batch of image files: the ones that decoded (``paths``, ``images`` float32
    [k, H, W, C] model input, and the uint8 RGB ``originals`` at their own size when asked for) and the
    ones that did not (``failed``: path and the ``DataError`` naming it)."""

    paths: list[str]
    images: np.ndarray
    originals: list[np.ndarray]
    failed: list[tuple[str, DataError]]

    def raise_failed(self) -> None:
        if self.failed:
            raise self.failed[0][1]


class ImageLoader:
    """Reads and preprocesses image files on worker threads (OpenCV decodes and resizes
    without the GIL), up to two batches ahead of the consumer, in the order given.

    ``workers``: threads (default: the pipeline's, min(8, CPUs)); ``keep_originals``: also
    return the decoded uint8 images (``utod predict`` draws on them).
    """

    def __init__(self, preprocessor: Preprocessor, batch_size: int, workers: int | None = None, *,
                 keep_originals: bool = False) -> None:
        from utod.data.cache import default_workers

        self.preprocessor = preprocessor
        self.batch_size = max(1, int(batch_size))
        self.workers = max(1, int(workers or default_workers()))
        self.keep_originals = keep_originals

    def _load(self, path: str) -> tuple[np.ndarray | None, np.ndarray | None, DataError | None]:
        try:
            original = read_image(path)
        except DataError as exc:
            return None, None, exc
        return self.preprocessor(original), (original if self.keep_originals else None), None

    def batches(self, paths: Sequence[str | os.PathLike]) -> Iterator[LoadedBatch]:
        paths = [str(p) for p in paths]
        chunks = [paths[s:s + self.batch_size] for s in range(0, len(paths), self.batch_size)]
        if not chunks:
            return
        h, w = self.preprocessor.img_size
        c = self.preprocessor.channels
        with ThreadPoolExecutor(self.workers, thread_name_prefix="utod-load") as pool:
            ahead: deque[tuple[list[str], list[Future]]] = deque()
            try:
                for chunk in chunks:
                    ahead.append((chunk, [pool.submit(self._load, p) for p in chunk]))
                    if len(ahead) > 2:  # two batches stay queued while the consumer works
                        yield self._collect(*ahead.popleft(), (h, w, c))
                while ahead:
                    yield self._collect(*ahead.popleft(), (h, w, c))
            finally:  # an abandoned iteration does not leave files being read
                for _, futs in ahead:
                    for f in futs:
                        f.cancel()

    def _collect(self, chunk: list[str], futures: list[Future], shape: tuple[int, int, int]) -> LoadedBatch:
        ok, images, originals, failed = [], [], [], []
        for path, fut in zip(chunk, futures):
            image, original, err = fut.result()
            if err is not None:
                failed.append((path, err))
                continue
            ok.append(path)
            images.append(image)
            if original is not None:
                originals.append(original)
        arr = np.stack(images) if images else np.zeros((0, *shape), np.float32)
        return LoadedBatch(ok, arr, originals, failed)
