"""Contract test kit: check that a component does what its hook promises.

Run it from a plugin's own tests (it works with any test runner; a broken contract raises
:class:`ContractError`, an ``AssertionError``)::

    from utod.sdk.testing import check_component
    from utod.registry import build_registry
    from my_pkg import plugin

    def test_my_components_keep_their_contracts():
        reg = build_registry(load_entry_points=False, plugins=[(plugin, "mine", "my-pkg", "1.0")])
        for kind in ("iou_loss", "augmentation"):
            for name in reg.names(kind):
                check_component(reg, kind, name)

or call one check on an object you built yourself (``check_iou_loss(DIoU())``). What is
checked, per kind (the hooks in ``utod.hookspecs`` state the contracts):

* every kind: the factory builds with its declared default options, and the object satisfies
  the kind's Protocol (``utod.sdk.PROTOCOL_FOR_KIND``);
* ``assigner``: returns an ``Assignment`` of float32 ``[B, A, H, W]`` / ``[..., 4]`` /
  ``[..., C]`` tensors, with and without classes; positives are 0/1, class targets in [0, 1]
  and zero at negatives; an image without boxes (and a batch without any) gets no positive;
  targets carry no gradient; it runs inside ``tf.function`` and does not retrace for new
  values of the same shapes;
* ``iou_loss``: float32 ``[...]`` output that broadcasts (``[N, 1, 4]`` vs ``[1, M, 4]``);
  identical boxes give ~1, moved boxes less, nothing above 1; finite, non-zero gradient
  w.r.t. ``pred``; same values inside ``tf.function``;
* ``cls_loss``: a finite float32 scalar with a finite gradient w.r.t. the logits, with and
  without positives; same value inside ``tf.function``;
* ``head``: a layer mapping ``[B, h, w, Cin]`` to ``[B, h, w, A * (5 + Q + C)]`` float32 (with
  classes and with ``C = 0``), declaring ``has_quality``, ``wh_scale`` ``[A, 2]`` and a valid
  ``default_score_mode``, with a JSON-serialisable ``get_config()``; same output in
  ``tf.function``;
* ``resize``: uint8 ``[H, W, 3]`` out for up- and down-scaling and non-square sizes, input
  unchanged, deterministic, and **thread-safe**: many threads at once give the results of
  one thread;
* ``dataset_format``: declares ``name``, ``title``, ``markers``, ``priority``; ``detect()``
  returns a bool and never raises (an empty folder, a binary file, a missing path);
* ``augmentation``: a ``Sample`` with a float32 ``[H, W, 3]`` image in [0, 1], float32 ``[N, 4]``
  finite boxes with ``w, h >= 0`` and int32 ``[N]`` labels; input arrays unchanged; works
  with ``pool=None``; the same ``rng`` seed gives the same result (every random number
  comes from ``rng``); and **thread-safe**: samples augmented by many threads at once equal
  the same samples augmented one after the other.

The data pipeline calls resize backends and augmentations from worker threads, several
samples at once; that is why thread safety is part of their contract.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from utod.components import PROTOCOL_FOR_KIND, Assignment, HeadContext, Sample

SCORE_MODES = ("obj_quality_cls", "quality_cls", "obj_cls")
THREADS = 4


class ContractError(AssertionError):
    """A component breaks its hook's contract; the message names the component and the rule."""


def _require(ok: bool, label: str, rule: str) -> None:
    if not ok:
        raise ContractError(f"{label}: {rule}")


# ---------------------------------------------------------------------------- helpers
def _rng_boxes(rng: np.random.Generator, n: int, lo: float = 0.08, hi: float = 0.6) -> np.ndarray:
    """``n`` valid normalised cxcywh boxes lying inside the image."""
    wh = rng.uniform(lo, hi, (n, 2))
    c = rng.uniform(wh / 2, 1 - wh / 2)
    return np.concatenate([c, wh], axis=1).astype(np.float32)


