"""Built-in cls_losses (registration only; see utod_plugins.impl)."""
