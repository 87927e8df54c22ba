"""Finiteness checks: nothing NaN/Inf may become a score, a checkpoint, a train state that is
offered for resuming, or an export.

``nonfinite_variables`` checks TensorFlow variables on the device with one fused reduction
per variable (a tiny model's few hundred variables cost well under a millisecond each);
``finite_metrics`` checks a metrics dict. TensorFlow is imported only by the variable check.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any


def nonfinite_variables(variables: Iterable[Any]) -> list[str]:
    """Names of the floating-point variables that hold NaN or Inf (empty: all finite)."""
    from utod._keras import tf

    bad = []
    for v in variables:
        if not v.dtype.is_floating:
            continue
        if not bool(tf.reduce_all(tf.math.is_finite(v)).numpy()):
            bad.append(v.name)
    return bad


def finite_metrics(metrics: Mapping[str, Any], keys: Iterable[str] | None = None) -> bool:
    """Whether every numeric value of ``metrics`` (or of ``keys``) is finite."""
    items = metrics.items() if keys is None else ((k, metrics.get(k)) for k in keys)
    for _, v in items:
        if isinstance(v, bool) or v is None:
            continue
        if isinstance(v, (int, float)) and not math.isfinite(float(v)):
            return False
    return True
