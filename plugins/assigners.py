"""Built-in assigners (registration only; see utod_plugins.impl)."""
