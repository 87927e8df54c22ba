"""The seed's (UHD-keras) flags that name concrete built-in components, in one table.

utod's core selects components by name from the registry and never depends on a particular
plugin. The seed's users, however, have scripts with flags such as ``--use-improved-head``,
``--utod-large-obj-branch``, ``--simota-topk`` or the bare ``--keras_nearest``. This module is
the single place that translates those flags into component names and options; every
translation is checked against what the selected component declares, so a third-party
component that lacks an option gets a clear error instead of a silent no-op.
"""

from __future__ import annotations

from typing import Any

from utod.defaults import DEFAULT_HEAD, SEED_IMPROVED_HEAD, SEED_RESIZE_SHORTCUTS
from utod.errors import ConfigError

# The seed's bare resize flags (store_true); the last one given wins, like the seed
# (--keras_nearest has the highest priority).
RESIZE_SHORTCUTS: tuple[str, ...] = SEED_RESIZE_SHORTCUTS

# --use-improved-head chooses the improved head; otherwise the plain one.
IMPROVED_HEAD, PLAIN_HEAD = SEED_IMPROVED_HEAD, DEFAULT_HEAD

# head option <- TrainConfig field (the seed's head flags)
HEAD_OPTION_FLAGS: dict[str, str] = {
    "use_head_ese": "use_head_ese",
    "iou_aware": "use_iou_aware_head",
    "cls_bottleneck_ratio": "cls_bottleneck_ratio",
    "large_obj_branch": "utod_large_obj_branch",
    "large_obj_depth": "utod_large_obj_depth",
    "large_obj_ch_scale": "utod_large_obj_ch_scale",
    "conv": "utod_conv",  # UHD --utod-conv (the backbone takes it from ModelConfig.conv)
}

# --simota-topk N is the assigner option topk=N.
SIMOTA_TOPK_OPTION = "topk"


def head_name(cfg: Any) -> str:
    """``--head`` if given, else the head the seed's ``--use-improved-head`` implies."""
    if cfg.head:
        return cfg.head
    return IMPROVED_HEAD if cfg.use_improved_head else PLAIN_HEAD


def head_options_from_flags(cfg: Any, declared: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    """Head options from the seed's flags: every one the chosen head declares; a flag changed
    from its default that the head does not declare is an error."""
    opts: dict[str, Any] = {}
    for option, field_name in HEAD_OPTION_FLAGS.items():
        value = getattr(cfg, field_name)
        if option in declared:
            opts[option] = value
        elif value != defaults[field_name]:
            raise ConfigError(
                f"--{field_name.replace('_', '-')} is not supported by head '{head_name(cfg)}' "
                f"(its options: {', '.join(sorted(declared)) or 'none'})"
            )
    return opts


def assigner_options_from_flags(cfg: Any, declared: dict[str, Any], options: dict[str, Any]) -> dict[str, Any]:
    """Add the seed's ``--simota-topk`` to the assigner options (explicit options win)."""
    if cfg.simota_topk is None:
        return options
    if SIMOTA_TOPK_OPTION not in declared:
        raise ConfigError(f"--simota-topk: assigner '{cfg.assigner}' has no '{SIMOTA_TOPK_OPTION}' option")
    return {SIMOTA_TOPK_OPTION: cfg.simota_topk, **options}
