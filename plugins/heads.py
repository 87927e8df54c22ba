"""Built-in heads (registration only; see utod_plugins.impl)."""
