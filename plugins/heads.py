"""Built-in heads: ``utod`` (plain UltraTinyOD head) and ``improved`` (residual context block,
trainable wh_scale, quality branch). Registration only: the TensorFlow code lives in
utod_plugins.impl.heads and is imported when a head is built."""

from utod import hookimpl

HEAD_PARAMS = {
    "use_head_ese": False,
    "iou_aware": False,
    "cls_bottleneck_ratio": 0.5,
    "large_obj_branch": False,
    "large_obj_depth": 1,
    "large_obj_ch_scale": 1.0,
    "context_rfb": False,
    "conv": "dw",  # UHD --utod-conv: dw (depthwise + 1x1) or std (one full 3x3) in every tower block
}


@hookimpl
def register_heads(register):
    register("utod", "utod_plugins.impl.heads:UltraTinyODHead",
             summary="Plain UltraTinyOD head (quality branch only with iou_aware)", params=dict(HEAD_PARAMS))
    register("improved", "utod_plugins.impl.heads:ImprovedHead",
             summary="Improved UltraTinyOD head: residual context block, trainable wh_scale, quality branch",
             params=dict(HEAD_PARAMS))
