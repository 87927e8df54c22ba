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
        zf.writestr(WEIGHTS_NAME, buf.getvalue())
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
    except zipfile.BadZipFile:
        raise CheckpointError(f"{path} is not a utod checkpoint (not a zip archive)") from None
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


def _check_head_available(path: Path, meta: dict[str, Any], name: str, registry) -> None:
    """``name``: the head the checkpoint's model config asks for."""
    from utod.registry import PluginError

    head = meta.get("head", {})
    try:
        registry.get("head", name)
    except PluginError:
        who = head.get("provider")
        origin = f" (from plugin '{who} {head.get('version', '?')}')" if who else ""
        available = ", ".join(registry.names("head")) or "(none)"
        raise CheckpointError(
            f"checkpoint {path} needs head '{name}'{origin}, which is not installed. Available heads: {available}"
        ) from None


def load_checkpoint(path: str | os.PathLike, registry=None) -> tuple[Any, dict[str, Any]]:
    """Rebuild the model stored in ``path`` and load its weights -> (UltraTinyOD, meta)."""
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
    _check_head_available(path, meta, cfg.head, registry)
    model = build_model(cfg, registry)
    with zipfile.ZipFile(path) as zf:
        try:
            data = np.load(io.BytesIO(zf.read(WEIGHTS_NAME)))
        except KeyError:
            raise CheckpointError(f"{path} has no {WEIGHTS_NAME}") from None
        values = [data[f"w{i:04d}"] for i in range(len(data.files))]
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
