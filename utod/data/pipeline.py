"""From dataset items to fixed-shape batches: decode-once cache + per-epoch augmentation.

``DetectionData(items, cfg, registry, training=...)`` decodes every image once into the
disk-backed cache (``utod.data.cache``, resized with the ``cfg.resize_mode`` plugin), drops
images OpenCV cannot decode (with a message), and serves epochs:

* ``.dataset(epoch)`` -> ``tf.data.Dataset`` of dicts with static shapes
  (B = batch_size, M = max_boxes, H x W = img_size)::

      image  float32 [B, H, W, C]  RGB in [0, 1] (C = 3), or the resize plugin's input mode
      boxes  float32 [B, M, 4]     normalised (cx, cy, w, h), zero padded
      labels int32   [B, M]        contiguous class 0..C-1 (-1 padding)
      mask   bool    [B, M]        True for real boxes
      index  int32   [B]           index into ``.items`` (-1 for padding entries)

* training: a new order every epoch (``default_rng((seed, epoch))``), augmentation applied
  afresh every epoch (only decoded images are cached, never augmented samples), and
  ``drop_remainder`` semantics: ``steps_per_epoch = n // B`` full batches (a set smaller
  than one batch gives one batch, filled by repeating shuffled images). Each sample's RNG is
  ``default_rng((seed, epoch, position))``, so epoch ``e`` yields the same batches whether
  the run was resumed or not, whatever the thread scheduling.
* evaluation (``training=False``): no augmentation, item order, every image exactly once;
  the last batch is padded (index -1, empty mask) to keep shapes static.

Per sample, after augmentation: boxes are clipped to the image (xyxy) and empty ones dropped,
raw class ids are mapped through ``cfg.class_ids`` (raw ``class_ids[k]`` -> ``k``; boxes of
other classes are dropped, docs/pipeline.md §1.4), then the first ``max_boxes`` are kept. The class
filter runs *before* the cap (the seed capped first, which could drop selected boxes).

Batches are produced a few batches ahead by worker threads (OpenCV releases the GIL) or,
with ``worker_mode="processes"``, by worker processes (:mod:`utod.data.workers`; identical
batches), and fed straight to the train step or through ``tf.data.Dataset.from_generator``
+ ``prefetch``.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from utod.components import Sample
from utod.data.augment import AugmentationError, Augmenter, build_augmenter
from utod.data.boxes_np import clip_and_filter, to_float
from utod.data.cache import ImageCache, default_workers
from utod.data.dataset import DatasetItem
from utod.data.model_input import input_channels, to_model_input
from utod.data.workers import BatchWorkers
from utod.defaults import DEFAULT_RESIZE
from utod.errors import ConfigError, DataError
from utod.registry import PluginError, Registry, get_registry

RESIZE_KIND = "resize"


@dataclass
class PipelineConfig:
    """Settings of the input pipeline.

    img_size: (H, W) network input. class_ids: raw id ``class_ids[k]`` trains as class ``k``
    (None: raw ids pass through). aug_ops: ``load_aug_config`` output (None/[]: no
    augmentation). cache_dir: image cache folder (None: ``$UTOD_CACHE_DIR/images`` or
    ``~/.cache/utod/images``). num_workers: batch workers (None: min(8, CPUs)).
    worker_mode: "threads" (default) or "processes" (see :mod:`utod.data.workers`).
    """

    img_size: tuple[int, int] = (64, 64)
    batch_size: int = 64
    max_boxes: int = 50
    resize_mode: str = DEFAULT_RESIZE
    aug_ops: list[tuple[str, dict]] | None = None
    class_ids: list[int] | None = None
    seed: int = 42
    cache_dir: str | None = None
    num_workers: int | None = None
    worker_mode: str = "threads"


def build_image_cache(paths: Sequence[str], cfg: PipelineConfig, registry: Registry | None = None, *,
                      log: Callable[[str], None] | None = print, resize: Any = None) -> ImageCache:
    """The decode-once cache of ``paths`` exactly as :class:`DetectionData` builds it (same
    key), so building it ahead (e.g. to find undecodable images before the run starts) costs
    no second decode."""
    reg = registry or get_registry()
    try:
        comp = reg.get(RESIZE_KIND, cfg.resize_mode)
        resize = resize if resize is not None else reg.create(RESIZE_KIND, cfg.resize_mode)
    except PluginError as exc:
        raise ConfigError(str(exc)) from exc
    # the provider and version are part of the cache key: another backend's pixels are never reused
    return ImageCache(list(paths), (int(cfg.img_size[0]), int(cfg.img_size[1])), resize,
                      f"{comp.qualified_name}@{comp.version}", cache_dir=cfg.cache_dir,
                      num_workers=cfg.num_workers, log=log)


class SamplePool:
    """Partner source for Mosaic / MixUp / CopyPaste: ``draw(rng)`` returns an un-augmented
    sample (float32 image at the training size, raw labels) chosen uniformly by ``rng``."""

    def __init__(self, data: DetectionData) -> None:
        self._data = data

    def draw(self, rng: np.random.Generator) -> Sample:
        return self._data.raw_sample(int(rng.integers(self._data.num_items)))


class DetectionData:
    """Items + cache + augmentation -> batches. See the module docstring."""

    def __init__(self, items: Sequence[DatasetItem], cfg: PipelineConfig, registry: Registry | None = None, *,
                 training: bool, log: Callable[[str], None] | None = print,
                 augmenter: Augmenter | None = None) -> None:
        if cfg.batch_size < 1 or cfg.max_boxes < 1:
            raise ConfigError(f"batch_size and max_boxes must be >= 1, got {cfg.batch_size} and {cfg.max_boxes}")
        if not items:
            raise DataError(f"the {'training' if training else 'evaluation'} set is empty")
        reg = registry or get_registry()
        self.cfg = cfg
        self.training = training
        self.img_size = (int(cfg.img_size[0]), int(cfg.img_size[1]))
        try:
            resize = reg.create(RESIZE_KIND, cfg.resize_mode)
        except PluginError as exc:
            raise ConfigError(str(exc)) from exc
        self._backend = resize
        self.channels = input_channels(resize)  # model input channels (3 = RGB; camera-native modes differ)
        # the same cache key as build_image_cache (provider and version of the backend included)
        self.cache = build_image_cache([it.image_path for it in items], cfg, reg, log=log, resize=resize)
        rows = np.flatnonzero(self.cache.valid)
        self.items: list[DatasetItem] = [items[i] for i in rows]
        self._rows = rows
        self.dropped: list[str] = list(self.cache.errors)
        if not self.items:
            raise DataError("none of the images could be decoded: " + "; ".join(self.dropped[:3]))
        # ``augmenter``: one already built from cfg.aug_ops (the trainer builds each component once)
        if augmenter is None and training and cfg.aug_ops:
            augmenter = build_augmenter(reg, cfg.aug_ops)
        self.augmenter: Augmenter | None = augmenter if training else None
        self.pool = SamplePool(self)
        self._lut = self._class_lut(cfg.class_ids)
        self.num_workers = cfg.num_workers or default_workers()
        self._images = self.cache.images
        self._workers = BatchWorkers(cfg.worker_mode, self.num_workers, self.make_batch, self.replica_state)

    # ------------------------------------------------------------------ facts
    @property
    def num_items(self) -> int:
        return len(self.items)

    @property
    def steps_per_epoch(self) -> int:
        """Training: ``max(1, n // B)``; evaluation: ``ceil(n / B)``."""
        b = self.cfg.batch_size
        return max(1, self.num_items // b) if self.training else math.ceil(self.num_items / b)

    @staticmethod
    def _class_lut(class_ids: list[int] | None) -> np.ndarray | None:
        if class_ids is None:
            return None
        lut = np.full(max(class_ids) + 1 if class_ids else 1, -1, np.int32)
        for k, raw in enumerate(class_ids):
            lut[raw] = k
        return lut

    # ---------------------------------------------------------------- samples
    def raw_sample(self, i: int) -> Sample:
        """Item ``i`` un-augmented: float32 image [H, W, 3] in [0,1], raw labels."""
        item = self.items[i]
        return Sample(to_float(self._images[self._rows[i]]), item.boxes, item.labels)

    def _finalise(self, sample: Sample) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Clip, class-map, cap and pad one sample -> image, boxes [M,4], labels [M], mask [M]."""
        m = self.cfg.max_boxes
        boxes, labels = clip_and_filter(sample.boxes, sample.labels, 0.0)
        if self._lut is not None:
            ok = (labels >= 0) & (labels < len(self._lut))
            labels = np.where(ok, self._lut[np.clip(labels, 0, len(self._lut) - 1)], -1).astype(np.int32)
            keep = labels >= 0
            boxes, labels = boxes[keep], labels[keep]
        n = min(len(labels), m)
        out_b = np.zeros((m, 4), np.float32)
        out_l = np.full((m,), -1, np.int32)
        out_b[:n], out_l[:n] = boxes[:n], labels[:n]
        mask = np.zeros((m,), bool)
        mask[:n] = True
        image = np.asarray(sample.image, np.float32)
        if image.shape != (*self.img_size, 3):
            raise AugmentationError(f"the augmentation changed the image shape to {image.shape}, "
                                    f"expected {(*self.img_size, 3)}")
        return image, out_b, out_l, mask

    def sample(self, i: int, epoch: int = 0, position: int | None = None) -> Sample:
        """Item ``i`` as the pipeline serves it (augmented when training), before padding."""
        s = self.raw_sample(i)
        if self.augmenter is not None:
            pos = i if position is None else position
            s = self.augmenter(s, np.random.default_rng((self.cfg.seed, epoch, pos)), self.pool)
        return s

    # ---------------------------------------------------------------- batches
    def epoch_order(self, epoch: int) -> np.ndarray:
        """Item indices of the epoch, ``steps_per_epoch * B`` entries (eval: -1 padded)."""
        b, n, steps = self.cfg.batch_size, self.num_items, self.steps_per_epoch
        need = steps * b
        if not self.training:
            return np.concatenate([np.arange(n), np.full(need - n, -1)]).astype(np.int64)
        rng = np.random.default_rng((self.cfg.seed, epoch))
        perms = [rng.permutation(n) for _ in range(math.ceil(need / n))]
        return np.concatenate(perms)[:need].astype(np.int64)

    def make_batch(self, epoch: int, step: int, order: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Batch ``step`` of ``epoch`` as numpy arrays (see the module docstring)."""
        order = self.epoch_order(epoch) if order is None else order
        b, m = self.cfg.batch_size, self.cfg.max_boxes
        h, w = self.img_size
        out = {
            "image": np.zeros((b, h, w, self.channels), np.float32),
            "boxes": np.zeros((b, m, 4), np.float32),
            "labels": np.full((b, m), -1, np.int32),
            "mask": np.zeros((b, m), bool),
            "index": np.full((b,), -1, np.int32),
        }
        for j in range(b):
            pos = step * b + j
            i = int(order[pos])
            if i < 0:
                continue
            try:
                image, boxes, labels, mask = self._finalise(self.sample(i, epoch, pos))
            except AugmentationError as exc:  # name the image (and where it is in the epoch)
                raise AugmentationError(f"{self.items[i].image_path} (epoch {epoch + 1}, batch {step + 1}): "
                                        f"{exc}") from exc
            image = to_model_input(self._backend, image)  # after augmentation, like deployment
            out["image"][j], out["boxes"][j], out["labels"][j], out["mask"][j] = image, boxes, labels, mask
            out["index"][j] = i
        return out

    # ------------------------------------------------------- worker processes
    def replica_state(self) -> dict[str, Any]:
        """What a worker process needs to rebuild this pipeline (picklable; the cache travels
        as its file name, not its pixels)."""
        return {"cfg": self.cfg, "training": self.training, "items": self.items, "rows": self._rows,
                "images_path": str(self.cache.data_path), "cache_shape": tuple(self._images.shape)}

    @classmethod
    def replica(cls, state: dict[str, Any]) -> DetectionData:
        """The pipeline of :meth:`replica_state` in a worker process: the cache memmap opened
        read-only, the augmenter rebuilt from the installed plugins."""
        obj = cls.__new__(cls)
        cfg = state["cfg"]
        obj.cfg, obj.training = cfg, state["training"]
        obj.img_size = (int(cfg.img_size[0]), int(cfg.img_size[1]))
        obj.items, obj._rows = state["items"], state["rows"]
        reg = get_registry()
        obj._backend = reg.create(RESIZE_KIND, cfg.resize_mode)  # its to_input runs after augmentation
        obj.channels = input_channels(obj._backend)
        shape = state["cache_shape"]
        obj._images = (np.memmap(state["images_path"], dtype=np.uint8, mode="r", shape=shape)
                       if shape[0] else np.zeros(shape, np.uint8))
        obj.augmenter = build_augmenter(reg, cfg.aug_ops) if obj.training and cfg.aug_ops else None
        obj.pool = SamplePool(obj)
        obj._lut = cls._class_lut(cfg.class_ids)
        obj.num_workers = 1
        obj._workers = None
        return obj

    def numpy_batches(self, epoch: int, start_step: int = 0) -> Iterator[dict[str, np.ndarray]]:
        """Batches ``start_step..`` of ``epoch`` in order, built ahead by the thread pool (a
        resumed run starts mid-epoch without building the batches it already trained on)."""
        order = self.epoch_order(epoch)
        ahead: deque[Any] = deque()
        lookahead = 2 * self.num_workers
        try:
            for step in range(start_step, self.steps_per_epoch):
                ahead.append(self._workers.submit(epoch, step, order))
                if len(ahead) >= lookahead:
                    yield self._workers.result(ahead.popleft())
            while ahead:
                yield self._workers.result(ahead.popleft())
        finally:  # an abandoned epoch (stop, error) does not leave batches being built
            for fut in ahead:
                fut.cancel()

    def output_signature(self) -> dict[str, Any]:
        from utod._keras import tf

        b, m = self.cfg.batch_size, self.cfg.max_boxes
        h, w = self.img_size
        return {
            "image": tf.TensorSpec((b, h, w, self.channels), tf.float32),
            "boxes": tf.TensorSpec((b, m, 4), tf.float32),
            "labels": tf.TensorSpec((b, m), tf.int32),
            "mask": tf.TensorSpec((b, m), tf.bool),
            "index": tf.TensorSpec((b,), tf.int32),
        }

    def dataset(self, epoch: int = 0, start_step: int = 0):
        """``tf.data.Dataset`` over one epoch from batch ``start_step`` (static shapes, prefetched)."""
        from utod._keras import tf

        ds = tf.data.Dataset.from_generator(lambda: self.numpy_batches(epoch, start_step),
                                            output_signature=self.output_signature())
        ds = ds.apply(tf.data.experimental.assert_cardinality(max(0, self.steps_per_epoch - start_step)))
        return ds.prefetch(2)

    def close(self) -> None:
        workers = getattr(self, "_workers", None)
        if workers is not None:
            workers.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass
