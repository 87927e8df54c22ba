"""Built-in target assigners (registration only; TensorFlow code in utod_plugins.impl.assigners)."""

from utod import hookimpl

_IMPL = "utod_plugins.impl.assigners"


@hookimpl
def register_assigners(register):
    register("legacy", f"{_IMPL}:LegacyAssigner",
             summary="Centre cell + best shape-IoU anchor, one positive per GT (reference default)", params={})
    register("simota", f"{_IMPL}:SimOTAAssigner",
             summary="YOLOX SimOTA: centre prior, cls+IoU cost, dynamic k, conflicts by lowest cost",
             params={"topk": 10, "center_radius": 2.5, "iou_weight": 3.0})
