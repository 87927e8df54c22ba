"""The names of the components utod uses when the user names none -- the only module of the
core that spells a built-in component's name.

utod's core selects every interchangeable part by kind and name through the registry and
never depends on a particular plugin. Defaults still have to name *something*; they live
here, so replacing a default (or shipping utod with other built-ins) is a one-line change,
and ``tests/test_core_names_no_builtin.py`` fails if a built-in's name appears anywhere else
in ``utod/``. No imports: every module (CLI, config, data, model) may import this one.
"""

from __future__ import annotations

# ---- default component per kind -------------------------------------------------------------
DEFAULT_ASSIGNER = "legacy"
DEFAULT_IOU_LOSS = "ciou"
DEFAULT_CLS_LOSS = "bce"
DEFAULT_HEAD = "utod"
DEFAULT_RESIZE = "opencv_inter_nearest"

DEFAULT_COMPONENTS: dict[str, str] = {
    "assigner": DEFAULT_ASSIGNER,
    "iou_loss": DEFAULT_IOU_LOSS,
    "cls_loss": DEFAULT_CLS_LOSS,
    "head": DEFAULT_HEAD,
    "resize": DEFAULT_RESIZE,
}
"""Kind -> component used when the user selects none (augmentations come from the aug.yaml)."""

# ---- the seed's flags that name built-ins (translated in utod/seed_compat.py) ----------------
SEED_IMPROVED_HEAD = "improved"
"""The head the seed's ``--use-improved-head`` selects."""

SEED_RESIZE_SHORTCUTS: tuple[str, ...] = ("opencv_inter_nearest", "keras_bilinear", "keras_nearest")
"""The seed's bare resize flags (``--keras_nearest`` ...), lowest to highest priority."""

# ---- objectness choices of the core loss (not plugins, but spelled like some) ---------------
OBJ_LOSS_BCE, OBJ_LOSS_SMOOTHL1 = "bce", "smoothl1"
OBJ_LOSSES: tuple[str, ...] = (OBJ_LOSS_BCE, OBJ_LOSS_SMOOTHL1)
OBJ_TARGET_AUTO, OBJ_TARGET_BINARY, OBJ_TARGET_IOU = "auto", "binary", "iou"
OBJ_TARGETS: tuple[str, ...] = (OBJ_TARGET_AUTO, OBJ_TARGET_BINARY, OBJ_TARGET_IOU)
