"""Image files: which extensions count, a cheap header check, and decoding to uint8 RGB."""

from __future__ import annotations

import cv2
import numpy as np

IMAGE_EXTENSIONS: frozenset[str] = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp"})
"""Lower-case extensions treated as images (matched case-insensitively)."""

_MAGIC = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"BM", "BMP"),
)


def sniff_image(path: str) -> str | None:
    """Cheap validity check reading the first 16 bytes. Returns ``None`` when the file starts
    like a JPEG/PNG/BMP/WebP image (whatever its extension), else a short problem text.
    It does not decode: truncated or garbled data is caught when the cache is built."""
    try:
        with open(path, "rb") as f:
            head = f.read(16)
    except OSError as exc:
        return f"cannot open ({type(exc).__name__}: {exc.strerror or exc})"
    if not head:
        return "empty file"
    if any(head.startswith(magic) for magic, _ in _MAGIC):
        return None
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return None
    return "not a JPEG/PNG/BMP/WebP image (unknown file header)"


# OpenCV >= 4.10 decodes straight to RGB (same pixels as BGR decode + cvtColor, ~25% faster).
_IMREAD_RGB: int | None = getattr(cv2, "IMREAD_COLOR_RGB", None)


def read_image_rgb(path: str) -> np.ndarray | None:
    """Decode ``path`` to uint8 RGB ``[h, w, 3]`` (alpha dropped, grayscale expanded, as
    ``cv2.IMREAD_COLOR`` does). ``None`` when OpenCV cannot decode it."""
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError:
        return None
    if data.size == 0:
        return None
    img = cv2.imdecode(data, _IMREAD_RGB if _IMREAD_RGB is not None else cv2.IMREAD_COLOR)
    if img is None or img.ndim != 3 or img.shape[0] == 0 or img.shape[1] == 0:
        return None
    return img if _IMREAD_RGB is not None else cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
