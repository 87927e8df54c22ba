"""``--conf-thresh best`` (or ``f1``): the F1-optimal confidence that training stored in the
checkpoint, for ``utod predict`` and ``utod export``.

Training writes ``extra["diagnostics"]`` into every checkpoint it saves after a validation
(see :mod:`utod.diagnostics.callback`): ``f1_conf`` is the confidence threshold that
maximised the mean F1 over classes on the validation set (IoU 0.5) for *those* weights,
``f1``/``precision``/``recall`` what it gave, ``epoch`` when. ``f1_conf`` is ``null`` when no
threshold gave a correct detection.
"""

from __future__ import annotations

import math
from typing import Any

import click

from utod.errors import ConfigError

META_KEY = "diagnostics"  # key in a checkpoint's ``extra`` metadata
KEYWORDS = ("best", "f1")


class ConfThresh(click.ParamType):
    """A score threshold in [0, 1], or ``best`` / ``f1`` (kept as the string ``"best"``)."""

    name = "FLOAT|best"

    def convert(self, value: Any, param, ctx) -> float | str | None:
        if value is None or isinstance(value, float):
            return value
        text = str(value).strip().lower()
        if text in KEYWORDS:
            return "best"
        try:
            v = float(text)
        except ValueError:
            self.fail(f"{value!r} is neither a number nor one of {', '.join(KEYWORDS)}", param, ctx)
        if not (math.isfinite(v) and 0.0 <= v <= 1.0):
            self.fail(f"{value!r} is not a score threshold in [0, 1]", param, ctx)
        return v


CONF_THRESH = ConfThresh()


def stored_f1_conf(meta: dict[str, Any]) -> float | None:
    """The F1-optimal confidence stored in checkpoint metadata (``None`` when absent/null)."""
    diag = ((meta or {}).get("extra") or {}).get(META_KEY) or {}
    v = diag.get("f1_conf")
    try:
        v = float(v)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) and 0.0 <= v <= 1.0 else None


def resolve_conf_thresh(value: float | str | None, meta: dict[str, Any] | None, source: str) -> float | None:
    """``value`` as given on the command line -> a float (or None for the model's default).
    ``"best"`` reads the stored F1-optimal confidence; a ``ConfigError`` names ``source`` when
    there is none (a checkpoint from before diagnostics, or from a run without validation)."""
    if value != "best":
        return value  # type: ignore[return-value]
    conf = stored_f1_conf(meta or {})
    if conf is None:
        diag = (((meta or {}).get("extra") or {}).get(META_KEY)) if meta else None
        why = ("no threshold gave a correct validation detection" if diag else
               "it holds no F1-optimal confidence (trained without validation, by an older utod, "
               "or not a .keras checkpoint)")
        raise ConfigError(f"--conf-thresh best: {source}: {why}; give a number instead")
    return conf


def resolve_for_model(value: float | str | None, model_path: str, log=None) -> float | None:
    """``--conf-thresh`` of ``utod predict`` / ``utod export`` for the model at ``model_path``.
    ``best`` needs a ``.keras`` checkpoint (an exported file has its threshold baked in or
    applies the one given as a number)."""
    if value != "best":
        return value  # type: ignore[return-value]
    from pathlib import Path

    if Path(model_path).suffix.lower() != ".keras":
        raise ConfigError(f"--conf-thresh best: {model_path}: the F1-optimal confidence is stored in the .keras "
                          f"checkpoint; give a number for an exported file (or export with --conf-thresh best)")
    from utod.model.io import read_checkpoint_meta

    meta = read_checkpoint_meta(model_path)
    conf = resolve_conf_thresh(value, meta, model_path)
    if log is not None:
        epoch = (meta.get("extra", {}).get(META_KEY) or {}).get("epoch", "?")
        log(f"--conf-thresh best: {conf:g} (F1-optimal on the validation set, epoch {epoch})")
    return conf
