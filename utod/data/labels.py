"""Reading YOLO label files (one ``.txt`` beside each image, same stem).

Line format: ``class cx cy w h`` with ``cx cy w h`` normalised to the image (0..1), or a
YOLO segmentation line ``class x1 y1 x2 y2 x3 y3 ...`` (an odd token count >= 7: the class
and at least three polygon points), which is turned into the polygon's bounding box.

Rules, each reported as ``path:line: problem — action`` (nothing is skipped silently except
blank lines and ``#`` comments):

* wrong field count (not 5 and not an odd count >= 7) — line skipped;
* a token that is not a finite number — line skipped;
* class not an integer (``1.5``), negative, or >= ``num_classes`` when the class count is
  known and no class subset is selected — line skipped ("unknown class");
* ``w <= 0`` or ``h <= 0`` (boxes) or a polygon with zero width/height — line skipped;
* coordinates outside [0, 1] (tolerance 1e-6): the box is clipped to [0, 1] in xyxy and
  kept if it still has a positive width and height ("clipped"), otherwise skipped.

The class is parsed like the seed (``int(float(tok))``), so ``0``, ``0.0`` and ``1e0`` work.
Labels keep their **raw** class ids; a ``--classes`` subset is applied after augmentation.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

import numpy as np

from utod.data.boxes_np import EMPTY_BOXES, EMPTY_LABELS

RANGE_TOLERANCE = 1e-6


def label_path_for(image_path: str) -> str:
    """``a/b/x.jpeg`` -> ``a/b/x.txt``."""
    return os.path.splitext(image_path)[0] + ".txt"


@dataclass
class LabelFile:
    """Parsed content of one label file.

    boxes:  float32 [N, 4] normalised cxcywh (clipped to the image).
    labels: int32 [N] raw class ids.
    issues: ``path:line: problem — action`` messages.
    skipped_lines: lines dropped; clipped_boxes: boxes kept after clipping.
    """

    boxes: np.ndarray = field(default_factory=lambda: EMPTY_BOXES.copy())
    labels: np.ndarray = field(default_factory=lambda: EMPTY_LABELS.copy())
    issues: list[str] = field(default_factory=list)
    skipped_lines: int = 0
    clipped_boxes: int = 0
    exists: bool = True


def _parse_class(token: str) -> int | None:
    value = float(token)
    if not math.isfinite(value) or value != int(value):
        return None
    return int(value)


def parse_label_lines(
    lines: list[str], path: str, *, num_classes: int | None = None, class_ids: list[int] | None = None
) -> LabelFile:
    """Parse label ``lines`` of file ``path`` (used in messages) by the module's rules.

    ``class_ids`` (a selected subset) disables the ``>= num_classes`` check: other classes are
    legal and are dropped after augmentation.
    """
    out = LabelFile()
    boxes: list[tuple[float, float, float, float]] = []
    labels: list[int] = []

    def skip(lineno: int, problem: str) -> None:
        out.issues.append(f"{path}:{lineno}: {problem} — line skipped")
        out.skipped_lines += 1

    for lineno, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        tokens = line.split()
        n = len(tokens)
        if n != 5 and not (n >= 7 and n % 2 == 1):
            skip(lineno, f"expected 5 fields 'class cx cy w h' or a segmentation polygon "
                         f"'class x1 y1 x2 y2 x3 y3 ...', got {n} field(s)")
            continue
        try:
            values = [float(t) for t in tokens[1:]]
            cls = _parse_class(tokens[0])
        except ValueError:
            bad = next(t for t in tokens if not _is_number(t))
            skip(lineno, f"'{bad}' is not a number")
            continue
        if not all(math.isfinite(v) for v in values):
            skip(lineno, "non-finite coordinate (nan/inf)")
            continue
        if cls is None:
            skip(lineno, f"class '{tokens[0]}' is not an integer")
            continue
        if cls < 0:
            skip(lineno, f"unknown class {cls} (negative)")
            continue
        if class_ids is None and num_classes is not None and cls >= num_classes:
            skip(lineno, f"unknown class {cls} (the dataset has {num_classes} classes: 0..{num_classes - 1})")
            continue
        if n == 5:
            cx, cy, w, h = values
            if w <= 0 or h <= 0:
                skip(lineno, f"non-positive box size w={w:g} h={h:g}")
                continue
            x1, y1, x2, y2 = cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2
        else:
            xs, ys = values[0::2], values[1::2]
            x1, y1, x2, y2 = min(xs), min(ys), max(xs), max(ys)
            if x2 <= x1 or y2 <= y1:
                skip(lineno, "segmentation polygon has zero width or height")
                continue
        lo, hi = -RANGE_TOLERANCE, 1 + RANGE_TOLERANCE
        outside = not (lo <= x1 and lo <= y1 and x2 <= hi and y2 <= hi)
        x1, y1, x2, y2 = (min(max(v, 0.0), 1.0) for v in (x1, y1, x2, y2))
        if x2 <= x1 or y2 <= y1:
            skip(lineno, "box lies outside the image [0, 1]")
            continue
        if outside:
            out.issues.append(f"{path}:{lineno}: coordinates outside [0, 1] — box clipped to the image and kept")
            out.clipped_boxes += 1
        boxes.append(((x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1))
        labels.append(cls)
    if boxes:
        out.boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
        out.labels = np.asarray(labels, np.int32)
    return out


def _is_number(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def read_label_file(
    path: str, *, num_classes: int | None = None, class_ids: list[int] | None = None
) -> LabelFile:
    """Read and parse ``path``. A missing file gives an empty result with ``exists=False``
    (a background image); an undecodable file is reported and treated as empty."""
    try:
        with open(path, encoding="utf-8-sig") as f:  # utf-8-sig: tolerate a BOM (Windows tools)
            lines = f.read().splitlines()
    except FileNotFoundError:
        out = LabelFile()
        out.exists = False
        return out
    except (OSError, UnicodeDecodeError) as exc:
        out = LabelFile()
        out.issues.append(f"{path}:1: cannot read label file ({type(exc).__name__}: {exc}) — "
                          "image used as a background image")
        return out
    return parse_label_lines(lines, path, num_classes=num_classes, class_ids=class_ids)
