"""Silence C++ logging that bypasses Python (TFLite converter/interpreter banners, OpenCV
backend warnings): they write straight to file descriptor 2."""

from __future__ import annotations

import os
import sys
import tempfile


class quiet_fd2:
    """Context manager: file descriptor 2 goes to a temporary file while inside."""

    def __enter__(self) -> quiet_fd2:
        sys.stderr.flush()
        self._saved = os.dup(2)
        self._tmp = tempfile.TemporaryFile()
        os.dup2(self._tmp.fileno(), 2)
        return self

    def __exit__(self, *exc: object) -> bool:
        sys.stderr.flush()
        os.dup2(self._saved, 2)
        os.close(self._saved)
        self._tmp.close()
        return False
