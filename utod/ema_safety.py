"""EMA sizing for short runs: the decay from ``--ema-window`` and the small-data warning.

The EMA after ``T`` updates is ``e_T = P_T * w_0 + sum_s c_s * w_s`` with ``w_0`` the initial
(random) weights. With the per-update decay ``d_u`` (u = 1..T, the update count after the
increment, as utod's EMA counts) the weight of the initial weights is::

    P_T = prod_{u=1..T} d_u,   d_u = min(decay, (1 + u) / (10 + u))   (warm-up, utod's default)
                               d_u = decay                             (--no-ema-warmup: P_T = decay^T)

The seed's Keras EMA has no warm-up: 0.9999 over 1,000 steps keeps 0.9999^1000 = 90.5 % of
the initial weights in the saved model. With the warm-up ``P_T`` is tiny, but a decay the
run never reaches does nothing: the warm-up cap ``(1+T)/(10+T)`` still limits it at the end,
and the EMA averages only its last ``~1/(1-d_T)`` steps. No TensorFlow here.
"""

from __future__ import annotations

import math

INIT_SHARE_WARN = 0.5
"""Warn when more than this share of the saved EMA is still the initial weights."""


def warmup_decay(decay: float, update: int, warmup: bool = True) -> float:
    """``d_u`` of update ``u`` (1-based)."""
    return min(float(decay), (1.0 + update) / (10.0 + update)) if warmup else float(decay)


def init_weight_share(decay: float, steps: int, warmup: bool = True) -> float:
    """``P_T``: the weight of the initial weights in the EMA after ``steps`` updates."""
    steps = max(0, int(steps))
    if not warmup:
        return max(0.0, float(decay)) ** steps
    log_p = 0.0
    for u in range(1, steps + 1):
        d = warmup_decay(decay, u, True)
        if d <= 0.0:
            return 0.0
        log_p += math.log(d)
        if log_p < -50.0:
            return 0.0
    return math.exp(log_p)


def decay_from_window(window: float, total_steps: int) -> float:
    """``--ema-window f``: decay ``1 - 1/(f * total_steps)`` (the EMA's time constant is ``f`` of
    the run), kept in [0, 0.99999]."""
    horizon = max(1.0, float(window) * max(1, int(total_steps)))
    return min(0.99999, max(0.0, 1.0 - 1.0 / horizon))


def ema_decay_for(cfg, total_steps: int) -> float:
    """The decay the trainer uses: from ``cfg.ema_window`` when > 0, else ``cfg.ema_decay``."""
    if float(getattr(cfg, "ema_window", 0.0) or 0.0) > 0:
        return decay_from_window(cfg.ema_window, total_steps)
    return float(cfg.ema_decay)


def ema_messages(decay: float, total_steps: int, warmup: bool = True) -> list[str]:
    """Warnings/notes about an EMA of ``decay`` over a run of ``total_steps`` updates."""
    out: list[str] = []
    share = init_weight_share(decay, total_steps, warmup)
    if share > INIT_SHARE_WARN:
        formula = "decay^steps" if not warmup else "prod min(decay, (1+u)/(10+u))"
        out.append(
            f"WARNING: EMA decay {decay:g} over {total_steps} steps: the saved weights would still be "
            f"{share:.0%} initial weights ({formula}). Use --ema-window 0.05 (decay from the run length), "
            f"a lower --ema-decay, more epochs, or --no-use-ema."
        )
    elif warmup and total_steps > 0:
        cap = warmup_decay(1.0, total_steps, True)
        if decay > cap:
            out.append(
                f"Note: EMA decay {decay:g} is never reached in {total_steps} steps (the warm-up caps it at "
                f"{cap:.4f} at the end), so the EMA averages about the last {1.0 / (1.0 - cap):.0f} steps; "
                f"--ema-window sets the decay from the run length."
            )
    return out
