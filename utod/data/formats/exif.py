"""A JPEG's stored size and EXIF orientation, read from its header (no decoding).

COCO ``width``/``height`` and VOC ``<size>`` may describe the stored raster while the image
is shown (and decoded by OpenCV) rotated by its EXIF orientation (5-8 swap width and height).
Boxes drawn in the other frame are then wrong; the readers report such images.
"""

from __future__ import annotations

import struct

_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
MAX_SEGMENTS = 64


def _orientation(exif: bytes) -> int:
    """EXIF IFD0 tag 0x0112 of an APP1 payload (after ``Exif\\0\\0``); 1 when absent."""
    if len(exif) < 8 or exif[:2] not in (b"II", b"MM"):
        return 1
    end = "<" if exif[:2] == b"II" else ">"
    try:
        (ifd,) = struct.unpack(end + "I", exif[4:8])
        (count,) = struct.unpack(end + "H", exif[ifd:ifd + 2])
        for k in range(count):
            off = ifd + 2 + 12 * k
            tag, typ, _n = struct.unpack(end + "HHI", exif[off:off + 8])
            if tag == 0x0112 and typ == 3:
                return struct.unpack(end + "H", exif[off + 8:off + 10])[0]
    except struct.error:
        return 1
    return 1


def jpeg_size_orientation(path: str) -> tuple[int, int, int] | None:
    """``(stored width, stored height, EXIF orientation 1-8)`` of a JPEG, ``None`` when the
    file is not a JPEG or its header is malformed. Reads only the segment headers it skips
    and the APP1/frame segments (a few hundred bytes for most files)."""
    try:
        with open(path, "rb") as f:
            if f.read(2) != b"\xff\xd8":
                return None
            orient = 1
            for _ in range(MAX_SEGMENTS):
                head = f.read(4)
                if len(head) < 4 or head[0] != 0xFF:
                    return None
                marker = head[1]
                if marker == 0xFF:  # fill byte: step one byte
                    f.seek(-3, 1)
                    continue
                (length,) = struct.unpack(">H", head[2:4])
                if marker == 0xE1 or marker in _SOF:
                    seg = f.read(length - 2)
                    if marker == 0xE1 and seg.startswith(b"Exif\0\0"):
                        orient = _orientation(seg[6:])
                    elif marker in _SOF and len(seg) >= 5:
                        h, w = struct.unpack(">HH", seg[1:5])
                        return w, h, orient
                elif marker == 0xDA:  # scan data before a frame header: malformed
                    return None
                else:
                    f.seek(length - 2, 1)
    except (OSError, struct.error):
        return None
    return None


def frame_problem(path: str, width: float, height: float) -> str | None:
    """A problem text when the declared ``width x height`` is the stored raster of a JPEG that
    is shown rotated by 90 degrees (EXIF orientation 5-8), else ``None``."""
    info = jpeg_size_orientation(path)
    if info is None:
        return None
    w, h, orient = info
    if orient in (5, 6, 7, 8) and w != h and (round(width), round(height)) == (w, h):
        return (f"declared size {w}x{h} is the stored raster, but EXIF orientation {orient} shows (and "
                f"utod decodes) the image as {h}x{w}: boxes drawn on the stored frame are misplaced")
    return None
