"""Export a Keras ``UltraTinyOD`` to ONNX (tf2onnx) and TFLite, and check the exported file
against the Keras model.

ONNX graph (``export_onnx``), input ``images`` float32 RGB in [0, 1]:

* NHWC ``[N, H, W, 3]`` (default) or NCHW ``[N, 3, H, W]`` (``nchw=True``, transposed inside
  the graph, the seed's ``--inputs-as-nchw`` recipe); N = 1 (static, default) or dynamic.
* ``post=True`` (default): outputs ``detections`` [N, K, 6] rows (score, class_id, cx, cy, w,
  h) normalised, zero padded, with the model's class-aware NMS / top-K inside, and
  ``num_detections`` [N] int32. ``conf_thresh``, ``nms_iou`` and K are baked in.
* ``post=False``: ``raw`` [N, Hg, Wg, A*(5+Q+C)] (NCHW ``[N, A*(5+Q+C), Hg, Wg]`` with
  ``nchw=True``) plus the constants ``anchors`` [A, 2] and ``wh_scale`` [A, 2] so a device
  can decode it (formulas in the metadata).
* ``metadata_props`` carry a :class:`utod.infer.modelinfo.ModelInfo` (class names/ids, input size
  and layout, resize backend, anchors, wh_scale, score mode, quality power, has_quality,
  num_classes, output layout, utod version).

TFLite (``export_tflite``): float32, or full-integer int8 (int8 input and output tensors,
quantisation parameters in the file) calibrated on representative images. TFLite's builtin
op set has no class-aware batched NMS (``CombinedNonMaxSuppression`` is a Select-TF op that
the Python interpreter cannot run), so when the post-processed graph does not convert with
builtin ops the float export falls back to the raw map, and int8 is always raw: decoding
and NMS then run outside the model (``utod predict``/``eval`` do it with the same code as
the Keras path). The ModelInfo JSON is stored as a TFLite metadata entry named ``utod``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from utod.atomic import write_bytes
from utod.errors import ConfigError
from utod.infer.decode import ImageDetections, split_detections
from utod.infer.detector import Detector
from utod.infer.keras_backend import KerasDetector
from utod.infer.metadata import add_tflite_metadata
from utod.infer.modelinfo import ModelInfo, info_from_model
from utod.quiet import quiet_fd2

DEFAULT_OPSET = 17
RAW_TOLERANCE = 1e-3  # max |ONNX/TFLite - Keras| on the raw map (float32 exports)
DETECTION_TOLERANCE = 1e-3  # score and box tolerance when matching post-processed detections


@dataclass
class ParityReport:
    """Exported model vs Keras on the same preprocessed images.

    ``max_abs_diff``: raw-map difference (raw exports) or the largest score/box difference of
    matched detections (post-processed exports). ``matched``/``total``: Keras detections
    found again in the export. ``ok``: within tolerance.
    """

    images: int
    max_abs_diff: float
    matched: int
    total: int
    ok: bool
    tolerance: float
    detail: str = ""

    def format(self) -> str:
        status = "OK" if self.ok else "MISMATCH"
        text = f"parity vs Keras on {self.images} images: max abs diff {self.max_abs_diff:.3g} " \
               f"(tolerance {self.tolerance:g})"
        if self.total:
            text += f", detections matched {self.matched}/{self.total}"
        return f"{text} -> {status}" + (f" ({self.detail})" if self.detail else "")


# ---------------------------------------------------------------------- graph
def serving_function(model: Any, info: ModelInfo, batch: int | None):
    """A ``tf.function`` with one input ``images`` for the layout/batch/output in ``info``.

    Returns a dict: ``{"detections", "num_detections"}``, ``{"raw", "anchors", "wh_scale"}``, or
    with ``info.raw_groups`` one tensor per group (``{"box", "obj", ["quality"], ["cls"],
    "anchors", "wh_scale"}``, utod.deploy.groups).
    """
    from utod._keras import tf
    from utod.evaluation import DecodeSettings
    from utod.model.postprocess import decode_and_nms

    h, w = info.img_size
    nchw = info.input_layout == "nchw"
    c = info.in_channels
    shape = [batch, c, h, w] if nchw else [batch, h, w, c]
    spec = tf.TensorSpec(shape, tf.float32, name="images")
    anchors = np.asarray(info.anchors, np.float32)
    wh_scale = np.asarray(info.wh_scale, np.float32)
    effective = anchors * wh_scale  # numpy: becomes a graph constant (an eager tensor would be a captured input)

    if info.output == "detections":
        def serve(images):
            x = tf.transpose(images, [0, 2, 3, 1]) if nchw else images
            raw = model(x, training=False)
            dets, num = decode_and_nms(raw, tf.constant(effective), DecodeSettings.of_info(info))
            return {"detections": tf.identity(dets, name="detections"),
                    "num_detections": tf.cast(num, tf.int32, name="num_detections")}
    elif info.raw_groups:
        from utod.deploy.groups import model_groups

        def serve(images):
            x = tf.transpose(images, [0, 2, 3, 1]) if nchw else images
            groups = model_groups(model, x)
            out = {}
            for name in info.raw_groups:
                g = tf.transpose(groups[name], [0, 3, 1, 2]) if nchw else groups[name]
                out[name] = tf.identity(g, name=name)
            out["anchors"] = tf.constant(anchors, name="anchors")
            out["wh_scale"] = tf.constant(wh_scale, name="wh_scale")
            return out
    else:
        def serve(images):
            x = tf.transpose(images, [0, 2, 3, 1]) if nchw else images
            raw = model(x, training=False)
            if nchw:
                raw = tf.transpose(raw, [0, 3, 1, 2])
            return {"raw": tf.identity(raw, name="raw"), "anchors": tf.constant(anchors, name="anchors"),
                    "wh_scale": tf.constant(wh_scale, name="wh_scale")}

    return tf.function(serve, input_signature=[spec])


def _check_batch(batch: int | None) -> None:
    if batch is not None and batch < 1:
        raise ConfigError(f"--batch must be >= 1, got {batch}")


# ---------------------------------------------------------------------- ONNX
def export_onnx(model: Any, output: str | os.PathLike, *, post: bool = True, nchw: bool = False,
                batch: int | None = 1, opset: int = DEFAULT_OPSET, conf_thresh: float | None = None,
                nms_iou: float | None = None, max_detections: int | None = None,
                simplify: bool = False, split_outputs: bool = False) -> ModelInfo:
    """Write ``model`` to ``output`` as ONNX (see module docstring). Returns its ModelInfo.
    ``split_outputs`` (raw only): one output per head group (utod.deploy.groups)."""
    from utod._keras import tf  # noqa: F401, I001  (quiet TF import before tf2onnx)
    import tf2onnx

    _check_batch(batch)
    if not 7 <= opset <= 21:
        raise ConfigError(f"--opset must be between 7 and 21, got {opset}")
    if simplify:
        _onnxslim()  # fail before the conversion when the simplifier is missing
    if split_outputs and post:
        raise ConfigError("--split-outputs applies to the raw head: add --no-post")
    info = info_from_model(model, output="detections" if post else "raw", input_layout="nchw" if nchw else "nhwc",
                           conf_thresh=conf_thresh, nms_iou=nms_iou, max_detections=max_detections)
    if split_outputs:
        info.raw_groups = _group_names(model)
    fn = serving_function(model, info, batch)
    proto, _ = tf2onnx.convert.from_function(fn, input_signature=fn.input_signature, opset=opset)
    if simplify:
        before = len(proto.graph.node)
        proto = _simplify(proto)
        info.extra["simplified"] = f"onnxslim {_onnxslim().__version__}: {before} -> {len(proto.graph.node)} nodes"
    set_onnx_metadata(proto, info.to_metadata())
    write_bytes(output, proto.SerializeToString())
    return info


def _group_names(model: Any) -> list[str]:
    from utod.deploy.groups import group_widths

    return list(group_widths(bool(model.has_quality), int(model.num_classes)))



def _onnxslim() -> Any:
    """The ``onnxslim`` module, or a ConfigError saying how to install it."""
    try:
        import onnxslim
    except ImportError:
        raise ConfigError("--simplify needs onnxslim, which is not installed: "
                          "pip install 'utod[slim]' (or pip install onnxslim)") from None
    return onnxslim


def _simplify(proto: Any) -> Any:
    """onnxslim (constant folding, dead-node removal, op fusion) on an ONNX ModelProto. The
    metadata is written afterwards; parity with Keras is checked on the simplified file."""
    slim = _onnxslim().slim
    with quiet_fd2():
        out = slim(proto)
    if out is None:  # onnxslim returns None when it fails on a graph
        raise ConfigError("onnxslim could not simplify this graph; export without --simplify")
    return out


def onnx_node_count(path: str | os.PathLike) -> int:
    """Nodes of the main graph of an ONNX file (subgraphs of If/Loop not counted)."""
    import onnx

    return len(onnx.load(str(path), load_external_data=False).graph.node)


def set_onnx_metadata(proto: Any, props: dict[str, str]) -> None:
    """Replace/add ``metadata_props`` entries of an ONNX ModelProto in place."""
    existing = {p.key: p for p in proto.metadata_props}
    for key, value in props.items():
        entry = existing.get(key) or proto.metadata_props.add()
        entry.key = key
        entry.value = value
    from utod import __version__

    proto.producer_name = "utod"
    proto.producer_version = f"{__version__} (tf2onnx)"


def read_onnx_metadata(path: str | os.PathLike) -> dict[str, str]:
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    return {p.key: p.value for p in proto.metadata_props}


# ---------------------------------------------------------------------- TFLite
def export_tflite(model: Any, output: str | os.PathLike, *, post: bool = True, int8: bool = False,
                  calibration_images: np.ndarray | None = None, nchw: bool = False, batch: int = 1,
                  conf_thresh: float | None = None, nms_iou: float | None = None,
                  max_detections: int | None = None, split_outputs: bool = False, int16: bool = False,
                  max_arena: int | None = None, log=print) -> ModelInfo:
    """Write ``model`` as a TFLite flatbuffer. ``int8`` (or ``int16``: 16-bit activations, 8-bit
    weights) needs ``calibration_images`` float32 [N, H, W, 3] in [0, 1]. ``split_outputs``:
    the raw head as one tensor per group, each with its own scale (utod.deploy.groups).

    Every file is loaded in the TFLite Micro runtime before it is written: the ops it uses,
    the arena TFLM measures and the runtime version go into ``info.extra["tflm"]`` (and the
    file's metadata). For a quantised export a file TFLM cannot load, or whose arena exceeds
    ``max_arena`` bytes, is a ConfigError naming the op and the layer that made it; nothing
    is written then (the file appears only when every check passed).

    Returns the ModelInfo stored in the file (``output`` is "raw" when post-processing was
    not exported; see module docstring)."""
    _check_batch(batch)
    quantised = int8 or int16
    if quantised and (calibration_images is None or len(calibration_images) == 0):
        raise ConfigError("--int8 needs calibration images: give --image-dir with at least one image")
    if split_outputs and post and not quantised:
        raise ConfigError("--split-outputs applies to the raw head: add --no-post")
    content: bytes | None = None
    info = None
    if post and not quantised:
        info = info_from_model(model, output="detections", input_layout="nchw" if nchw else "nhwc",
                               conf_thresh=conf_thresh, nms_iou=nms_iou, max_detections=max_detections)
        try:
            content = _convert_tflite(model, info, batch, builtin_only=True)
        except Exception as exc:  # the converter raises ConverterError/RuntimeError with long MLIR dumps
            first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
            log(f"note: post-processing (NMS) does not convert to builtin TFLite ops ({first}); "
                "exporting the raw map, decoded outside the model")
            content = None
    if content is None:
        info = info_from_model(model, output="raw", input_layout="nchw" if nchw else "nhwc",
                               conf_thresh=conf_thresh, nms_iou=nms_iou, max_detections=max_detections)
        if split_outputs:
            info.raw_groups = _group_names(model)
        content = _convert_tflite(model, info, batch, builtin_only=True, int8=int8, int16=int16,
                                  calibration_images=calibration_images)
    assert info is not None
    if quantised:
        bits = "int16" if int16 else "int8"
        info.input_dtype = bits
        info.extra["quantization"] = ("16x8: int16 activations, int8 weights (int16 input/output)" if int16
                                      else "full-integer int8 (int8 input/output)")
    if info.raw_groups:
        info.raw_groups = _tflite_output_order(content, info.raw_groups)
    info.extra["tflm"] = _tflm_verdict(content, quantised, max_arena, str(output), log)
    content = add_tflite_metadata(content, info.to_json())
    write_bytes(output, content)
    return info


def _tflm_verdict(content: bytes, required: bool, max_arena: int | None, path: str, log) -> dict[str, Any]:
    """Load ``content`` in TFLite Micro: {"loads", "ops", "arena_bytes", "version"}. ConfigError
    when ``required`` and it cannot load, or when the arena exceeds ``max_arena``."""
    from utod.deploy.tflm import check_tflm, ops_used, tflm_version

    if tflm_version() is None:
        if required or max_arena is not None:
            raise ConfigError("the TFLite Micro runtime is not installed (pip install tflite-micro); "
                              "it checks every int8 export")
        return {"loads": None, "ops": ops_used(content), "arena_bytes": None, "version": None}
    check = check_tflm(content)
    if not check.ok:
        if required:
            raise ConfigError(check.error_message(path))
        log("note: " + check.error_message(path) + " (float file written; it runs on TFLite, not on TFLite Micro)")
    elif max_arena is not None and check.arena_bytes is not None and check.arena_bytes > max_arena:
        raise ConfigError(f"{path}: the TFLite Micro arena needs {check.arena_bytes:,} bytes, over --max-arena "
                          f"{max_arena:,} bytes ({check.arena_bytes - max_arena:,} too many); use a smaller "
                          "--width or input size")
    return {"loads": check.ok, "ops": check.ops, "arena_bytes": check.arena_bytes, "version": check.version}


def _tflite_output_order(content: bytes, names: list[str]) -> list[str]:
    """The group names in the file's output order: TFLite does not keep the Keras order, so
    the signature's name -> tensor index map is matched against the subgraph outputs."""
    import warnings

    from utod._keras import tf

    with warnings.catch_warnings(), quiet_fd2():
        warnings.simplefilter("ignore")
        interp = tf.lite.Interpreter(model_content=content)
    runner_outputs = interp.get_signature_runner().get_output_details()
    by_index = {d["index"]: name for name, d in runner_outputs.items()}
    order = [by_index.get(d["index"]) for d in interp.get_output_details()]
    if sorted(n for n in order if n) != sorted(names):
        raise ConfigError(f"cannot match the TFLite outputs {order} to the head groups {names}")
    return order


def _convert_tflite(model: Any, info: ModelInfo, batch: int, *, builtin_only: bool, int8: bool = False,
                    int16: bool = False, calibration_images: np.ndarray | None = None) -> bytes:
    from utod._keras import tf

    fn = serving_function(model, info, batch)
    if info.output == "raw":  # anchors/wh_scale travel in the metadata; keep the map outputs only
        base = fn
        keep = info.raw_groups or ["raw"]

        @tf.function(input_signature=base.input_signature)
        def fn(images):
            out = base(images)
            return {name: out[name] for name in keep}

    concrete = fn.get_concrete_function()
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete], model)
    if int8 or int16:
        images = pinned_input_range(np.asarray(calibration_images, np.float32))
        if info.input_layout == "nchw":
            images = np.transpose(images, (0, 3, 1, 2))

        def representative() -> Iterable[list[np.ndarray]]:
            for i in range(0, len(images) - batch + 1, batch):
                yield [images[i:i + batch]]

        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative
        if int16:
            converter.target_spec.supported_ops = [
                tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
            converter.inference_input_type = tf.int16
            converter.inference_output_type = tf.int16
        else:
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            converter.inference_input_type = tf.int8
            converter.inference_output_type = tf.int8
    elif builtin_only:
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    with quiet_fd2():
        content = converter.convert()
    if info.output == "detections":  # a model that converts but cannot run is no use
        import warnings

        with warnings.catch_warnings(), quiet_fd2():
            warnings.simplefilter("ignore")
            tf.lite.Interpreter(model_content=content).allocate_tensors()
    return content


def pinned_input_range(images: np.ndarray) -> np.ndarray:
    """Calibration images with one pixel of the first image set to 0.0 and one to 1.0, so the
    calibrated int8 input range is exactly [0, 1]: scale 1/255, zero point -128, i.e.
    ``int8 = uint8_pixel - 128`` on the device (TFLite calibrates the input range from the
    images' own min/max; a set without pure black and white would give another mapping)."""
    images = np.array(images, np.float32, copy=True)
    if images.size:
        images[0, 0, 0, :] = 0.0
        images[0, 0, -1, :] = 1.0
    return images


# ---------------------------------------------------------------------- int8 vs float
MAX_INT8_DROP = (1.0, 1.5)  # points of mAP@0.5 and mAP@0.5:0.95 a quantised export may lose (docs/deploy.md)


@dataclass
class QuantisationReport:
    """mAP of the float (Keras) model and of its int8 export on the same labelled images,
    decoded with the same ``conf_thresh`` and NMS (``*_result``: :func:`utod.metrics.evaluate_detections` dicts)."""

    images: int
    conf_thresh: float
    float_result: dict[str, Any]
    int8_result: dict[str, Any]
    source: str = ""
    kernels: str = ""
    label: str = "int8"  # the quantisation: "int8" or "16x8"

    @property
    def map50_drop(self) -> float:
        """float mAP@0.5 minus int8 mAP@0.5 (positive: int8 is worse)."""
        return float(self.float_result["map50"] - self.int8_result["map50"])

    @property
    def map_drop(self) -> float:
        """float mAP@0.5:0.95 minus int8 mAP@0.5:0.95 (positive: int8 is worse)."""
        return float(self.float_result["map"] - self.int8_result["map"])

    def advice(self) -> str | None:
        """A note when the quantised model loses more than the deployment targets allow
        (``MAX_INT8_DROP``: 1.0 point mAP@0.5, 1.5 points mAP@0.5:0.95), else None."""
        drop50, drop = 100 * self.map50_drop, 100 * self.map_drop
        if drop50 <= MAX_INT8_DROP[0] and drop <= MAX_INT8_DROP[1]:
            return None
        text = (f"Note: {self.label} loses {drop50:.2f} points mAP@0.5 and {drop:.2f} points mAP@0.5:0.95 "
                f"(targets {MAX_INT8_DROP[0]:g} / {MAX_INT8_DROP[1]:g}) on these {self.images} images.")
        if self.label == "int8":
            text += (" --int16 (int16 activations, int8 weights) keeps low-confidence detections in order and "
                     "stayed within the targets on every benchmark model (docs/deploy.md), for ~45 % more "
                     "arena and int16 input/output.")
        return text

    def format(self) -> str:
        where = f" ({self.source})" if self.source else ""
        lines = [f"mAP on {self.images} images{where}, decode conf >= {self.conf_thresh:g}:"]
        for label, res in (("float (Keras)", self.float_result), (f"{self.label} (TFLite)", self.int8_result)):
            lines.append(f"  {label:<14} mAP@0.5:0.95 {res['map']:.4f}  mAP@0.5 {res['map50']:.4f}")
        if self.kernels:
            lines.append(f"  {self.label} kernels:  {self.kernels}")
        lines.append(f"  {f'{self.label} - float':<14} mAP@0.5:0.95 {-self.map_drop:+.4f}  "
                     f"mAP@0.5 {-self.map50_drop:+.4f}")
        return "\n".join(lines)


def compare_quantised(float_detector: Detector, int8_detector: Detector, items: Sequence[Any], *,
                      conf_thresh: float = 0.001, source: str = "", label: str = "int8") -> QuantisationReport:
    """Evaluate both detectors on ``items`` (labelled ``DatasetItem``s) with the same thresholds."""
    from utod.evaluation import evaluate_detector

    if not items:
        raise ConfigError("no labelled images to compare the int8 model with the float one")
    float_res = evaluate_detector(float_detector, items, conf_thresh=conf_thresh)
    int8_res = evaluate_detector(int8_detector, items, conf_thresh=conf_thresh)
    kernels = getattr(int8_detector, "kernels_used", "")
    if kernels:
        from utod.infer.tflite_backend import describe_kernels

        kernels = describe_kernels(kernels)
    return QuantisationReport(len(items), float(conf_thresh), float_res, int8_res, source, kernels, label)


# ---------------------------------------------------------------------- parity
def synthetic_images(info: ModelInfo, count: int = 4, seed: int = 0) -> np.ndarray:
    """float32 [count, H, W, C] random images in [0, 1]: smooth colours, a few blocks, pixel noise
    (RGB, converted by the model's input mode when C != 3)."""
    import cv2

    rng = np.random.default_rng(seed)
    h, w = info.img_size
    out = []
    for _ in range(count):
        small = rng.random((max(h // 8, 2), max(w // 8, 2), 3)).astype(np.float32)
        img = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
        for _ in range(3):
            # the bounds hold for every size the trainer accepts (8 px sides too)
            y0, x0 = rng.integers(0, max(h - 4, 1)), rng.integers(0, max(w - 4, 1))
            img[y0:y0 + rng.integers(4, max(h // 2, 5)), x0:x0 + rng.integers(4, max(w // 2, 5))] = rng.random(3)
        img = img + rng.normal(0.0, 0.03, img.shape)  # no flat regions: avoids exactly tied scores
        out.append(np.clip(img, 0, 1))
    images = np.stack(out).astype(np.float32)
    if info.in_channels != 3:  # camera-native input: the resize plugin's conversion (utod.data.model_input)
        from utod.data.model_input import to_model_input
        from utod.registry import get_registry

        backend = get_registry().create("resize", info.resize_mode)
        images = np.stack([to_model_input(backend, im) for im in images]).astype(np.float32)
    return images


def match_detections(reference: Sequence[ImageDetections], candidate: Sequence[ImageDetections],
                     tolerance: float = DETECTION_TOLERANCE) -> tuple[int, int, float, int]:
    """Find every reference detection in ``candidate`` (same class, score and box within
    ``tolerance``). Returns ``(matched, total, max_abs_diff_of_matched, unmatched_at_boundary)``
    where a boundary miss is a reference detection whose score is within ``tolerance`` of the
    image's lowest kept score (top-K / threshold cut-off, order of near-equal scores)."""
    matched = total = boundary = 0
    worst = 0.0
    for (rb, rs, rl), (cb, cs, cl) in zip(reference, candidate):
        used = np.zeros(len(cs), bool)
        low = float(min(rs.min() if len(rs) else 1.0, cs.min() if len(cs) else 1.0))
        for b, s, c in zip(rb, rs, rl):
            total += 1
            cand = np.where((cl == c) & ~used)[0]
            if len(cand):
                diff = np.maximum(np.abs(cs[cand] - s), np.abs(cb[cand] - b).max(axis=1))
                j = int(np.argmin(diff))
                if diff[j] <= tolerance:
                    used[cand[j]] = True
                    matched += 1
                    worst = max(worst, float(diff[j]))
                    continue
            if s - low <= tolerance:
                boundary += 1
    return matched, total, worst, boundary


def check_parity(exported: Detector, model: Any, images: np.ndarray, *, tolerance: float | None = None) -> ParityReport:
    """Compare an exported model with the Keras ``model`` on float32 NHWC ``images``."""
    info = exported.info
    images = np.asarray(images, np.float32)
    if info.output == "raw":
        tol = RAW_TOLERANCE if tolerance is None else tolerance
        ref = np.asarray(KerasDetector(model).forward(images)["raw"])
        got = exported.raw(images)
        diff = float(np.abs(ref - got).max()) if ref.size else 0.0
        const_diff = 0.0
        out = exported.forward(images[:1])
        if "anchors" in out:
            const_diff = max(float(np.abs(out["anchors"] - np.asarray(info.anchors)).max()),
                             float(np.abs(out["wh_scale"] - np.asarray(info.wh_scale)).max()))
        detail = f"anchors/wh_scale outputs differ by {const_diff:.3g}" if const_diff > 1e-6 else ""
        return ParityReport(len(images), diff, 0, 0, diff <= tol and const_diff <= 1e-6, tol, detail)
    tol = DETECTION_TOLERANCE if tolerance is None else tolerance
    fn = serving_function(model, _as_nhwc(info), None)
    ref_out = fn(images)
    reference = split_detections(np.asarray(ref_out["detections"]), np.asarray(ref_out["num_detections"]))
    out = exported.forward(images)
    candidate = split_detections(out["detections"], out.get("num_detections"))
    matched, total, worst, boundary = match_detections(reference, candidate, tol)
    ok = matched + boundary == total
    extra = f"{boundary} missing at the score cut-off" if boundary else ""
    return ParityReport(len(images), worst, matched, total, ok, tol, extra)


def _as_nhwc(info: ModelInfo) -> ModelInfo:
    from dataclasses import replace

    return replace(info, input_layout="nhwc")
