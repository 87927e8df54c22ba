"""Checkpoints: one ``.keras`` file (a zip) holding

* ``utod.json``   -- format marker, the full ModelConfig, the head plugin's name, provider
                     and version, the weight index (names and shapes) and ``extra`` metadata;
* ``weights.npz`` -- every model variable in ``model.weights`` order (``w0000``, ``w0001``, ...),
                     anchors and the head's wh_scale included.

Loading rebuilds the model from its config through the registry (so the head plugin must be
installed) and assigns the weights by order, checking shapes. :func:`read_checkpoint_meta`
reads only the JSON and never imports TensorFlow.
"""

from __future__ import annotations

import io
import json
import os
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from utod.atomic import atomic_path
from utod.errors import CheckpointError

FORMAT = "utod-checkpoint"
FORMAT_VERSION = 1
META_NAME = "utod.json"
WEIGHTS_NAME = "weights.npz"


def save_checkpoint(path: str | os.PathLike, model, extra: dict[str, Any] | None = None) -> Path:
    """Write ``model`` (an UltraTinyOD) and JSON-safe ``extra`` to ``path`` atomically
    (``utod.atomic``: a temporary file, then ``os.replace``). Returns the path."""
    from utod import __version__

    path = Path(path)
    values = model.get_weights()
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "utod_version": __version__,
        "model_config": model.config.to_dict(),
        "head": {**getattr(model, "head_info", {}), "name": model.config.head,
                 "options": model.head.get_config()},
        "weights": [{"name": v.name, "shape": list(v.shape)} for v in model.weights],
        # what a reader needs without TensorFlow or knowing the head's weight names
        "anchors": np.asarray(model.anchors, np.float32).tolist(),
        "wh_scale": np.asarray(model.wh_scale, np.float32).tolist(),
        "trainable_params": int(sum(int(np.prod(v.shape)) for v in model.trainable_weights)),
        "extra": extra or {},
    }
    try:
        meta_text = json.dumps(meta, indent=2, allow_nan=True)
    except TypeError as exc:
        raise CheckpointError(f"checkpoint metadata for {path} is not JSON-serialisable: {exc}") from exc
    buf = io.BytesIO()
    np.savez(buf, **{f"w{i:04d}": np.asarray(v) for i, v in enumerate(values)})
    with atomic_path(path) as tmp, zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(META_NAME, meta_text)
        # float32 weights barely compress (deflate: -7 % size for 1.1 s per save of the W=64 model
        # on the 2-core machine; stored: 0.02 s), so the weights are stored, the JSON deflated
        zf.writestr(WEIGHTS_NAME, buf.getvalue(), compress_type=zipfile.ZIP_STORED)
    return path


def read_checkpoint_meta(path: str | os.PathLike) -> dict[str, Any]:
    """The checkpoint's metadata (``model_config``, ``head``, ``weights``, ``extra``, ...)
    without importing TensorFlow. Raises CheckpointError for a missing or foreign file."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} is not a file")
    try:
        with zipfile.ZipFile(path) as zf:
            if META_NAME not in zf.namelist():
                raise CheckpointError(f"{path} is not a utod checkpoint (no {META_NAME} inside)")
            meta = json.loads(zf.read(META_NAME).decode("utf-8"))
    except zipfile.BadZipFile as exc:
        if zipfile.is_zipfile(path):  # a zip whose member fails its CRC or cannot be inflated
            raise CheckpointError(f"{path} is damaged ({exc}); use another checkpoint (e.g. last.keras)") from None
        raise CheckpointError(f"{path} is not a utod checkpoint (not a zip archive)") from None
    except (OSError, zlib.error) as exc:
        raise CheckpointError(f"{path} cannot be read: {exc}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path}: {META_NAME} is corrupt: {exc}") from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a utod checkpoint (format marker missing)")
    if int(meta.get("format_version", 0)) > FORMAT_VERSION:
        raise CheckpointError(
            f"{path} uses checkpoint format {meta.get('format_version')}, newer than this utod "
            f"understands ({FORMAT_VERSION}); upgrade utod"
        )
    meta.setdefault("extra", {})
    return meta


def read_weights(path: str | os.PathLike, meta: dict[str, Any]) -> list[np.ndarray]:
    """Every stored weight array, in ``meta["weights"]`` order. CheckpointError (one line,
    naming the file) for a damaged archive (bad CRC), a missing ``weights.npz`` or a missing
    weight."""
    path = Path(path)
    index = meta.get("weights") or []
    try:
        with zipfile.ZipFile(path) as zf:
            try:
                raw = zf.read(WEIGHTS_NAME)
            except KeyError:
                raise CheckpointError(f"{path} has no {WEIGHTS_NAME}") from None
        data = np.load(io.BytesIO(raw))
        count = max(len(index), len(data.files))
        values = []
        for i in range(count):
            key = f"w{i:04d}"
            if key not in data.files:
                name = index[i].get("name", "?") if i < len(index) else "?"
                raise CheckpointError(f"{path}: weight #{i} ({name}) is missing from {WEIGHTS_NAME} "
                                      "(the file is damaged or incomplete)")
            values.append(np.asarray(data[key]))
    except (zipfile.BadZipFile, zlib.error, ValueError, EOFError, OSError) as exc:
        raise CheckpointError(f"{path} is damaged ({exc}); use another checkpoint (e.g. last.keras)") from None
    return values


def nonfinite_weights(values: list[np.ndarray], meta: dict[str, Any]) -> list[str]:
    """Names of the weight tensors holding NaN or Inf."""
    index = meta.get("weights") or []
    bad = []
    for i, v in enumerate(values):
        if np.issubdtype(v.dtype, np.floating) and not np.isfinite(v).all():
            bad.append(str(index[i].get("name", f"#{i}")) if i < len(index) else f"#{i}")
    return bad


def check_finite_weights(path: str | os.PathLike, values: list[np.ndarray], meta: dict[str, Any]) -> None:
    """CheckpointError when any weight is NaN/Inf: such a model's outputs are not scores."""
    bad = nonfinite_weights(values, meta)
    if bad:
        raise CheckpointError(
            f"{path} holds non-finite weights (NaN/Inf in {len(bad)} of {len(values)} tensors, first {bad[0]}): "
            "the run diverged before this checkpoint was written, so it cannot be evaluated, exported or used "
            "for prediction; use an earlier checkpoint, or train again with a lower --lr"
        )


