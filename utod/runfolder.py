"""What a run folder must hold to be trusted, and every setting checked before disk is touched.

* :func:`validate_settings`: ranges of every numeric setting and the input size, checked
  once, up front (before the dataset scan, before anything is written), one line each.
* :func:`read_run_config`: ``config.yaml`` of a run to resume, refused (nothing changed) when
  it is unreadable, not a mapping, or missing keys a complete file always has.
* :func:`check_resume_request`: settings that cannot change on resume, compared after
  normalisation (``--img-size 64`` is ``64x64``); ``--ckpt-out`` naming another folder is
  refused rather than ignored.
* :func:`saved_split`: ``train.txt`` / ``val.txt`` of the run, the truth on resume.
* :func:`saved_states` / :func:`check_state_present`: the resumable train states found
  on disk (by their files, not only through TensorFlow's ``checkpoint`` index), and refusal
  to "resume" a run whose state is gone while its checkpoints exist (that would start from
  scratch and prune its best/last files).

No TensorFlow here.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Any

import yaml

from utod.errors import ConfigError

STATE_DIR = "train_state"
# Keys every complete config.yaml written by utod holds; a file without one of them is torn
# or not utod's ("resume" is written last, so a file cut short lacks it).
RESUME_REQUIRED = ("img_size", "cnn_width", "seed", "train_split", "val_split", "batch_size", "epochs",
                   "image_dir", "resume")


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


# (field, lowest allowed, highest allowed, lowest inclusive?) for the numeric settings
_RANGES: tuple[tuple[str, float, float, bool], ...] = (
    ("epochs", 1, math.inf, True),
    ("batch_size", 1, math.inf, True),
    ("max_boxes", 1, math.inf, True),
    ("cnn_width", 1, math.inf, True),
    ("num_anchors", 1, math.inf, True),
    ("lr", 0, math.inf, False),
    ("weight_decay", 0, math.inf, True),
    ("warmup_epochs", 0, math.inf, True),
    ("min_lr_ratio", 0, 1, True),
    ("grad_clip_norm", 0, math.inf, True),
    ("ema_decay", 0, 1, False),
    ("train_split", 0, 1, False),
    ("val_split", 0, 1, True),
    ("conf_thresh", 0, 1, True),
    ("nms_iou", 0, 1, True),
    ("quality_power", 0, math.inf, False),
    ("cls_bottleneck_ratio", 0, math.inf, False),
    ("loss_weight_box", 0, math.inf, True),
    ("loss_weight_obj", 0, math.inf, True),
    ("loss_weight_cls", 0, math.inf, True),
    ("loss_weight_quality", 0, math.inf, True),
    ("distill_weight", 0, math.inf, True),
    ("feature_distill_weight", 0, math.inf, True),
    ("distill_obj", 0, math.inf, True),
    ("distill_quality", 0, math.inf, True),
    ("distill_box_l1", 0, math.inf, True),
    ("distill_kl", 0, math.inf, True),
    ("distill_feat", 0, math.inf, True),
    ("distill_temperature", 0, math.inf, False),
    ("log_interval", 1, math.inf, True),
    ("eval_interval", 1, math.inf, True),
    ("save_interval", 0, math.inf, True),
    ("keep_checkpoints", 1, math.inf, True),
    ("num_workers", 1, math.inf, True),
    ("num_classes", 1, math.inf, True),
    ("patience", 0, math.inf, True),
)


def validate_settings(cfg: Any) -> None:
    """ConfigError (one line, naming the flag and value) for any setting out of range, before
    anything is read or written. ``cfg`` is a ``TrainConfig``."""
    from utod.config import parse_img_size

    parse_img_size(cfg.img_size)
    for name, lo, hi, lo_incl in _RANGES:
        if not hasattr(cfg, name):
            continue
        v = getattr(cfg, name)
        if v is None:
            continue
        try:
            x = float(v)
        except (TypeError, ValueError):
            raise ConfigError(f"{_flag(name)} {v!r}: expected a number") from None
        ok = math.isfinite(x) and (x >= lo if lo_incl else x > lo) and x <= hi
        if not ok:
            low = f">= {lo:g}" if lo_incl else f"> {lo:g}"
            rng = f"{low}" if hi == math.inf else f"{low} and <= {hi:g}"
            raise ConfigError(f"{_flag(name)} {x:g}: must be {rng}")
    total = float(cfg.train_split) + float(cfg.val_split)
    if abs(total - 1.0) > 1e-6:
        raise ConfigError(
            f"--train-split {cfg.train_split:g} and --val-split {cfg.val_split:g} add up to {total:g}, not 1: give "
            f"shares that add up to 1 (e.g. --train-split {cfg.train_split:g} "
            f"--val-split {max(0.0, 1 - float(cfg.train_split)):g})"
        )


def complete_split_shares(merged: dict[str, Any]) -> None:
    """When only one of ``train_split`` / ``val_split`` is given, the other is its complement
    (``--train-split 1.0`` means no validation, not a renormalised 0.83)."""
    if "train_split" in merged and "val_split" not in merged:
        try:
            merged["val_split"] = round(max(0.0, 1.0 - float(merged["train_split"])), 12)
        except (TypeError, ValueError):
            pass
    elif "val_split" in merged and "train_split" not in merged:
        try:
            merged["train_split"] = round(max(0.0, 1.0 - float(merged["val_split"])), 12)
        except (TypeError, ValueError):
            pass


def read_run_config(run_dir: Path) -> dict[str, Any]:
    """The stored settings of ``run_dir`` (raw YAML mapping). ConfigError, with nothing
    changed, when config.yaml cannot be trusted."""
    path = run_dir / "config.yaml"
    refuse = f"cannot resume {run_dir}: {path}"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{refuse} does not exist, so it is not a utod run folder; nothing was changed") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{refuse} cannot be read ({exc}); nothing was changed") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f":{where.line + 1}" if where is not None else ""
        raise ConfigError(f"{refuse}{line} is damaged (invalid YAML); nothing was changed") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{refuse} is damaged (not a mapping of settings); nothing was changed")
    missing = [k for k in RESUME_REQUIRED if k not in data]
    if missing:
        raise ConfigError(f"{refuse} is incomplete (no {', '.join(missing)}): it was cut short or not written by "
                          "utod; nothing was changed")
    return data


def same_setting(key: str, a: Any, b: Any) -> bool:
    """Whether two values of setting ``key`` mean the same (``64`` and ``"64x64"``, ``1`` and
    ``1.0``, ``None`` and ``[]``)."""
    from utod.config import parse_img_size

    if key == "img_size":
        try:
            return parse_img_size(a) == parse_img_size(b)
        except ConfigError:
            return a == b
    if a in (None, [], ()) and b in (None, [], ()):
        return True
    if isinstance(a, (list, tuple)) or isinstance(b, (list, tuple)):
        return list(a or []) == list(b or [])
    if isinstance(a, bool) or isinstance(b, bool):
        return bool(a) == bool(b)
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return float(a) == float(b)
    try:
        return float(a) == float(b)  # "0.8" from a YAML string vs 0.8
    except (TypeError, ValueError):
        return a == b


def check_resume_request(run_dir: Path, resume: str, base: dict[str, Any], asked: dict[str, Any],
                         fixed_fields: tuple[str, ...]) -> None:
    """ConfigError when the resumed run is asked to change a setting it must keep, or to
    write somewhere else (``--ckpt-out`` of another folder)."""
    changed = [k for k in fixed_fields if k in asked and not same_setting(k, asked[k], base.get(k))]
    if changed:
        raise ConfigError(
            f"--resume {resume}: cannot change {', '.join(_flag(k) for k in changed)} "
            f"of an existing run (start a new run instead)"
        )
    out = asked.get("ckpt_out")
    if out and os.path.realpath(out) != os.path.realpath(run_dir):
        raise ConfigError(
            f"--resume {resume} with --ckpt-out {out}: a resumed run stays in its own folder {run_dir}; drop "
            f"--ckpt-out (or copy the run folder to {out} and resume that)"
        )


def saved_split(run_dir: Path) -> tuple[list[str], list[str]] | None:
    """The image paths of ``train.txt`` and ``val.txt`` (``None`` when there is no train.txt)."""
    train, val = run_dir / "train.txt", run_dir / "val.txt"
    if not train.is_file():
        return None

    def read(p: Path) -> list[str]:
        if not p.is_file():
            return []
        try:
            return [ln.strip() for ln in p.read_text(encoding="utf-8").splitlines() if ln.strip()]
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot resume {run_dir}: {p} cannot be read ({exc}); nothing was changed") from None

    return read(train), read(val)


_STATE_RE = re.compile(r"^ckpt-(\d+)\.index$")


def saved_states(run_dir: Path) -> list[str]:
    """Prefixes (``.../train_state/ckpt-N``) of the train states on disk whose index and data
    files all exist, newest (highest N) first. Found by their files, so a lost or stale
    ``checkpoint`` index file does not hide them."""
    folder = run_dir / STATE_DIR
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    found = []
    for name in names:
        m = _STATE_RE.match(name)
        if not m:
            continue
        prefix = folder / f"ckpt-{m.group(1)}"
        if any(n.startswith(f"ckpt-{m.group(1)}.data-") for n in names):
            found.append((int(m.group(1)), str(prefix)))
    return [p for _, p in sorted(found, reverse=True)]


def check_state_present(run_dir: Path) -> None:
    """A resumed run folder that holds checkpoints but no train state cannot continue: say so
    instead of starting from scratch (which would prune its best/last checkpoints)."""
    if saved_states(run_dir):
        return
    ckpts = sorted(p.name for p in run_dir.glob("*.keras"))
    if ckpts:
        raise ConfigError(
            f"cannot resume {run_dir}: it holds checkpoints ({', '.join(ckpts[:3])}{', ...' if len(ckpts) > 3 else ''}) "
            f"but no train state in {run_dir / STATE_DIR}, so training cannot continue where it stopped; nothing was "
            f"changed. Start a new run in another folder"
        )


def drop_undecodable(train: list, val: list, cfg: Any, registry, run_dir: Path, ds, log, *,
                     rewrite_split: bool) -> tuple[list, list]:
    """Decode every image once (the image cache the trainer then reuses: same key, no second
    decode) and take the images OpenCV cannot decode out of the split: each is listed in
    ``data_issues.txt``, counted as skipped, and (``rewrite_split``) left out of train.txt /
    val.txt. Returns the (train, val) items without them. ``ds``: the ``LoadedDataset``."""
    import numpy as np

    from utod.data.loading import write_data_issues
    from utod.data.pipeline import PipelineConfig, build_image_cache
    from utod.data.split import write_split

    pipe = PipelineConfig(img_size=cfg.image_hw(), resize_mode=cfg.resize_mode, cache_dir=cfg.cache_dir,
                          num_workers=cfg.num_workers)
    bad: dict[str, str] = {}
    for items in (train, val):
        if not items:
            continue
        cache = build_image_cache([it.image_path for it in items], pipe, registry, log=None)
        for i in np.flatnonzero(~cache.valid):
            bad.setdefault(os.path.abspath(items[int(i)].image_path),
                           f"{items[int(i)].image_path}:1: cannot decode image — image skipped")
    if not bad:
        return train, val
    ds.result.log.extend(bad.values())
    ds.summary.skipped_images += len(bad)
    ds.summary.images -= len(bad)
    keep_train = [it for it in train if os.path.abspath(it.image_path) not in bad]
    keep_val = [it for it in val if os.path.abspath(it.image_path) not in bad]
    issues_file = write_data_issues(run_dir, ds.issues)
    if rewrite_split:
        write_split(run_dir, keep_train, keep_val)
    if log:
        for msg in list(bad.values())[:20]:
            log(msg)
        log(f"{len(bad)} image(s) cannot be decoded and are skipped (skipped: {ds.summary.skipped_images} images in "
            f"all; listed in {issues_file}); split now {len(keep_train)} train, {len(keep_val)} val images")
    return keep_train, keep_val


def epochs_done(run_dir: Path) -> int | None:
    """Completed epochs recorded in the newest readable train state (``None``: no state).
    A state whose files are damaged is passed over for the next older one."""
    from utod._keras import tf

    for prefix in saved_states(run_dir):
        try:
            reader = tf.train.load_checkpoint(prefix)
            key = next((k for k in reader.get_variable_to_shape_map() if k.split("/")[0] == "epoch"), None)
            if key is None:
                return None
            return int(reader.get_tensor(key))
        except Exception:  # noqa: BLE001 - a damaged state: try the older one
            continue
    return None


def check_epochs_left(run_dir: Path, epochs: int) -> None:
    """ConfigError (nothing changed) when a resumed run has no epoch left to train."""
    done = epochs_done(run_dir)
    if done is None or done < epochs:
        return
    if done == epochs:
        raise ConfigError(f"--resume {run_dir}: the run is complete ({done} of {done} epochs); give --epochs greater "
                          f"than {done} to train more (nothing was changed)")
    raise ConfigError(f"--resume {run_dir}: --epochs {epochs} is below the {done} epochs already done; give "
                      f"--epochs greater than {done} to train more (nothing was changed)")


def restore_newest_intact(checkpoint: Any, run_dir: Path, latest: str | None, log=print,
                          check: Any = None) -> str | None:
    """Restore ``checkpoint`` (a ``tf.train.Checkpoint``) from the newest train state that reads
    back whole: the index's latest first, then every other state on disk, newest first (a lost
    ``checkpoint`` index file or a truncated newest state falls back to the older one). Returns
    its prefix, ``None`` when there is no state; ConfigError when states exist but none reads
    (nothing is changed then). ``check()``, called after each restore, returns a problem
    with the restored values (e.g. non-finite weights) or None; a state with a problem is
    passed over like a damaged one."""
    candidates = [latest] if latest else []
    candidates += [p for p in saved_states(run_dir) if p != latest]
    failed: list[str] = []
    for prefix in candidates:
        try:
            checkpoint.restore(prefix).assert_existing_objects_matched()
        except Exception as exc:  # noqa: BLE001 - a damaged or missing state: try the older one
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            failed.append(f"{Path(prefix).name} ({type(exc).__name__}: {first[:160]})")
            continue
        problem = check() if check is not None else None
        if problem:
            failed.append(f"{Path(prefix).name} ({problem})")
            continue
        if failed and log is not None:
            log(f"warning: train state {', '.join(failed)} cannot be used; resumed from the older {prefix}")
        return prefix
    if failed:
        raise ConfigError(f"cannot resume {run_dir}: no train state reads back ({'; '.join(failed)}); nothing was "
                          "changed")
    return None
