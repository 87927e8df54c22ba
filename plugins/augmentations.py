"""Built-in augmentations (registration only; see utod_plugins.impl)."""
