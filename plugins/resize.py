"""Built-in resize (registration only; see utod_plugins.impl)."""
