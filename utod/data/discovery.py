"""Finding the images of a dataset: a folder searched recursively, or a list file.

* Folder: every file whose extension is jpg, jpeg, png, bmp or webp (case-insensitive),
  found **recursively**, returned as **sorted** paths (sorting makes the split portable;
  the seed used unsorted ``os.listdir``, non-recursive).
* List file: one image path per non-empty line (``#`` starts a comment line). A relative
  path is resolved against the list file's folder first, then the current directory.
  Entries that exist nowhere are reported and skipped. Order is kept as written.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from utod.data.images import IMAGE_EXTENSIONS
from utod.errors import DataError


def is_image_name(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def find_images_in_dir(directory: str | os.PathLike, issues: list[str] | None = None) -> list[str]:
    """Sorted paths of all images under ``directory`` (recursive, symlinked dirs followed).

    Every real folder is searched once and every real file is returned once: a symlink loop,
    or two links to one folder or image, would otherwise list the same image many times (and
    spread copies over train and val). Each skipped repeat is reported into ``issues``."""
    found: list[str] = []
    seen_dirs: dict[str, str] = {}
    seen_files: dict[str, str] = {}
    for root, dirs, files in os.walk(directory, followlinks=True):
        real = os.path.realpath(root)
        if real in seen_dirs:  # reached again through a symlink: a loop or a second link
            dirs[:] = []
            if issues is not None:
                kind = "symlink loop" if _is_inside(seen_dirs[real], root) else "second link"
                issues.append(f"{root}: {kind} to {seen_dirs[real]} (already searched) — folder skipped")
            continue
        seen_dirs[real] = root
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for f in sorted(files):
            if not is_image_name(f):
                continue
            path = os.path.join(root, f)
            real_file = os.path.realpath(path)
            if real_file in seen_files:
                if issues is not None:
                    issues.append(f"{path}: same file as {seen_files[real_file]} — duplicate skipped")
                continue
            seen_files[real_file] = path
            found.append(path)
    return sorted(found)


def _is_inside(ancestor: str, path: str) -> bool:
    """Whether ``path`` lies below ``ancestor`` (as written, links not resolved)."""
    a, p = os.path.abspath(ancestor), os.path.abspath(path)
    return p == a or p.startswith(a.rstrip(os.sep) + os.sep)


def read_list_file(list_path: str | os.PathLike, *, extra_bases: Sequence[str | os.PathLike] = (),
                   strip_prefixes: Sequence[str] = (),
                   basename_dirs: Sequence[str | os.PathLike] = ()) -> tuple[list[str], list[str]]:
    """Image paths listed in ``list_path`` and ``path:line`` issues for entries not found.

    A relative entry is tried against the list file's folder, then each of ``extra_bases``
    (e.g. a data.yaml root), then the current directory; with ``strip_prefixes`` (CVAT's
    ``data/``) the entry is also tried without that leading prefix; finally its file name
    alone in each of ``basename_dirs`` (UHD: ``--image-dir`` beside ``--train-list``)."""
    list_path = str(list_path)
    base = os.path.dirname(os.path.abspath(list_path))
    bases = [base, *(str(b) for b in extra_bases)]
    paths: list[str] = []
    issues: list[str] = []
    try:
        with open(list_path, encoding="utf-8-sig") as f:  # tolerate a BOM
            lines = f.read().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read image list file '{list_path}': {exc}") from exc
    for lineno, raw in enumerate(lines, start=1):
        entry = raw.strip()
        if not entry or entry.startswith("#"):
            continue
        entry = entry.replace("\\", "/") if os.sep == "/" else entry
        if os.path.isabs(entry):
            candidates = [entry]
        else:
            forms = [entry] + [entry[len(p):] for p in strip_prefixes if entry.startswith(p)]
            candidates = [os.path.join(b, f) for f in forms for b in bases] + forms
            candidates += [os.path.join(str(d), os.path.basename(entry)) for d in basename_dirs]
        hit = next((c for c in candidates if os.path.isfile(c)), None)
        if hit is None:
            issues.append(f"{list_path}:{lineno}: image '{entry}' not found — entry skipped")
            continue
        paths.append(os.path.normpath(hit))
    return paths, issues


def find_images(image_dir: str | os.PathLike) -> tuple[list[str], list[str]]:
    """Images of ``image_dir`` (folder or list file) and issues about missing entries."""
    p = Path(image_dir)
    if p.is_dir():
        issues: list[str] = []
        return find_images_in_dir(p, issues), issues
    if p.is_file():
        if is_image_name(p.name):
            return [str(p)], []
        return read_list_file(p)
    raise DataError(f"image dir '{image_dir}' does not exist (expected a folder of images or a list file)")
