"""Atomic writes for the diagnostics, through the shared :mod:`utod.atomic` (temporary file in
the same folder, fsync, rename), plus rendering a matplotlib figure to PNG bytes."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

from utod.atomic import write_bytes as write_bytes_atomic
from utod.atomic import write_text as write_text_atomic

__all__ = ["save_figure_atomic", "write_bytes_atomic", "write_text_atomic"]


def save_figure_atomic(fig: Any, path: str | os.PathLike, dpi: int = 100) -> Path:
    """Render a matplotlib ``Figure`` (Agg canvas) to PNG bytes and write them atomically."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return write_bytes_atomic(path, buf.getvalue())
