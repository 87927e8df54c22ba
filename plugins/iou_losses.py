"""Built-in iou_losses (registration only; see utod_plugins.impl)."""