def _equal_samples(a: Sample, b: Sample) -> bool:
    return (np.array_equal(a.image, b.image) and np.array_equal(a.boxes, b.boxes)
            and np.array_equal(a.labels, b.labels))


class _Pool:
    """A partner source over fixed samples (thread-safe: read-only)."""

    def __init__(self, samples: list[Sample]) -> None:
        self._samples = samples

    def draw(self, rng: np.random.Generator) -> Sample:
        s = self._samples[int(rng.integers(len(self._samples)))]
        return Sample(s.image.copy(), s.boxes.copy(), s.labels.copy())


def _samples(height: int, width: int, count: int, seed: int) -> list[Sample]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(count):
        # smooth-ish content so blurs, CLAHE and compression have something to act on
        base = rng.random((height // 4 + 1, width // 4 + 1, 3)).astype(np.float32)
        image = np.kron(base, np.ones((4, 4, 1), np.float32))[:height, :width]
        image = np.clip(image + rng.normal(0, 0.05, image.shape), 0, 1).astype(np.float32)
        n = i % 4  # includes a sample without boxes
        out.append(Sample(image, _rng_boxes(rng, n), rng.integers(0, 5, n).astype(np.int32)))
    return out


# ---------------------------------------------------------------------------- per kind
def check_assigner(assigner: Any, label: str = "assigner") -> None:
    """See the module docstring. ``assigner`` is the built object."""
    from utod._keras import tf

    _require(callable(assigner), label, "the built object must be callable")
    b, a, h, w, m = 2, 3, 4, 4, 5
    anchors = tf.constant([[0.15, 0.2], [0.3, 0.35], [0.55, 0.6]], tf.float32)

    def inputs(num_classes: int, seed: int):
        r = np.random.default_rng(seed)
        pred = tf.constant(np.concatenate([r.uniform(0.1, 0.9, (b, a, h, w, 2)), r.uniform(0.05, 0.6, (b, a, h, w, 2))],
                                          -1).astype(np.float32))
        cls = tf.constant(r.normal(0, 1, (b, a, h, w, num_classes)).astype(np.float32))
        obj = tf.constant(r.normal(0, 1, (b, a, h, w)).astype(np.float32))
        gt = np.zeros((b, m, 4), np.float32)
        gt[0, :3] = _rng_boxes(r, 3)  # image 0: three boxes, image 1: none
        labels = -np.ones((b, m), np.int32)
        labels[0, :3] = r.integers(0, max(num_classes, 1), 3) if num_classes else 0
        mask = np.zeros((b, m), bool)
        mask[0, :3] = True
        return pred, cls, obj, tf.constant(gt), tf.constant(labels), tf.constant(mask)

    for num_classes, has_quality in ((3, False), (0, True)):
        spec = [tf.TensorSpec([b, a, h, w, 4], tf.float32), tf.TensorSpec([b, a, h, w, num_classes], tf.float32),
                tf.TensorSpec([b, a, h, w], tf.float32), tf.TensorSpec([b, m, 4], tf.float32),
                tf.TensorSpec([b, m], tf.int32), tf.TensorSpec([b, m], tf.bool), tf.TensorSpec([a, 2], tf.float32)]

        def call(p, c, o, g, lab, msk, anc, _nc=num_classes, _hq=has_quality):
            out = assigner(p, c, o, g, lab, msk, anc, _nc, _hq)
            _require(isinstance(out, Assignment), label, f"must return utod.components.Assignment, got {type(out)}")
            return out

        compiled = tf.function(call, input_signature=spec)
        where = f"{label} (C={num_classes}, quality={has_quality})"
        for seed in (1, 2):
            pred, cls, obj, gt, labels, mask = inputs(num_classes, seed)
            out = compiled(pred, cls, obj, gt, labels, mask, anchors)
            pos, box, tcls = (np.asarray(t) for t in out)
            _require(pos.shape == (b, a, h, w) and box.shape == (b, a, h, w, 4)
                     and tcls.shape == (b, a, h, w, num_classes), where,
                     f"shapes pos {pos.shape}, box {box.shape}, cls {tcls.shape}; expected [B,A,H,W], [..,4], [..,C]")
            _require(all(t.dtype == np.float32 for t in (pos, box, tcls)), where, "targets must be float32")
            _require(bool(np.isin(pos, (0.0, 1.0)).all()), where, "pos_mask must be 0 or 1")
            _require(bool(np.isfinite(box).all() and np.isfinite(tcls).all()), where, "targets must be finite")
            _require(bool(((tcls >= 0) & (tcls <= 1)).all()), where, "cls_targets must lie in [0, 1]")
            _require(bool((tcls[pos < 0.5] == 0).all()), where, "cls_targets must be 0 at negatives")
            _require(pos[0].sum() >= 1, where, "an image with boxes got no positive")
            _require(pos[1].sum() == 0, where, "an image without boxes got positives")
            # a batch without any box
            empty = compiled(pred, cls, obj, tf.zeros_like(gt), -tf.ones_like(labels), tf.zeros_like(mask), anchors)
            _require(float(np.asarray(empty.pos_mask).sum()) == 0.0, where, "a batch without boxes got positives")
        traces = compiled.experimental_get_tracing_count()
        _require(traces == 1, where, f"traced {traces} times for new values of the same shapes (must be once)")
        # no gradient through the targets
        pred_v = tf.Variable(pred)
        with tf.GradientTape() as tape:
            out = assigner(pred_v, cls, obj, gt, labels, mask, anchors, num_classes, has_quality)
            total = tf.reduce_sum(out.pos_mask) + tf.reduce_sum(out.box_targets) + tf.reduce_sum(out.cls_targets)
        grad = tape.gradient(total, pred_v)
        _require(grad is None or float(tf.reduce_max(tf.abs(grad))) == 0.0, where,
                 "targets carry gradient to pred_boxes (wrap them in tf.stop_gradient)")


def check_iou_loss(similarity: Any, label: str = "iou_loss") -> None:
    """See the module docstring. ``similarity`` is the built object."""
    from utod._keras import tf

    _require(callable(similarity), label, "the built object must be callable")
    rng = np.random.default_rng(0)
    boxes = tf.constant(_rng_boxes(rng, 6, 0.1, 0.4))
    moved = boxes + tf.constant([[0.05, -0.03, 0.02, 0.01]])
    same = similarity(boxes, boxes)
    _require(tuple(same.shape) == (6,) and same.dtype == tf.float32, label,
             f"pred/target [6, 4] must give float32 [6], got {same.dtype.name} {tuple(same.shape)}")
    np_same, np_moved = same.numpy(), similarity(moved, boxes).numpy()
    _require(bool(np.allclose(np_same, 1.0, atol=1e-4)), label, f"identical boxes must give ~1, got {np_same}")
    _require(bool((np_moved < np_same).all()), label, "moved boxes must score lower than identical ones")
    _require(bool((np_moved <= 1.0 + 1e-6).all() and np.isfinite(np_moved).all()), label, "values must be finite, <= 1")
    grid = similarity(boxes[:, None, :], boxes[None, :4, :])
    _require(tuple(grid.shape) == (6, 4), label, f"[6, 1, 4] vs [1, 4, 4] must broadcast to [6, 4], got {grid.shape}")
    pred = tf.Variable(moved)
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(1.0 - similarity(pred, boxes))
    grad = tape.gradient(loss, pred)
    _require(grad is not None and bool(np.isfinite(grad.numpy()).all()) and float(tf.reduce_sum(tf.abs(grad))) > 0,
             label, "must be differentiable w.r.t. pred (finite, non-zero gradient)")
    compiled = tf.function(lambda p, t: similarity(p, t))(moved, boxes).numpy()
    _require(bool(np.allclose(compiled, np_moved, rtol=1e-5, atol=1e-6)), label, "tf.function gives other values")


def check_cls_loss(loss_fn: Any, label: str = "cls_loss") -> None:
    """See the module docstring. ``loss_fn`` is the built object."""
    from utod._keras import tf

    _require(callable(loss_fn), label, "the built object must be callable")
    rng = np.random.default_rng(0)
    shape = (2, 3, 4, 4, 3)
    logits = tf.Variable(rng.normal(0, 2, shape).astype(np.float32))
    pos = (rng.random(shape[:-1]) < 0.1).astype(np.float32)
    pos[0, 0, 0, 0] = 1.0
    targets = (np.eye(3, dtype=np.float32)[rng.integers(0, 3, shape[:-1])] * rng.uniform(0.3, 1, shape[:-1] + (1,))
               * pos[..., None]).astype(np.float32)
    for p, t, case in ((pos, targets, "with positives"), (np.zeros_like(pos), np.zeros_like(targets), "no positive")):
        with tf.GradientTape() as tape:
            value = loss_fn(logits, tf.constant(t), tf.constant(p))
        _require(tuple(value.shape) == () and value.dtype == tf.float32, label,
                 f"{case}: must return a float32 scalar, got {value.dtype.name} {tuple(value.shape)}")
        _require(bool(np.isfinite(value.numpy())), label, f"{case}: loss is not finite")
        grad = tape.gradient(value, logits)
        _require(grad is None or bool(np.isfinite(grad.numpy()).all()), label, f"{case}: gradient is not finite")
        if case == "with positives":
            _require(grad is not None and float(tf.reduce_sum(tf.abs(grad))) > 0, label,
                     "must be differentiable w.r.t. the logits")
            compiled = tf.function(lambda x, y, z: loss_fn(x, y, z))(logits, tf.constant(t), tf.constant(p))
            _require(bool(np.allclose(compiled.numpy(), value.numpy(), rtol=1e-5, atol=1e-7)), label,
                     "tf.function gives another value")


def check_head(factory: Callable[..., Any], options: Mapping[str, Any] | None = None, label: str = "head") -> None:
    """See the module docstring. ``factory(context, **options)`` builds the head."""
    from utod._keras import keras, tf

    for num_classes in (2, 0):
        where = f"{label} (C={num_classes})"
        context = HeadContext(num_anchors=3, num_classes=num_classes, in_channels=16, activation="relu",
                              use_batchnorm=True)
        head = factory(context, **dict(options or {}))
        _require(isinstance(head, keras.layers.Layer), where, f"must be a tf-keras Layer, got {type(head)}")
        features = tf.constant(np.random.default_rng(0).normal(0, 1, (2, 4, 4, 16)).astype(np.float32))
        raw = head(features, training=False)
        _require(isinstance(getattr(head, "has_quality", None), bool), where, "must declare has_quality (bool)")
        d = 5 + int(head.has_quality) + num_classes
        _require(tuple(raw.shape) == (2, 4, 4, 3 * d) and raw.dtype == tf.float32, where,
                 f"raw map must be float32 [B, h, w, A*(5+Q+C)] = (2, 4, 4, {3 * d}), got {raw.dtype.name} "
                 f"{tuple(raw.shape)}")
        _require(bool(np.isfinite(raw.numpy()).all()), where, "raw map is not finite")
        wh = np.asarray(head.wh_scale)
        _require(wh.shape == (3, 2), where, f"wh_scale must be [A, 2], got {wh.shape}")
        mode = getattr(head, "default_score_mode", None)
        _require(mode in SCORE_MODES, where, f"default_score_mode must be one of {SCORE_MODES}, got {mode!r}")
        config = head.get_config()
        _require(isinstance(config, dict), where, "get_config() must return a dict")
        try:
            json.dumps(config)
        except TypeError as exc:
            raise ContractError(f"{where}: get_config() must be JSON-serialisable ({exc})") from None
        compiled = tf.function(lambda x, layer=head: layer(x, training=False))(features)
        _require(bool(np.allclose(compiled.numpy(), raw.numpy(), rtol=1e-5, atol=1e-5)), where,
                 "tf.function gives another raw map")


def check_resize(resize: Any, label: str = "resize") -> None:
    """See the module docstring. ``resize`` is the built object."""
    _require(callable(resize), label, "the built object must be callable")
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in ((37, 53), (20, 20), (64, 48))]
    sizes = [(24, 40), (64, 64), (32, 16), (20, 20)]
    jobs = [(i, s) for i in range(len(images)) for s in sizes]
    copies = [im.copy() for im in images]

    def run(job):
        i, size = job
        return resize(images[i], size)

    serial = [run(j) for j in jobs]
    for (i, size), out in zip(jobs, serial):
        out = np.asarray(out)
        _require(out.dtype == np.uint8 and out.shape == (size[0], size[1], 3), label,
                 f"{images[i].shape} -> {size} must give uint8 {(size[0], size[1], 3)}, got {out.dtype} {out.shape}")
    _require(all(np.array_equal(a, b) for a, b in zip(images, copies)), label, "must not modify its input image")
    _require(all(np.array_equal(a, run(j)) for a, j in zip(serial, jobs)), label, "must be deterministic")
    with ThreadPoolExecutor(THREADS) as pool:
        threaded = list(pool.map(run, jobs * 3))
    _require(all(np.array_equal(a, b) for a, b in zip(serial * 3, threaded)), label,
             "is not thread-safe: results from worker threads differ from one thread's")


def check_augmentation(transform: Any, label: str = "augmentation") -> None:
    """See the module docstring. ``transform`` is the built object (utod applies it once per
    call; ``prob`` is the pipeline's gate, so build it with the options you want checked)."""
    _require(callable(transform), label, "the built object must be callable")
    height, width = 48, 64
    samples = _samples(height, width, 8, seed=1)
    pool = _Pool(_samples(height, width, 4, seed=2))
    copies = [Sample(s.image.copy(), s.boxes.copy(), s.labels.copy()) for s in samples]

    def run(i: int, with_pool: bool = True) -> Sample:
        return transform(samples[i], np.random.default_rng((7, i)), pool if with_pool else None)

    serial = [run(i) for i in range(len(samples))]
    for i, out in enumerate(serial):
        where = f"{label} (sample {i}, {len(samples[i].boxes)} boxes)"
        _require(isinstance(out, Sample), where, f"must return utod.components.Sample, got {type(out)}")
        image, boxes, labels = np.asarray(out.image), np.asarray(out.boxes), np.asarray(out.labels)
        _require(image.dtype == np.float32 and image.shape == (height, width, 3), where,
                 f"image must stay float32 {(height, width, 3)}, got {image.dtype} {image.shape}")
        _require(bool(np.isfinite(image).all()) and image.min() >= 0.0 and image.max() <= 1.0, where,
                 "image values must be finite and in [0, 1]")
        _require(boxes.dtype == np.float32 and boxes.ndim == 2 and boxes.shape[1] == 4, where,
                 f"boxes must be float32 [N, 4], got {boxes.dtype} {boxes.shape}")
        _require(labels.dtype == np.int32 and labels.shape == (len(boxes),), where,
                 f"labels must be int32 [N] matching the boxes, got {labels.dtype} {labels.shape}")
        _require(bool(np.isfinite(boxes).all()) and bool((boxes[:, 2:] >= 0).all()), where,
                 "boxes must be finite with w, h >= 0")
    _require(all(_equal_samples(a, b) for a, b in zip(samples, copies)), label,
             "must not modify the input sample's arrays (they may be shared, e.g. the image cache)")
    for i in range(len(samples)):
        out = run(i, with_pool=False)
        _require(isinstance(out, Sample) and np.asarray(out.image).shape == (height, width, 3), label,
                 "must work with pool=None (no partner source): return a valid Sample")
    _require(all(_equal_samples(a, run(i)) for i, a in enumerate(serial)), label,
             "the same rng seed must give the same result (draw every random number from rng)")
    with ThreadPoolExecutor(THREADS) as executor:
        threaded = list(executor.map(run, list(range(len(samples))) * 3))
    _require(all(_equal_samples(a, b) for a, b in zip(serial * 3, threaded)), label,
             "is not thread-safe: samples augmented by worker threads differ from one thread's")


def check_dataset_format(layout: Any, label: str = "dataset_format") -> None:
    """See the module docstring. ``layout`` is the built object."""
    import tempfile
    from pathlib import Path

    for attr, kind in (("name", str), ("title", str), ("markers", str), ("priority", int)):
        _require(isinstance(getattr(layout, attr, None), kind), label, f"must declare {attr} ({kind.__name__})")
    _require(callable(getattr(layout, "detect", None)) and callable(getattr(layout, "open", None)), label,
             "must provide detect(path) and open(path)")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        stray = root / "notes.bin"
        stray.write_bytes(bytes(range(256)))
        empty = root / "empty"
        empty.mkdir()
        for path in (empty, stray, root / "missing"):
            try:
                found = layout.detect(path)
            except Exception as exc:
                raise ContractError(f"{label}: detect({path.name}) must not raise, got {type(exc).__name__}: {exc}") \
                    from None
            _require(isinstance(found, bool), label, f"detect() must return a bool, got {type(found).__name__}")


# ---------------------------------------------------------------------------- by registry
@dataclass
class ContractResult:
    """One component checked by :func:`check_registry`."""

    kind: str
    name: str
    provider: str
    error: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.error is None


def _options_for(kind: str, params: Mapping[str, Any]) -> dict[str, Any]:
    # augmentations: make sure the op fires when utod's pipeline would gate it
    return {"prob": 1.0} if kind == "augmentation" and "prob" in params else {}


def check_component(registry: Any, kind: str, name: str, options: Mapping[str, Any] | None = None) -> None:
    """Build ``name`` of ``kind`` from ``registry`` (``provider:name`` works) with its default
    options (plus ``options``) and run the kind's checks. Raises :class:`ContractError`."""
    comp = registry.get(kind, name)
    label = f"{kind} '{comp.name}' from {comp.provider} {comp.version}"
    opts = {**_options_for(kind, comp.params), **dict(options or {})}
    qualified = f"{comp.provider}:{comp.name}"
    if kind == "head":
        check_head(lambda context, **kw: registry.create(kind, qualified, kw, context), opts, label)
        return
    try:
        built = registry.create(kind, qualified, opts)
    except Exception as exc:
        raise ContractError(f"{label}: cannot be built with its default options: {type(exc).__name__}: {exc}") from exc
    protocol = PROTOCOL_FOR_KIND[kind]
    if kind != "augmentation":  # Augmentation's ``prob`` is optional for always-applied ops
        _require(isinstance(built, protocol), label, f"does not satisfy utod.sdk.{protocol.__name__}")
    CHECKS[kind](built, label)


CHECKS: dict[str, Callable[[Any, str], None]] = {
    "assigner": check_assigner,
    "iou_loss": check_iou_loss,
    "cls_loss": check_cls_loss,
    "resize": check_resize,
    "augmentation": check_augmentation,
    "dataset_format": check_dataset_format,
}


def check_registry(registry: Any, kinds: tuple[str, ...] | None = None) -> list[ContractResult]:
    """Run :func:`check_component` on every registered component (of ``kinds``); one
    :class:`ContractResult` each, failures included rather than raised."""
    from utod.components import KINDS

    results = []
    for kind in kinds or KINDS:
        for comp in registry.components[kind]:
            result = ContractResult(kind, comp.name, comp.provider)
            try:
                check_component(registry, kind, f"{comp.provider}:{comp.name}")
            except Exception as exc:
                result.error = str(exc) if isinstance(exc, ContractError) else f"{type(exc).__name__}: {exc}"
            results.append(result)
    return results
