"""Implementations of the built-in components (imported lazily: these modules import TensorFlow)."""
