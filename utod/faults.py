"""Test-only fault injection: kill the process at a named point.

``UTOD_FAULT=PATTERN[:N]`` (several separated by commas) makes the N-th (default 1st) call of
:func:`fault_point` whose name matches the shell-style ``PATTERN`` kill this process with
SIGKILL, as a power cut or ``kill -9`` would: no ``finally`` blocks, no flushing. Tests use
it to show that a run killed at any write resumes to the uninterrupted run's results.

Named points (``<file>`` is the base name of the file being written):

* ``write.temp/<file>``      the temporary file is written and synced, not yet renamed
* ``write.replaced/<file>``  the file has just been renamed into place
* ``state.saved``            the resumable train state is saved (before the epoch's row)
* ``csv.appended``           a results.csv row is written
* ``cache.partial``          half of the images are in the cache's temporary file
* ``cache.built``            the cache's data file is complete, its index not yet written

Without ``UTOD_FAULT`` a fault point costs one dictionary lookup.
"""

from __future__ import annotations

import fnmatch
import os
import signal

ENV = "UTOD_FAULT"
_hits: dict[str, int] = {}


def _rules(spec: str) -> list[tuple[str, int]]:
    out = []
    for part in spec.split(","):
        part = part.strip()
        if not part:
            continue
        pattern, _, count = part.rpartition(":") if part.rsplit(":", 1)[-1].isdigit() else (part, "", "1")
        out.append((pattern, max(1, int(count))))
    return out


def fault_point(name: str) -> None:
    """Kill the process here if ``UTOD_FAULT`` selects this point (see the module doc)."""
    spec = os.environ.get(ENV)
    if not spec:
        return
    for pattern, nth in _rules(spec):
        if fnmatch.fnmatchcase(name, pattern):
            _hits[pattern] = _hits.get(pattern, 0) + 1
            if _hits[pattern] == nth:
                os.kill(os.getpid(), signal.SIGKILL)
