"""``--weights CKPT``: start a new run from a trained checkpoint (fine-tuning).

* Settings: the network settings of the checkpoint's run (width, head, BN, activation,
  input size, anchors, ...) are used unless this run sets them (command line or YAML), so
  ``utod train --weights best.keras --image-dir mydata`` builds the same network.
* Weights: every tensor whose name and shape match is copied; a different class count
  changes only the class output of the head (the tensors whose last axis is anchors x
  classes), which keeps its fresh initialisation, and the log says so. Anchors come from the run's configuration
  (the checkpoint's unless ``--anchors`` / ``--auto-anchors`` asked otherwise); the head's
  learned ``wh_scale`` is copied only when the anchors are the checkpoint's.
* Only the model: optimiser, EMA history, epoch and best mAP start fresh (use ``--resume``
  to continue a run instead).
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from utod.errors import CheckpointError, ConfigError

# Network settings taken from the checkpoint's run unless this run sets them.
INIT_FIELDS = (
    "img_size", "cnn_width", "activation", "use_batchnorm", "utod_residual", "head", "head_opt",
    "use_improved_head", "use_iou_aware_head", "use_head_ese", "cls_bottleneck_ratio", "utod_large_obj_branch",
    "utod_large_obj_depth", "utod_large_obj_ch_scale", "num_anchors", "score_mode", "quality_power",
)


def checkpoint_settings(path: str, given: dict[str, Any]) -> dict[str, Any]:
    """Settings to add to ``given`` (this run's explicit settings) from checkpoint ``path``:
    the INIT_FIELDS it does not set, and the checkpoint's anchors unless it sets
    ``anchors`` or ``auto_anchors``. Raises CheckpointError for a missing/foreign file."""
    from utod.model.io import read_checkpoint_meta

    meta = read_checkpoint_meta(path)
    tc = (meta.get("extra") or {}).get("train_config") or {}
    out = {k: tc[k] for k in INIT_FIELDS if k in tc and k not in given}
    anchors = (meta.get("model_config") or {}).get("anchors")
    if anchors and "anchors" not in given and "auto_anchors" not in given:
        out["anchors"] = json.dumps(anchors)
        out["auto_anchors"] = False
        if "num_anchors" not in given:
            out["num_anchors"] = len(anchors)
    return out


@dataclass
class InitReport:
    loaded: int
    total: int
    reinitialised: list[str] = field(default_factory=list)  # tensors of the class output
    mismatched: list[str] = field(default_factory=list)  # other tensors left at their initialisation
    skipped: list[str] = field(default_factory=list)  # on purpose (anchors, wh_scale)
    class_change: tuple[int, int] | None = None

    def format(self, path: str) -> str:
        msg = f"Initialised from {path}: {self.loaded}/{self.total} weight tensors copied"
        if self.reinitialised:
            a, b = self.class_change or ("?", "?")
            msg += (f"; class count {a} -> {b}: the head's class output re-initialised "
                    f"({', '.join(self.reinitialised)})")
        if self.skipped:
            msg += f"; kept this run's {', '.join(self.skipped)}"
        if self.mismatched:
            shown = ", ".join(self.mismatched[:4]) + (f" and {len(self.mismatched) - 4} more"
                                                     if len(self.mismatched) > 4 else "")
            msg += f"; {len(self.mismatched)} tensor(s) differ in shape and keep their initialisation: {shown}"
        return msg


def _short(name: str) -> str:
    return name.split(":")[0].removeprefix("ultratinyod/")


def _is_class_output(saved: tuple[int, ...], built: tuple[int, ...], old_classes: int, new_classes: int) -> bool:
    """A tensor of the head's class output: only its last axis differs, and by the class count
    (``A * K_old`` vs ``A * K_new`` channels). Head-agnostic: no layer name is assumed."""
    if old_classes <= 0 or new_classes <= 0 or old_classes == new_classes:
        return False
    if len(saved) != len(built) or not saved or saved[:-1] != built[:-1]:
        return False
    return saved[-1] % old_classes == 0 and built[-1] % new_classes == 0 and \
        saved[-1] // old_classes == built[-1] // new_classes


def load_initial_weights(model, path: str, log: Callable[[str], None] = print) -> InitReport:
    """Copy the compatible tensors of checkpoint ``path`` into ``model`` (see the module
    docstring). Call before an EMA shadow copies the weights. ConfigError when fewer than half
    the tensors fit (another network)."""
    from utod.model.io import WEIGHTS_NAME, read_checkpoint_meta

    meta = read_checkpoint_meta(path)
    index = meta.get("weights") or []
    try:
        with zipfile.ZipFile(path) as zf:
            data = np.load(io.BytesIO(zf.read(WEIGHTS_NAME)))
            saved = [data[f"w{i:04d}"] for i in range(len(data.files))]
    except (KeyError, zipfile.BadZipFile, ValueError) as exc:
        raise CheckpointError(f"--weights {path}: the weights cannot be read ({exc})") from None
    names = [str(w.get("name", "")) for w in index] if len(index) == len(saved) else [""] * len(saved)
    by_name: dict[str, np.ndarray] = {}
    for n, v in zip(names, saved):
        if n and _short(n) not in by_name:
            by_name[_short(n)] = v

    variables = model.weights
    same_layout = len(variables) == len(saved)
    old_classes = int((meta.get("model_config") or {}).get("num_classes", -1))
    old_anchors = np.asarray((meta.get("model_config") or {}).get("anchors") or [], np.float32)
    anchors_var = getattr(model, "anchors", None)
    same_anchors = (anchors_var is not None and old_anchors.shape == tuple(anchors_var.shape)
                    and np.allclose(old_anchors, np.asarray(anchors_var), atol=1e-6))
    values = model.get_weights()
    report = InitReport(0, len(variables))
    for i, var in enumerate(variables):
        name = _short(var.name)
        if anchors_var is not None and var is anchors_var:
            report.skipped.append("anchors")
            continue
        if name.endswith("wh_scale") and not same_anchors:
            report.skipped.append("wh_scale (the anchors differ)")
            continue
        src = by_name.get(name)
        if src is None and same_layout:  # names differ (e.g. uniquified): fall back to the order
            src = saved[i]
        if src is not None and tuple(src.shape) == tuple(var.shape):
            values[i] = src
            report.loaded += 1
        elif src is not None and _is_class_output(tuple(src.shape), tuple(var.shape), old_classes,
                                                  int(model.num_classes)):
            report.reinitialised.append(name)
            report.class_change = (old_classes, int(model.num_classes))
        else:
            report.mismatched.append(name)
    if report.loaded * 2 < report.total:
        raise ConfigError(f"--weights {path}: only {report.loaded} of {report.total} weight tensors fit this network "
                          f"(different width or head?); leave the network flags unset to take the checkpoint's")
    model.set_weights(values)
    log(report.format(path))
    return report


def validate_weights_path(path: str | None) -> None:
    """Early check of ``--weights`` (before any data work): a readable utod checkpoint."""
    if path is None:
        return
    p = Path(path)
    if p.is_dir():
        raise ConfigError(f"--weights {path}: is a folder; give a .keras checkpoint (e.g. {p / 'best.keras'})")
    from utod.model.io import read_checkpoint_meta

    read_checkpoint_meta(p)
