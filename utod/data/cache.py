"""Decode-once image cache: every image decoded a single time, resized to the training size
with the selected backend, and stored as uint8 in a disk-backed ``numpy.memmap``.

Layout in the cache folder (default ``$UTOD_CACHE_DIR/images`` or ``~/.cache/utod/images``):
``<key>.u8`` holds the raw array ``[N, H, W, 3]`` uint8 RGB and ``<key>.json`` the shape and
which images failed to decode. ``key`` is a SHA-1 of the cache format version, the backend
name, ``(H, W)`` and every image's absolute path, mtime (ns) and byte size, so any change to
the files or settings builds a new cache. Both files are written under temporary names and
renamed into place (``utod.atomic``; the ``.json`` last, it marks a complete cache), so an
interrupted build is never reused and concurrent builders do not corrupt each other. Memory
stays bounded: the array lives on disk and pages in on demand.

Disk space: the data file's blocks are reserved up front (``posix_fallocate``) after a
free-space check, so a full disk is a one-line :class:`~utod.errors.StorageError` naming the
folder, never a SIGBUS from writing into a memory map without backing blocks. Temporary
files of a killed build (their writer's pid is gone) are removed at the next build.

Only decoded, resized images are cached — never augmented samples.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from utod.atomic import (
    atomic_path,
    check_free_space,
    clean_stale_temps,
    ensure_dir,
    storage_error,
    write_json,
)
from utod.data.images import read_image_rgb
from utod.faults import fault_point

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
        ensure_dir(self.dir)
        clean_stale_temps(self.dir, log=log)
        n, (h, w) = len(self.paths), self.size
        bad: dict[int, str] = {}
        nbytes = n * h * w * 3
        if n:
            check_free_space(self.dir, nbytes, f"the image cache ({n} images at {h}x{w})")
        with atomic_path(self.data_path) as tmp:
            _reserve(tmp, nbytes)
            if n:
                mm = np.memmap(tmp, dtype=np.uint8, mode="r+", shape=(n, h, w, 3))
                half = (n // 128) * 64  # the chunk start at which half the images are written

                def work(start: int) -> None:
                    if start == half:
                        fault_point("cache.partial")
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
            fault_point("cache.built")
        meta = {"version": CACHE_FORMAT_VERSION, "backend": self.backend, "shape": [n, h, w, 3],
                "errors": {str(i): m for i, m in sorted(bad.items())}}
        write_json(self.meta_path, meta, indent=None)
        self.valid = np.ones(n, bool)
        self.valid[list(bad)] = False
        self.errors = [bad[i] for i in sorted(bad)]


def _reserve(path: Path, nbytes: int) -> None:
    """Create ``path`` with ``nbytes`` of allocated (not sparse) blocks: ENOSPC shows up here,
    as an OSError, instead of as SIGBUS when the memory map is written."""
    fd = os.open(path, os.O_CREAT | os.O_RDWR | os.O_TRUNC, 0o644)
    try:
        if nbytes:
            try:
                os.posix_fallocate(fd, 0, nbytes)
            except AttributeError:  # no posix_fallocate (macOS, Windows): write the zeros
                _write_zeros(fd, nbytes)
            except OSError as exc:
                if exc.errno in (errno.EINVAL, errno.EOPNOTSUPP, getattr(errno, "ENOTSUP", -1)):
                    _write_zeros(fd, nbytes)  # the file system cannot reserve blocks
                else:
                    raise
    except OSError as exc:
        os.close(fd)
        fd = -1
        raise storage_error(exc, path.parent, "write the image cache in") from None
    finally:
        if fd >= 0:
            os.close(fd)


def _write_zeros(fd: int, nbytes: int) -> None:
    block = bytes(1 << 20)
    left = nbytes
    while left > 0:
        left -= os.write(fd, block[:min(left, len(block))])
