"""Built-in classification losses (registration only; TensorFlow code in utod_plugins.impl.cls_losses)."""

from utod import hookimpl

_IMPL = "utod_plugins.impl.cls_losses"


@hookimpl
def register_cls_losses(register):
    register("bce", f"{_IMPL}:BCE", summary="Binary cross-entropy on positives, / max(1, N_pos)", params={})
    register("ce", f"{_IMPL}:CE", summary="Softmax cross-entropy on positives (target = argmax), "
             "/ max(1, N_pos); BCE for one class", params={})
    register("vfl", f"{_IMPL}:VFL", summary="Varifocal loss (reference form), dense mean",
             params={"alpha": 0.75, "gamma": 2.0})
