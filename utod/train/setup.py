"""Resolve a training run before any step: the final TrainConfig (defaults < YAML < CLI,
or the resumed run's config), the run folder, classes, dataset and split, anchors, and the
model configuration with its head options. No TensorFlow here."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from utod import __version__
from utod.config import (
    ARCHITECTURE_FIELDS,
    TrainConfig,
    build_config,
    load_yaml_config,
    normalise_config_dict,
)
from utod.errors import ConfigError
from utod.presets import preset_settings
from utod.runfolder import (
    check_resume_request,
    check_state_present,
    complete_split_shares,
    read_run_config,
    validate_settings,
)
from utod.seed_compat import head_name, head_options_from_flags

# Settings used when `utod train` runs on the built-in dataset and the user did not set them:
# a small model that reaches a useful mAP on 2 CPU cores in a few minutes.
DEFAULT_DATA_SETTINGS: dict[str, Any] = {
    # Measured on 2 CPU cores (val mAP@0.5 / wall time, one run each): no BN 30 epochs 0.56 / 82 s,
    # BN 30 epochs 0.60 / 105 s, BN 40 epochs 0.74 / 137 s (chosen; 112 s since the epoch-boundary fix).
    "epochs": 40,
    "cnn_width": 16,
    "batch_size": 16,
    "lr": 0.003,
    "activation": "relu",
    "use_batchnorm": True,
    "auto_anchors": True,
    "num_anchors": 3,
    "exp_name": "default-shapes",
}


@dataclass
class ResolvedRun:
    cfg: TrainConfig
    run_dir: Path
    resuming: bool
    used_default_data: bool


def find_run_dir(resume: str) -> Path:
    """``--resume runs/X`` or a file inside it (e.g. a last_*.keras) -> the run folder."""
    p = Path(resume)
    if p.is_file():
        p = p.parent
    if not p.is_dir():
        raise ConfigError(f"--resume {resume}: no such run folder")
    if not (p / "config.yaml").is_file():
        raise ConfigError(f"--resume {resume}: {p} has no config.yaml, so it is not a utod run folder; "
                          "nothing was changed")
    return p


def resolve_config(cli_given: dict[str, Any], config_file: str | None) -> ResolvedRun:
    """Apply defaults < YAML < CLI, or the resumed run's config < CLI."""
    cli = normalise_config_dict(cli_given, source="command line")
    resume = cli.get("resume")
    if resume:
        run_dir = find_run_dir(resume)
        # a torn or foreign config.yaml, or a lost train state, is refused before anything changes
        base = normalise_config_dict(read_run_config(run_dir), source=str(run_dir / "config.yaml"))
        asked = {**(load_yaml_config(config_file) if config_file else {}), **cli}
        check_resume_request(run_dir, resume, base, asked, ARCHITECTURE_FIELDS)
        asked.pop("ckpt_out", None)  # the same folder (anything else was refused)
        merged = {**base, **asked, "resume": str(run_dir)}
        cfg = build_config(merged)
        validate_settings(cfg)
        check_state_present(run_dir)
        return ResolvedRun(cfg, run_dir, True, not (cfg.image_dir or cfg.data or cfg.train_list))

    from_yaml = load_yaml_config(config_file) if config_file else {}
    preset = cli.get("preset") or from_yaml.get("preset")
    merged = preset_settings(str(preset)) if preset else {}  # defaults < preset < YAML < flags
    merged.update(from_yaml)
    merged.update(cli)
    complete_split_shares(merged)
    if merged.get("weights"):  # --weights: the checkpoint's network settings unless set above
        from utod.finetune import checkpoint_settings

        merged.update(checkpoint_settings(str(merged["weights"]), merged))
    used_default = not (merged.get("image_dir") or merged.get("data") or merged.get("train_list"))
    if used_default:
        for k, v in DEFAULT_DATA_SETTINGS.items():
            merged.setdefault(k, v)
    cfg = build_config(merged)
    validate_settings(cfg)  # every setting, before the dataset scan and before any write
    if cfg.ckpt_out:
        run_dir = Path(cfg.ckpt_out)
    else:
        run_dir = Path("runs") / (cfg.exp_name or "ultratinyod")
    return ResolvedRun(cfg, run_dir, False, used_default)


def check_new_run_dir(run_dir: Path) -> None:
    """A new run must not silently overwrite another run's checkpoints."""
    if (run_dir / "train_state").is_dir() or any(run_dir.glob("*_utod_*.keras")):
        raise ConfigError(
            f"run folder {run_dir} already holds a training run. Continue it with --resume {run_dir}, "
            f"or choose another --exp-name / --ckpt-out."
        )


def head_options(cfg: TrainConfig, declared: dict[str, Any]) -> dict[str, Any]:
    """Head options from the seed's flags (only those the chosen head declares) plus --head-opt."""
    from utod.registry import parse_option_pairs

    defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    opts = head_options_from_flags(cfg, declared, defaults)
    opts.update(parse_option_pairs(cfg.head_opt, "--head-opt"))
    return opts


def plugins_used(registry, cfg: TrainConfig, aug_ops: list[tuple[str, dict]] | None) -> list[dict[str, Any]]:
    """Provenance of every component the run uses: kind, name, provider, version."""
    picks = [("assigner", cfg.assigner), ("iou_loss", cfg.iou_loss), ("cls_loss", cfg.cls_loss_type),
             ("head", head_name(cfg)), ("resize", cfg.resize_mode)]
    picks += [("augmentation", name) for name, _ in (aug_ops or [])]
    out = []
    for kind, name in picks:
        comp = registry.get(kind, name)
        out.append({"kind": kind, "name": comp.name, "provider": comp.provider, "version": comp.version})
    out.append({"kind": "toolkit", "name": "utod", "provider": "utod", "version": __version__})
    return out


def write_json(path: Path, data: Any) -> None:
    from utod.atomic import write_json as atomic_write_json

    atomic_write_json(path, data)
