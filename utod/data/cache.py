"""Decode-once image cache: every image decoded a single time, resized to the training size
with the selected backend, and stored as uint8 in a disk-backed ``numpy.memmap``.

Layout in the cache folder (default ``$UTOD_CACHE_DIR/images`` or ``~/.cache/utod/images``):
``<key>.u8`` holds the raw array ``[N, H, W, 3]`` uint8 RGB and ``<key>.json`` the shape and
which images failed to decode. ``key`` is a SHA-1 of the cache format version, the backend
name, ``(H, W)`` and every image's absolute path, mtime (ns) and byte size, so any change to
the files or settings builds a new cache. Both files are written under temporary names and
renamed into place (the ``.json`` last, it marks a complete cache), so an interrupted build
is never reused and concurrent builders do not corrupt each other. Memory stays bounded:
the array lives on disk and pages in on demand.

Only decoded, resized images are cached — never augmented samples.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from utod.data.images import read_image_rgb

CACHE_FORMAT_VERSION = 1
ResizeFn = Callable[[np.ndarray, tuple[int, int]], np.ndarray]


def cache_root() -> Path:
    """``$UTOD_CACHE_DIR`` or ``~/.cache/utod``."""
    env = os.environ.get("UTOD_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "utod"


def cache_key(paths: Sequence[str], size: tuple[int, int], backend: str) -> str:
    h = hashlib.sha1()
    h.update(json.dumps([CACHE_FORMAT_VERSION, backend, list(size)]).encode())
    for p in paths:
        ap = os.path.abspath(p)
        try:
            st = os.stat(ap)
            stamp = f"{st.st_mtime_ns}:{st.st_size}"
        except OSError:
            stamp = "missing"
        h.update(f"\n{ap}\t{stamp}".encode())
    return h.hexdigest()


def default_workers() -> int:
    return max(1, min(8, os.cpu_count() or 1))


class ImageCache:
    """uint8 images ``[N, H, W, 3]`` RGB at the training size, read-only memmap.

    ``valid[i]`` is False when image ``i`` could not be decoded; ``errors`` holds one
    ``path:1: problem — action`` message per such image.
    """

    def __init__(self, paths: Sequence[str], size: tuple[int, int], resize: ResizeFn, backend: str,
                 cache_dir: str | os.PathLike | None = None, num_workers: int | None = None,
                 log: Callable[[str], None] | None = print) -> None:
        self.paths = list(paths)
        self.size = (int(size[0]), int(size[1]))
        self.backend = backend
        self.dir = Path(cache_dir) if cache_dir else cache_root() / "images"
        self.key = cache_key(self.paths, self.size, backend)
        self.data_path = self.dir / f"{self.key}.u8"
        self.meta_path = self.dir / f"{self.key}.json"
        self.built_now = False
        if not self._load_meta():
            self._build(resize, num_workers or default_workers(), log)
            self.built_now = True
        if log is not None:
            for m in self.errors:
                log(m)
        h, w = self.size
        n = len(self.paths)
        self.images: np.ndarray = (np.memmap(self.data_path, dtype=np.uint8, mode="r", shape=(n, h, w, 3))
                                   if n else np.zeros((0, h, w, 3), np.uint8))

    def _load_meta(self) -> bool:
        try:
            meta = json.loads(self.meta_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return False
        n, (h, w) = len(self.paths), self.size
        if meta.get("shape") != [n, h, w, 3] or not self.data_path.is_file():
            return False
        if self.data_path.stat().st_size != n * h * w * 3:
            return False
        bad = {int(k): v for k, v in meta.get("errors", {}).items()}
        self.valid = np.ones(n, bool)
        self.valid[list(bad)] = False
        self.errors = [bad[i] for i in sorted(bad)]
        return True

    def _build(self, resize: ResizeFn, workers: int, log: Callable[[str], None] | None) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        n, (h, w) = len(self.paths), self.size
        tmp = self.dir / f".{self.key}.u8.{os.getpid()}.tmp"
        bad: dict[int, str] = {}
        if n:
            try:
                mm = np.memmap(tmp, dtype=np.uint8, mode="w+", shape=(n, h, w, 3))

                def work(start: int) -> None:
                    for i in range(start, min(start + 64, n)):
                        img = read_image_rgb(self.paths[i])
                        if img is None:
                            bad[i] = f"{self.paths[i]}:1: cannot decode image — image skipped"
                            mm[i] = 0
                            continue
                        out = resize(img, (h, w))
                        if out.shape != (h, w, 3) or out.dtype != np.uint8:
                            raise RuntimeError(f"resize backend '{self.backend}' returned {out.dtype} {out.shape}, "
                                               f"expected uint8 {(h, w, 3)}")
                        mm[i] = out

                with ThreadPoolExecutor(max_workers=workers) as ex:
                    list(ex.map(work, range(0, n, 64)))
                mm.flush()
                del mm
                os.replace(tmp, self.data_path)
            finally:  # an error or Ctrl-C must not leave a half-written (possibly huge) file
                tmp.unlink(missing_ok=True)
        else:
            self.data_path.touch()
        meta = {"version": CACHE_FORMAT_VERSION, "backend": self.backend, "shape": [n, h, w, 3],
                "errors": {str(i): m for i, m in sorted(bad.items())}}
        tmp_meta = self.dir / f".{self.key}.json.{os.getpid()}.tmp"
        tmp_meta.write_text(json.dumps(meta), encoding="utf-8")
        os.replace(tmp_meta, self.meta_path)
        self.valid = np.ones(n, bool)
        self.valid[list(bad)] = False
        self.errors = [bad[i] for i in sorted(bad)]
