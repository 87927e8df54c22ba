"""``tf.function`` without AutoGraph, falling back to AutoGraph only for code that needs it.

AutoGraph rewrites the source of every Python function a trace enters (the model, every
layer, the loss, the post-processing) — about 70 % of the time a trace takes: the detect
function traces in 1.0 s instead of 3.5 s, the first training epoch of a small run takes
2.8-4.6 s instead of 11-11.7 s, on the 2-core machine. utod's own graph code uses explicit
``tf.while_loop`` and no tensor-dependent Python control flow, so it traces to the same
graph without it. A plugin whose ``call`` does need AutoGraph (a Python ``if`` on a tensor)
makes the first trace raise ``OperatorNotAllowedInGraphError``; the function is then traced
again with AutoGraph, once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class GraphFunction:
    """``tf.function(fn, autograph=False)`` with a one-time AutoGraph fallback; ``traces``
    counts the traces of the function in use."""

    def __init__(self, fn: Callable[..., Any], **tf_function_kwargs: Any) -> None:
        from utod._keras import tf

        self._tf = tf
        self._py = fn
        self._kwargs = tf_function_kwargs
        self._fn = tf.function(fn, autograph=False, **tf_function_kwargs)
        self.autograph = False

    @property
    def traces(self) -> int:
        return int(self._fn.experimental_get_tracing_count())

    def experimental_get_tracing_count(self) -> int:
        return self.traces

    def __getattr__(self, name: str) -> Any:  # the rest of tf.function's API
        if name.startswith("__") or name in ("_fn", "_tf", "_py", "_kwargs"):
            raise AttributeError(name)
        return getattr(self._fn, name)

    def __call__(self, *args: Any) -> Any:
        if self.autograph or self.traces:
            return self._fn(*args)
        try:
            return self._fn(*args)
        except TypeError:  # OperatorNotAllowedInGraphError: Python control flow on a tensor
            self._fn = self._tf.function(self._py, **self._kwargs)
            self.autograph = True
            return self._fn(*args)
