"""Atomic file writes: every file utod writes (run folder, caches, exports) goes through here.

A write goes to a hidden temporary file in the destination's own folder
(``.<name>.<pid>.<random>.utod-tmp``), is flushed and ``fsync``-ed, then renamed over the
destination with ``os.replace`` (atomic on POSIX and Windows within one file system) and the
folder is synced. A reader therefore sees the old file or the new one, never a torn mix,
even if the process is killed or the machine loses power mid-write. A failed write removes
its temporary file and raises :class:`~utod.errors.StorageError` with one line naming the
path and the reason (disk full, read-only file system, permission denied).

Temporary files of killed processes are recognised by the pid in their name and removed
by :func:`clean_stale_temps`.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from utod.errors import StorageError
from utod.faults import fault_point

TEMP_SUFFIX = ".utod-tmp"
_TEMP_RE = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.[0-9a-f]+" + re.escape(TEMP_SUFFIX) + r"(\.[^.]*)?$")


def temp_path_for(path: Path) -> Path:
    """A fresh hidden temporary name beside ``path`` (same folder, so the rename is atomic):
    ``.<stem>.<pid>.<random>.utod-tmp<suffix>``; the suffix is kept last because some writers
    (OpenCV, matplotlib) choose the format by the extension."""
    return path.with_name(f".{path.stem}.{os.getpid()}.{secrets.token_hex(4)}{TEMP_SUFFIX}{path.suffix}")


def describe_os_error(exc: OSError) -> str:
    """A short reason for a failed write, in words a user can act on."""
    code = getattr(exc, "errno", None)
    if code in (errno.ENOSPC, getattr(errno, "EDQUOT", -1)):
        return "no space left on the device (free some space or choose another folder)"
    if code == errno.EROFS:
        return "the file system is read-only"
    if code in (errno.EACCES, errno.EPERM):
        return "permission denied"
    if code == errno.ENOENT:
        return "the folder does not exist"
    return exc.strerror or str(exc)


def storage_error(exc: OSError, path: str | os.PathLike, action: str = "write") -> StorageError:
    return StorageError(f"cannot {action} {path}: {describe_os_error(exc)}")


def ensure_dir(folder: str | os.PathLike) -> Path:
    """Create ``folder`` (and parents) or raise a one-line StorageError naming it."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise StorageError(f"cannot create folder {folder}: a file of that name exists") from None
    except OSError as exc:
        raise storage_error(exc, folder, "create folder") from None
    return folder


def check_writable_dir(folder: str | os.PathLike) -> Path:
    """Fail early, before any expensive work, when files cannot be created in ``folder``
    (it is created if missing)."""
    folder = ensure_dir(folder)
    probe = temp_path_for(folder / "write-check")
    try:
        fd = os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        os.close(fd)
    except OSError as exc:
        raise storage_error(exc, folder, "write into") from None
    finally:
        with contextlib.suppress(OSError):
            probe.unlink()
    return folder


def check_free_space(folder: str | os.PathLike, need_bytes: int, what: str) -> None:
    """Raise StorageError when ``folder``'s file system has less than ``need_bytes`` free
    (plus 1% slack), before a large file is written (a memory-mapped file on a full disk
    would crash the process with SIGBUS instead of raising)."""
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return
    need = int(need_bytes * 1.01) + (1 << 20)
    if free < need:
        raise StorageError(
            f"cannot write {what} in {folder}: needs {need / 2**20:.1f} MiB, only {free / 2**20:.1f} MiB free "
            f"(free some space or choose another folder)"
        )


def _fsync_path(path: Path, directory: bool = False) -> None:
    flags = os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if directory else 0)
    try:
        fd = os.open(path, flags)
    except OSError:
        if directory:  # some platforms/file systems cannot open folders: nothing to sync
            return
        raise
    try:
        os.fsync(fd)
    except OSError:
        if not directory:
            raise
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path; whatever the block writes there replaces ``path`` atomically
    when the block ends without error. On error the temporary file is removed and ``path``
    is untouched; an ``OSError`` becomes a StorageError naming ``path``."""
    path = Path(path)
    ensure_dir(path.parent)
    tmp = temp_path_for(path)
    try:
        yield tmp
        _fsync_path(tmp)
        fault_point(f"write.temp/{path.name}")
        os.replace(tmp, path)
        _fsync_path(path.parent, directory=True)
        fault_point(f"write.replaced/{path.name}")
    except OSError as exc:
        raise storage_error(exc, path) from None
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", **kwargs: Any) -> Iterator[IO[Any]]:
    """``open()`` for writing (``"w"``/``"wb"``) whose result appears at ``path`` atomically."""
    if mode not in ("w", "wb", "wt", "x", "xb"):
        raise ValueError(f"atomic_open writes whole files; mode {mode!r} is not supported")
    if "b" not in mode:
        kwargs.setdefault("encoding", "utf-8")
    with atomic_path(path) as tmp, open(tmp, mode.replace("x", "w"), **kwargs) as fh:
        yield fh
        fh.flush()


def write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> Path:
    with atomic_open(path, "w", encoding=encoding, newline="") as fh:
        fh.write(text)
    return Path(path)


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    with atomic_open(path, "wb") as fh:
        fh.write(data)
    return Path(path)


def write_json(path: str | os.PathLike, data: Any, indent: int | None = 2) -> Path:
    """JSON with NaN/Inf refused (``allow_nan=False``): a non-finite value is a bug upstream."""
    return write_text(path, json.dumps(data, indent=indent, default=str, allow_nan=False) + "\n")


def copy_file(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """Copy ``src`` to ``dst`` atomically (e.g. publishing ``best.keras``)."""
    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)
    return Path(dst)


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    except OSError:
        return True
    return True


def clean_stale_temps(folder: str | os.PathLike, log=None) -> int:
    """Remove temporary files left in ``folder`` by killed writers (their pid is not alive).
    Returns the number of bytes freed."""
    folder = Path(folder)
    freed = 0
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return 0
    for entry in entries:
        m = _TEMP_RE.match(entry.name)
        if not m or _pid_alive(int(m.group("pid"))):
            continue
        try:
            size = entry.stat().st_size
            os.unlink(entry.path)
        except OSError:
            continue
        freed += size
        if log is not None:
            log(f"removed {entry.path} ({size / 2**20:.1f} MiB), left by an interrupted write")
    return freed
