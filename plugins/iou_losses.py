"""Built-in box similarities (registration only; TensorFlow code in utod_plugins.impl.iou_losses)."""

from utod import hookimpl

_IMPL = "utod_plugins.impl.iou_losses"


@hookimpl
def register_iou_losses(register):
    register("iou", f"{_IMPL}:IoU", summary="Plain IoU (loss 1 - IoU)", params={"eps": 1e-7})
    register("giou", f"{_IMPL}:GIoU", summary="Generalised IoU (loss 1 - GIoU)", params={"eps": 1e-7})
    register("ciou", f"{_IMPL}:CIoU", summary="Complete IoU, alpha detached (loss 1 - CIoU)", params={"eps": 1e-7})
