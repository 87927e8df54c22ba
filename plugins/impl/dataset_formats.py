"""The built-in dataset layouts: the readers of ``utod.data.formats`` (one module per layout),
exposed here as the factories ``utod_plugins.dataset_formats`` registers."""

from utod.data.formats.coco import CocoLayout
from utod.data.formats.cvat import CvatLayout
from utod.data.formats.ultralytics import UltralyticsLayout, UltralyticsTreeLayout
from utod.data.formats.voc import VocLayout
from utod.data.formats.yolo import YoloLayout

__all__ = ["CocoLayout", "CvatLayout", "UltralyticsLayout", "UltralyticsTreeLayout", "VocLayout", "YoloLayout"]
