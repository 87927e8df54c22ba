"""One writer per run folder: ``<run>/.utod.lock``.

The lock file holds JSON ``{"pid", "host", "started", "command"}`` of its holder. It is
created atomically with its content (written to a temporary file, then ``os.link``-ed to
the lock name, which fails if the lock exists), so nobody ever reads a half-written lock.
A second ``utod train`` into the same folder is refused with the holder's pid, host and
start time. A lock whose holder is gone (same host, pid not alive) is stale: it is taken
over, with a message. A lock from another host cannot be checked and is always respected
(delete the file by hand once you are sure that run has ended).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

from utod.atomic import _pid_alive, ensure_dir, storage_error, temp_path_for
from utod.errors import RunLockedError

LOCK_NAME = ".utod.lock"


def _read(lock: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(lock.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _describe(info: dict[str, Any]) -> str:
    started = info.get("started")
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)) if isinstance(started, (int, float)) else "?"
    return f"pid {info.get('pid', '?')} on {info.get('host', '?')}, started {when}"


def _is_stale(info: dict[str, Any]) -> bool:
    pid = info.get("pid")
    if info.get("host") != socket.gethostname() or not isinstance(pid, int):
        return False
    return not _pid_alive(pid)


def _create_exclusive(tmp: Path, lock: Path, info: dict[str, Any]) -> None:
    """Create ``lock`` with ``tmp``'s content, failing with FileExistsError if it exists."""
    try:
        os.link(tmp, lock)
        return
    except FileExistsError:
        raise
    except OSError:  # no hard links on this file system: exclusive create, then write
        pass
    fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(json.dumps(info))


class RunLock:
    """``with RunLock(run_dir):`` holds the run folder for this process."""

    def __init__(self, run_dir: str | os.PathLike, log=print):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_NAME
        self.log = log
        self.held = False

    def acquire(self) -> RunLock:
        ensure_dir(self.run_dir)
        info = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time(),
                "command": " ".join(sys.argv[:1] + sys.argv[1:])[:500]}
        tmp = temp_path_for(self.path)
        try:
            tmp.write_text(json.dumps(info), encoding="utf-8")
        except OSError as exc:
            raise storage_error(exc, self.path, "create the run lock") from None
        try:
            for _ in range(5):
                try:
                    _create_exclusive(tmp, self.path, info)
                    self.held = True
                    return self
                except FileExistsError:
                    pass
                except OSError as exc:
                    raise storage_error(exc, self.path, "create the run lock") from None
                holder = _read(self.path)
                if holder is None:  # released meanwhile: try again
                    continue
                if holder.get("pid") == os.getpid() and holder.get("host") == socket.gethostname():
                    raise RunLockedError(f"run folder {self.run_dir} is already in use by this process")
                if not _is_stale(holder):
                    raise RunLockedError(
                        f"run folder {self.run_dir} is in use by another utod train ({_describe(holder)}; lock "
                        f"{self.path}). Wait for it to end, or use another --exp-name / --ckpt-out."
                    )
                self.log(f"Taking over the stale lock of {self.run_dir} ({_describe(holder)}, no longer running).")
                # rename first: of two processes taking over at once only one wins the rename,
                # and one that finds a live holder's lock under the grave name puts it back
                grave = temp_path_for(self.path)
                try:
                    os.rename(self.path, grave)
                except FileNotFoundError:
                    continue
                if _read(grave) != holder:
                    with contextlib.suppress(OSError):
                        os.link(grave, self.path)
                with contextlib.suppress(OSError):
                    os.unlink(grave)
            raise RunLockedError(f"run folder {self.run_dir}: could not take the lock {self.path}")
        finally:
            with contextlib.suppress(OSError):
                tmp.unlink()

    def release(self) -> None:
        if not self.held:
            return
        holder = _read(self.path)
        if holder and holder.get("pid") == os.getpid():
            with contextlib.suppress(OSError):
                self.path.unlink()
        self.held = False

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
