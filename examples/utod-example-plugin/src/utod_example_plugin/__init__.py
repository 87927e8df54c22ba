"""utod-example-plugin: a third-party utod plugin package.

Components (registered in :mod:`utod_example_plugin.plugin`):

* iou_loss ``diou`` -- :class:`utod_example_plugin.iou.DIoU`
* iou_loss ``eiou`` -- :class:`utod_example_plugin.iou.EIoU`
* assigner ``atss`` -- :class:`utod_example_plugin.atss.ATSSAssigner`
* augmentation ``GridMask`` -- :class:`utod_example_plugin.gridmask.GridMask`

Importing this package (or its ``plugin`` module) never imports TensorFlow.
"""

__version__ = "0.1.0"
