"""Registration module of utod-example-plugin (the ``utod`` entry point points here).

Only names, summaries and parameter defaults live here; the implementations are given as
``"module:Class"`` strings that utod imports when the component is built, so
``utod list-plugins`` stays fast and does not import TensorFlow.
"""

from __future__ import annotations

from utod import hookimpl

_PKG = "utod_example_plugin"


@hookimpl
def register_iou_losses(register):
    register("diou", f"{_PKG}.iou:DIoU", summary="Distance-IoU: IoU - centre distance^2 / enclosing diagonal^2",
             params={"eps": 1e-7})
    register("eiou", f"{_PKG}.iou:EIoU", summary="Efficient-IoU: DIoU - width and height gaps / enclosing size",
             params={"eps": 1e-7})


@hookimpl
def register_assigners(register):
    register("atss", f"{_PKG}.atss:ATSSAssigner",
             summary="ATSS: top-k nearest cells, IoU >= mean + std of the candidates, centre inside the box",
             params={"topk": 9, "center_in_gt": True, "iou_cls_target": False})


@hookimpl
def register_augmentations(register):
    register("GridMask", f"{_PKG}.gridmask:GridMask",
             summary="GridMask: blank a regular grid of squares (boxes kept unless mostly hidden)",
             params={"prob": 0.5, "period": [0.2, 0.5], "ratio": 0.5, "fill": 0.0, "min_visibility": 0.0})
