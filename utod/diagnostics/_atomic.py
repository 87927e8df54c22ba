"""Atomic file writes for the diagnostics, through :mod:`utod.atomic`: a reader (or a killed
run) never sees half a file."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (``utod.atomic``, the one atomic-write utility:
    temporary file in the same folder, fsync, rename; StorageError naming the path)."""
    from utod.atomic import write_bytes

    return write_bytes(path, data)


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    return write_bytes_atomic(path, text.encode("utf-8"))


def save_figure_atomic(fig: Any, path: str | os.PathLike, dpi: int = 100) -> Path:
    """Render a matplotlib ``Figure`` (Agg canvas) to PNG bytes and write them atomically."""
    import io

    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return write_bytes_atomic(path, buf.getvalue())
