"""Anchor utilities: auto-anchors by clustering label box sizes (docs/loss.md §7.2), their
quality measure, and parsing of ``--anchors`` strings. numpy only (no TensorFlow).

Anchors are float32 ``[k, 2]`` arrays of normalised ``(w, h)`` (fractions of the network
input size), sorted by area ascending.
"""

from __future__ import annotations

import json
import re

import numpy as np

from utod.errors import ConfigError

ALGORITHMS = ("kmeans", "logkmeans", "stratified", "stratified_large", "sml_fixed")


def wh_iou(wh: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Shape-only IoU of boxes ``[N, 2]`` against centres ``[K, 2]`` (aligned corners) -> ``[N, K]``.

    ``min(w)·min(h) / (w·h + cw·ch − min(w)·min(h) + 1e-9)``.
    """
    inter = np.minimum(wh[:, None, 0], centres[None, :, 0]) * np.minimum(wh[:, None, 1], centres[None, :, 1])
    union = wh[:, None, 0] * wh[:, None, 1] + centres[None, :, 0] * centres[None, :, 1] - inter + 1e-9
    return inter / union


def _sort_by_area(centres: np.ndarray) -> np.ndarray:
    order = np.argsort(centres[:, 0] * centres[:, 1], kind="stable")
    return centres[order].astype(np.float32)


def _lloyd(points: np.ndarray, centres: np.ndarray, iterations: int, assign) -> np.ndarray:
    """Lloyd iterations: ``assign(points, centres) -> [N]`` cluster ids, mean update, empty
    clusters keep their centre, stop early when ``np.allclose(new, old)``."""
    for _ in range(iterations):
        ids = assign(points, centres)
        new = centres.copy()
        for c in range(len(centres)):
            members = points[ids == c]
            if len(members):
                new[c] = members.mean(axis=0)
        if np.allclose(new, centres):
            centres = new
            break
        centres = new
    return centres


def _iou_assign(points: np.ndarray, centres: np.ndarray) -> np.ndarray:
    return np.argmax(wh_iou(points, centres), axis=1)


def _euclid_assign(points: np.ndarray, centres: np.ndarray) -> np.ndarray:
    return np.argmin(((points[:, None, :] - centres[None, :, :]) ** 2).sum(-1), axis=1)


def _bin_medians(wh: np.ndarray, edges: list[int]) -> np.ndarray:
    order = np.argsort(wh[:, 0] * wh[:, 1], kind="stable")
    s = wh[order]
    return np.stack([np.median(s[a:b], axis=0) for a, b in zip(edges[:-1], edges[1:])])


def _large_bias_edges(n: int, k: int, bias: float) -> list[int]:
    """Bin edges ``round(n·(i/k)^bias)``, strictly increasing, each later bin keeps >= 1 box."""
    bias = bias if bias > 0 else 1.0
    edges = [0]
    for i in range(1, k):
        e = int(round(n * (i / k) ** bias))
        e = max(e, edges[-1] + 1)
        e = min(e, n - (k - i))
        edges.append(e)
    edges.append(n)
    return edges


def kmeans_anchors(wh: np.ndarray, k: int, *, alg: str = "kmeans", iterations: int = 20, seed: int = 0,
                   bias: float = 0.2) -> np.ndarray:
    """Cluster label sizes ``wh`` float ``[N, 2]`` (normalised w, h) into ``k`` anchors.

    Reproduces the PyTorch reference (docs/loss.md §7.2): ``rng = default_rng(seed)``; if ``N < k`` the
    data are padded with ``rng.choice(N, k - N)`` rows; then

    * ``kmeans``: centres ``= wh[rng.choice(N, k, replace=False)]``, up to ``iterations`` Lloyd
      steps assigning each box to the centre of highest shape IoU, mean update;
    * ``logkmeans``: the same initialisation, Euclidean k-means on ``log(clip(wh, 1e-6))``;
    * ``stratified``: boxes sorted by area, ``array_split`` into k bins, per-bin median;
    * ``stratified_large``: bin edges at ``round(N·(i/k)^bias)`` (more, smaller bins for the
      large boxes when ``bias < 1``), per-bin median;
    * ``sml_fixed``: UHD's small/medium/large anchors, see :func:`sml_fixed_anchors`.

    Returns float32 ``[k, 2]`` sorted by area; ``k`` rows of zeros when no box has w, h > 0.
    """
    if alg not in ALGORITHMS:
        raise ConfigError(f"unknown auto-anchor algorithm '{alg}'; choose one of {', '.join(ALGORITHMS)}")
    if int(k) < 1:
        raise ConfigError(f"the number of anchors must be >= 1, got {k}")
    k = int(k)
    wh = np.asarray(wh, dtype=np.float32).reshape(-1, 2)
    wh = wh[(wh[:, 0] > 0) & (wh[:, 1] > 0)]
    if len(wh) == 0:
        return np.zeros((k, 2), np.float32)
    rng = np.random.default_rng(seed)
    if len(wh) < k:
        wh = np.concatenate([wh, wh[rng.choice(len(wh), k - len(wh), replace=True)]], axis=0)
    n = len(wh)

    if alg == "kmeans":
        centres = wh[rng.choice(n, k, replace=False)].copy()
        centres = _lloyd(wh, centres, iterations, _iou_assign)
    elif alg == "logkmeans":
        logs = np.log(np.clip(wh, 1e-6, None))
        centres = logs[rng.choice(n, k, replace=False)].copy()
        centres = np.exp(_lloyd(logs, centres, iterations, _euclid_assign))
    elif alg == "stratified":
        sizes = [len(part) for part in np.array_split(np.arange(n), k)]
        centres = _bin_medians(wh, list(np.concatenate([[0], np.cumsum(sizes)]).astype(int)))
    elif alg == "stratified_large":
        centres = _bin_medians(wh, _large_bias_edges(n, k, float(bias)))
    else:
        centres = _sml_fixed(wh, k, iterations, rng)
    return _sort_by_area(np.asarray(centres))


def _allocate(extra: int, sizes: list[int]) -> list[int]:
    """Share ``extra`` anchors in proportion to ``sizes``: floors first, then one at a time to the
    group with the largest (raw - allocated), the first on ties."""
    total = float(sum(sizes))
    raw = [extra * n / total for n in sizes]
    alloc = [int(np.floor(r)) for r in raw]
    while sum(alloc) < extra:
        gaps = [r - a for r, a in zip(raw, alloc)]
        alloc[int(np.argmax(gaps))] += 1
    return alloc


def _sml_fixed(wh: np.ndarray, k: int, iterations: int, rng: np.random.Generator) -> np.ndarray:
    area = wh[:, 0] * wh[:, 1]
    q1, q2 = np.quantile(area, [1.0 / 3.0, 2.0 / 3.0])
    groups = [wh[area <= q1], wh[(area > q1) & (area <= q2)], wh[area > q2]]
    groups = [g if len(g) else wh for g in groups]  # an empty group is replaced by all boxes
    if k == 1:
        return np.median(wh, axis=0, keepdims=True)
    if k == 2:
        groups = [groups[0], groups[2]]
    fixed = [np.median(g, axis=0) for g in groups]
    extra = _allocate(k - len(fixed), [len(g) for g in groups])
    centres = list(fixed)
    for g, n_extra in zip(groups, extra):
        if n_extra <= 0:
            continue
        if len(g) < n_extra:
            g = np.concatenate([g, g[rng.choice(len(g), n_extra - len(g), replace=True)]], axis=0)
        init = g[rng.choice(len(g), n_extra, replace=False)].copy()
        centres.extend(_lloyd(g, init, iterations, _iou_assign))
    return np.stack(centres)


def sml_fixed_anchors(wh: np.ndarray, k: int, *, iterations: int = 20, seed: int = 0) -> np.ndarray:
    """UHD's ``sml_fixed`` auto-anchors (docs/recipe.md): split the boxes by area at the 1/3 and
    2/3 quantiles into small / medium / large; fixed anchors are per-coordinate medians
    (k=1: of all boxes; k=2: small and large; k>=3: all three groups); the remaining k - #fixed
    are shared among the groups in proportion to their size and placed by shape-IoU k-means
    inside each group. float32 [k, 2], sorted by area."""
    return kmeans_anchors(wh, k, alg="sml_fixed", iterations=iterations, seed=seed)


def plot_anchors(wh: np.ndarray, anchors: np.ndarray, path, title: str = "") -> bool:
    """Write a 2x2 figure of label (w, h) 2-D histograms (32 and 64 bins; linear and log colour
    scale) with the anchors as red crosses. ``wh`` [N, 2] and ``anchors`` [K, 2] normalised.
    Returns False (nothing written) when there are no boxes."""
    wh = np.asarray(wh, np.float64).reshape(-1, 2)
    anchors = np.asarray(anchors, np.float64).reshape(-1, 2)
    if len(wh) == 0:
        return False
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm

    top = max(float(wh.max()), float(anchors.max()) if len(anchors) else 0.0)
    lim = 1.0 if top <= 1.0 else 1.05 * top
    fig, axes = plt.subplots(2, 2, figsize=(8.5, 8), dpi=100)
    for row, log_scale in enumerate((False, True)):
        for col, bins in enumerate((32, 64)):
            ax = axes[row][col]
            _, _, _, img = ax.hist2d(wh[:, 0], wh[:, 1], bins=bins, range=[[0, lim], [0, lim]], cmin=1,
                                     norm=LogNorm() if log_scale else None, cmap="viridis")
            fig.colorbar(img, ax=ax)
            ax.scatter(anchors[:, 0], anchors[:, 1], marker="x", c="red", s=60, label="anchors")
            ax.set_xlim(0, lim)
            ax.set_ylim(0, lim)
            ax.set_aspect("equal")
            ax.set_xlabel("box width (fraction of input)")
            ax.set_ylabel("box height")
            ax.set_title(f"{bins} bins, {'log' if log_scale else 'linear'} colour")
    axes[0][0].legend(loc="upper left")
    fig.suptitle(title or f"Label w/h and {len(anchors)} anchors ({len(wh)} boxes)")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


def mean_best_iou(wh: np.ndarray, anchors: np.ndarray) -> float:
    """Mean over boxes ``[N, 2]`` of the best shape IoU with any anchor ``[K, 2]`` (0.0 for no box)."""
    wh = np.asarray(wh, dtype=np.float64).reshape(-1, 2)
    anchors = np.asarray(anchors, dtype=np.float64).reshape(-1, 2)
    if len(wh) == 0 or len(anchors) == 0:
        return 0.0
    return float(wh_iou(wh, anchors).max(axis=1).mean())


def _pair(text: str, source: str) -> list[float]:
    parts = [p for p in re.split(r"\s*,\s*", text.strip()) if p != ""]
    if len(parts) != 2:
        raise ConfigError(f"bad anchor pair '{text.strip()}' in {source!r}: expected 'w,h'")
    try:
        w, h = float(parts[0]), float(parts[1])
    except ValueError:
        raise ConfigError(f"bad anchor pair '{text.strip()}' in {source!r}: not two numbers") from None
    if not (np.isfinite(w) and np.isfinite(h) and w > 0 and h > 0):
        raise ConfigError(f"bad anchor pair '{text.strip()}' in {source!r}: w and h must be positive")
    return [w, h]


def parse_anchors(text: str) -> list[list[float]]:
    """Parse an anchor list: ``"w,h;w,h"`` (seed), ``"[[w,h],...]"`` (JSON) or ``"w,h w,h"``
    (PyTorch reference). Values are normalised widths and heights; a malformed pair raises
    ``ConfigError`` naming it (the reference silently skipped such pairs)."""
    source = text
    text = (text or "").strip()
    if not text:
        raise ConfigError("empty anchor list")
    if text.startswith("["):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"anchor list {source!r} is not valid JSON: {exc}") from None
        if not isinstance(data, list) or not data:
            raise ConfigError(f"anchor list {source!r} must be a non-empty list of [w, h] pairs")
        out = []
        for item in data:
            if not isinstance(item, (list, tuple)) or len(item) != 2 or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in item
            ):
                raise ConfigError(f"bad anchor pair {json.dumps(item)} in {source!r}: expected [w, h]")
            out.append(_pair(f"{item[0]},{item[1]}", source))
        return out
    pairs = text.split(";") if ";" in text else text.split()
    pairs = [p for p in pairs if p.strip()]
    return [_pair(p, source) for p in pairs]