def resolve_head(path: Path, meta: dict[str, Any], name: str, registry) -> str:
    """The registry reference of the checkpoint's head: its name, or ``provider:name`` when
    several installed plugins register that name (the checkpoint records which one wrote it).
    CheckpointError when it is not installed, or ambiguous with no provider recorded.
    ``name``: the head the checkpoint's model config asks for."""
    from utod.registry import ComponentConflictError, PluginError

    head = meta.get("head", {})
    who = head.get("provider")
    origin = f" (from plugin '{who} {head.get('version', '?')}')" if who else ""
    try:
        registry.get("head", name)
        return name
    except ComponentConflictError as exc:
        if who:
            try:
                registry.get("head", f"{who}:{name}")
                return f"{who}:{name}"
            except PluginError:
                pass
        raise CheckpointError(f"checkpoint {path} needs head '{name}'{origin}: {exc}") from None
    except PluginError:
        available = ", ".join(registry.names("head")) or "(none)"
        raise CheckpointError(
            f"checkpoint {path} needs head '{name}'{origin}, which is not installed. Available heads: {available}"
        ) from None


def load_checkpoint(path: str | os.PathLike, registry=None, *, allow_nonfinite: bool = False
                    ) -> tuple[Any, dict[str, Any]]:
    """Rebuild the model stored in ``path`` and load its weights -> (UltraTinyOD, meta).
    A checkpoint with NaN/Inf weights is refused (CheckpointError) unless ``allow_nonfinite``."""
    from utod.model.config import ModelConfig
    from utod.model.detector import build_model

    path = Path(path)
    meta = read_checkpoint_meta(path)
    if registry is None:
        from utod.registry import get_registry

        registry = get_registry()
    if "model_config" not in meta:
        raise CheckpointError(f"{path} has no model_config")
    try:
        cfg = ModelConfig.from_dict(meta["model_config"])
    except CheckpointError as exc:
        raise CheckpointError(f"{path}: {exc}") from exc
    values = read_weights(path, meta)
    if not allow_nonfinite:
        check_finite_weights(path, values, meta)
    head_ref = resolve_head(path, meta, cfg.head, registry)
    model = build_model(cfg, registry, head_ref=head_ref)
    expected = model.weights
    if len(values) != len(expected):
        raise CheckpointError(
            f"{path} holds {len(values)} weight tensors but head '{cfg.head}' built a model with {len(expected)}; "
            "the head plugin's version may differ from the one that wrote the checkpoint"
        )
    for i, (v, var) in enumerate(zip(values, expected)):
        if tuple(v.shape) != tuple(var.shape):
            raise CheckpointError(
                f"{path}: weight #{i} ({var.name}) has shape {tuple(v.shape)} in the file but {tuple(var.shape)} "
                "in the rebuilt model"
            )
    model.set_weights(values)
    return model, meta
