"""One writer per run folder: ``<run>/.utod.lock``.

The lock file holds JSON ``{"pid", "host", "started", "command"}`` of its holder. It is
created atomically with its content (written to a temporary file, then ``os.link``-ed to
the lock name, which fails if the lock exists), so nobody ever reads a half-written lock.
A second ``utod train`` into the same folder is refused with the holder's pid, host and
start time. A lock whose holder is gone (same host, pid not alive) is stale: it is taken
over, with a message. A lock from another host cannot be checked and is always respected
(delete the file by hand once you are sure that run has ended).

Process ids are reused: after a reboot, or in a container restarted after ``kill -9`` (the
same hostname, and often the same small pid, even this process's own), the lock's pid can
name a live process that is not its writer. Where ``/proc`` tells, the lock therefore also
records ``"process"``: the boot id and the holder's start time in clock ticks since boot. A
live pid whose identity differs from the recorded one is a different process, so the lock is
stale.
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


def process_identity(pid: int) -> str | None:
    """``"<boot id>:<start time in clock ticks since boot>"`` of a live ``pid`` where
    ``/proc`` tells (Linux), else None (no such process, or no ``/proc``)."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text(encoding="ascii").strip()
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
        # field 22 (starttime) counts from the end of "(comm)", which may itself hold spaces
        start = stat[stat.rindex(")") + 2:].split()[19]
    except (OSError, ValueError, IndexError):
        return None
    return f"{boot}:{start}"


def _is_writer(info: dict[str, Any], pid: int) -> bool:
    """Whether the live process ``pid`` wrote the lock: its recorded identity matches (a lock
    without one, or a system without ``/proc``, cannot tell otherwise: assumed)."""
    recorded = info.get("process")
    return not isinstance(recorded, str) or process_identity(pid) in (recorded, None)


def _is_this_process(info: dict[str, Any]) -> bool:
    return (info.get("pid") == os.getpid() and info.get("host") == socket.gethostname()
            and _is_writer(info, os.getpid()))


def _is_stale(info: dict[str, Any]) -> bool:
    """Same host, and its writer is gone: the pid is not alive, or now names another process."""
    pid = info.get("pid")
    if info.get("host") != socket.gethostname() or not isinstance(pid, int):
        return False
    return not _pid_alive(pid) or not _is_writer(info, pid)


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
                "process": process_identity(os.getpid()),
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
                if _is_this_process(holder):
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
        if holder and _is_this_process(holder):
            with contextlib.suppress(OSError):
                self.path.unlink()
        self.held = False

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
