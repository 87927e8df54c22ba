"""utod's plugin SDK: the stable, public surface for writing components.

Import what a plugin needs from here (or the submodules below) rather than from utod's
internals; these names keep their meaning across utod releases (``SDK_VERSION`` changes
when they do not).

* registration (no TensorFlow): :data:`hookimpl`, :data:`KINDS`, :data:`HOOK_FOR_KIND`;
* what a component receives and returns: :class:`Sample`, :class:`HeadContext`,
  :class:`Assignment`;
* the contract each kind satisfies (``typing.Protocol``): :class:`Assigner`,
  :class:`BoxSimilarity` (``iou_loss``), :class:`ClsLoss`, :class:`Head`,
  :class:`ResizeBackend`, :class:`Augmentation`, :class:`PartnerPool`,
  :class:`DatasetFormat`;
  :data:`PROTOCOL_FOR_KIND` maps kind -> Protocol.

Submodules, imported on demand:

* :mod:`utod.sdk.boxes` -- TensorFlow box maths: conversions, IoU / GIoU / DIoU / CIoU,
  pairwise and shape IoU, grid cell centres (the one home of box geometry in utod);
* :mod:`utod.sdk.boxes_np` -- the same conversions and clipping for numpy augmentations;
* :mod:`utod.sdk.testing` -- the contract test kit (``check_component`` and one check per
  kind) to run from a plugin's own tests.

Importing ``utod.sdk`` never imports TensorFlow.
"""

from __future__ import annotations

from utod import hookimpl
from utod.components import (
    HOOK_FOR_KIND,
    KINDS,
    PROTOCOL_FOR_KIND,
    Assigner,
    Assignment,
    Augmentation,
    BoxSimilarity,
    ClsLoss,
    DatasetFormat,
    Head,
    HeadContext,
    PartnerPool,
    ResizeBackend,
    Sample,
)

SDK_VERSION = 1
"""Bumped when a name here changes meaning (new names do not bump it)."""

__all__ = [
    "SDK_VERSION",
    "hookimpl",
    "KINDS",
    "HOOK_FOR_KIND",
    "PROTOCOL_FOR_KIND",
    "Assignment",
    "HeadContext",
    "Sample",
    "Assigner",
    "BoxSimilarity",
    "ClsLoss",
    "Head",
    "ResizeBackend",
    "Augmentation",
    "PartnerPool",
    "DatasetFormat",
]
