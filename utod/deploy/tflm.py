"""TensorFlow Lite Micro (TFLM) as the judge of a TFLite file: the ops it uses, whether the
TFLM runtime (PyPI ``tflite-micro``, the same reference kernels a microcontroller build runs)
loads and allocates it, the arena it measures, and running it.

Facts this module relies on (docs/deploy.md explains them):

* The TFLM Python interpreter allocates in its constructor; every load/prepare failure is
  the same ``RuntimeError``, and the cause (``Didn't find op for builtin opcode 'TILE'``) and
  the arena total (``Arena allocation total N bytes``) are written by C code to file
  descriptor 2, so they are read with an fd-level redirect.
* The op code of an operator is ``max(builtin_code, deprecated_builtin_code)``.
* TFLM has no run-time shapes and no TILE, TOPK, NMS, ...: decoding and NMS run in C.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from utod.errors import ConfigError

# What to do when TFLM lacks an op, by op (the layer that made it is named separately).
MISSING_OP_ADVICE = {
    "TILE": "tf.repeat/tf.tile lower to TILE; upsample with utod.model.upsample.upsample_nearest_2x "
            "(PACK + RESHAPE) or keras UpSampling2D (RESIZE_NEAREST_NEIGHBOR)",
    "SHAPE": "run-time shape arithmetic: use static shapes (x.shape) in the layer; the export has batch 1",
    "TOPK_V2": "top-k cannot run on TFLM: export without post-processing (int8 exports are raw)",
    "NON_MAX_SUPPRESSION_V4": "NMS cannot run on TFLM: use the bundle's C post-process (--format tflm)",
    "NON_MAX_SUPPRESSION_V5": "NMS cannot run on TFLM: use the bundle's C post-process (--format tflm)",
    "GELU": "use relu or swish (LOGISTIC + MUL) activations",
}
GENERIC_ADVICE = "replace that layer with ops TFLM registers (docs/deploy.md, 'Ops')"

# Sub-layer name prefixes of the built-in heads -> the option that creates them.
LAYER_OPTIONS = (
    ("lob_", "head option large_obj_branch"),
    ("ese", "head option use_head_ese"),
    ("rfb", "head option context_rfb"),
    ("context_res", "the improved head's residual context block"),
    ("quality", "the quality branch (iou_aware / improved head)"),
    ("cls_", "the class branch"),
    ("block3_skip", "model option residual"),
    ("sppf", "the backbone's SPPF block"),
)

# Method of tflite::MicroMutableOpResolver for op names that the plain rule does not give.
_ADD_SPECIAL = {
    "PADV2": "AddPadV2", "BATCH_MATMUL": "AddBatchMatMul", "UNIDIRECTIONAL_SEQUENCE_LSTM":
    "AddUnidirectionalSequenceLSTM", "ADD_N": "AddAddN", "SVDF": "AddSvdf",
}

_MISSING_RE = re.compile(r"Didn't find op for builtin opcode '([A-Z0-9_]+)'")
_ARENA_RE = re.compile(r"Arena allocation total (\d+) bytes")
_ARENA_SHORT_RE = re.compile(r"(Failed to (?:resize buffer|allocate tail memory)[^\n]*)")


def tflm_version() -> str | None:
    """``tflite_micro.__version__``, or None when the runtime is not installed."""
    try:
        import tflite_micro
    except ImportError:
        return None
    return str(tflite_micro.__version__)


def resolver_method(op: str) -> str:
    """TFLite op name -> ``MicroMutableOpResolver`` method (CONV_2D -> AddConv2D)."""
    if op in _ADD_SPECIAL:
        return _ADD_SPECIAL[op]
    parts = []
    for part in op.split("_"):
        if part[:1].isdigit():  # 2D stays 2D
            parts.append(part.upper())
        elif part == "V2" or part == "V":
            parts.append(part)
        else:
            parts.append(part.capitalize())
    return "Add" + "".join(parts)


# ---------------------------------------------------------------------- reading the file
@dataclass
class OperatorInfo:
    """One operator of subgraph 0: op name and the names of its output tensors (the TF
    layer path, e.g. ``ultratinyod/head/lob_fuse/...``)."""

    op: str
    outputs: list[str]


@dataclass
class TensorQuant:
    """An input/output tensor: name, shape, dtype name, per-tensor scale and zero point
    (``None`` for float tensors)."""

    name: str
    shape: list[int]
    dtype: str
    scale: float | None
    zero_point: int | None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "shape": self.shape, "dtype": self.dtype, "scale": self.scale,
                "zero_point": self.zero_point}


def _schema():
    from utod._keras import tf  # noqa: F401, I001  (quiet TF import first)
    from tensorflow.lite.python import schema_py_generated as schema

    return schema


def _op_names(schema) -> dict[int, str]:
    return {v: k for k, v in vars(schema.BuiltinOperator).items() if isinstance(v, int)}


def model_operators(content: bytes) -> list[OperatorInfo]:
    """Operators of subgraph 0 in execution order."""
    schema = _schema()
    names = _op_names(schema)
    model = schema.Model.GetRootAsModel(content, 0)
    codes = []
    for i in range(model.OperatorCodesLength()):
        oc = model.OperatorCodes(i)
        code = max(int(oc.BuiltinCode()), int(oc.DeprecatedBuiltinCode()))
        name = names.get(code, f"BUILTIN_{code}")
        if name == "CUSTOM" and oc.CustomCode():
            name = "CUSTOM:" + oc.CustomCode().decode()
        codes.append(name)
    sub = model.Subgraphs(0)
    ops = []
    for i in range(sub.OperatorsLength()):
        op = sub.Operators(i)
        outs = [sub.Tensors(op.Outputs(k)).Name().decode() for k in range(op.OutputsLength()) if op.Outputs(k) >= 0]
        ops.append(OperatorInfo(codes[op.OpcodeIndex()], outs))
    return ops


def ops_used(content: bytes) -> list[str]:
    """Distinct op names of the file, sorted (what the firmware's resolver must register)."""
    return sorted({o.op for o in model_operators(content)})


def io_tensors(content: bytes) -> tuple[list[TensorQuant], list[TensorQuant]]:
    """(inputs, outputs) of subgraph 0 in subgraph order (the order TFLM indexes them)."""
    schema = _schema()
    types = {v: k.lower() for k, v in vars(schema.TensorType).items() if isinstance(v, int)}
    model = schema.Model.GetRootAsModel(content, 0)
    sub = model.Subgraphs(0)

    def describe(index: int) -> TensorQuant:
        t = sub.Tensors(index)
        q = t.Quantization()
        scale = zp = None
        if q is not None and q.ScaleLength() == 1:
            scale, zp = float(q.Scale(0)), int(q.ZeroPoint(0))
        return TensorQuant(t.Name().decode(), [int(s) for s in t.ShapeAsNumpy()], types.get(t.Type(), "?"), scale, zp)

    return ([describe(sub.Inputs(i)) for i in range(sub.InputsLength())],
            [describe(sub.Outputs(i)) for i in range(sub.OutputsLength())])


def _layer_path(tensor_name: str) -> list[str]:
    path = tensor_name.split(";")[0]
    return [p for p in path.split("/") if p and p not in ("StatefulPartitionedCall", "PartitionedCall")]


def _option_of(parts: list[str]) -> str | None:
    for prefix, option in LAYER_OPTIONS:
        if any(p.startswith(prefix) for p in parts):
            return option
    return None


def layer_of(operators: list[OperatorInfo], index: int) -> str:
    """The layer that made operator ``index`` (from its output tensor's name), plus the model
    option behind it when it is one of the built-in optional parts. An op written inline in
    a layer's ``call`` carries only that layer's name, so the option is then taken from the
    nearest named neighbours (the sub-layers that feed it or that it feeds)."""
    outs = operators[index].outputs
    parts = _layer_path(outs[0]) if outs else []
    layer = "/".join(parts[:4]) or "?"
    option = _option_of(parts)
    for dist in range(1, 6):
        if option:
            break
        for j in (index - dist, index + dist):
            if 0 <= j < len(operators) and operators[j].outputs:
                option = option or _option_of(_layer_path(operators[j].outputs[0]))
    return f"{layer} ({option})" if option else layer


# ---------------------------------------------------------------------- the runtime
class _CaptureFd2:
    """Collect what C code writes to file descriptor 2 (``.text`` after the block)."""

    def __enter__(self) -> _CaptureFd2:
        sys.stderr.flush()
        self._saved = os.dup(2)
        self._tmp = tempfile.TemporaryFile()
        os.dup2(self._tmp.fileno(), 2)
        self.text = ""
        return self

    def __exit__(self, *exc: object) -> bool:
        sys.stderr.flush()
        os.dup2(self._saved, 2)
        os.close(self._saved)
        self._tmp.seek(0)
        self.text = self._tmp.read().decode("utf-8", "replace")
        self._tmp.close()
        return False


@dataclass
class TflmCheck:
    """Result of loading a flatbuffer in the TFLM runtime.

    ``ok``: loaded and allocated; ``arena_bytes``: the RecordingMicroAllocator's total
    (host, 64-bit); ``missing``: ops TFLM has no kernel for, each with the layer that made it;
    ``reason``: the first error line of the TFLM log when not ok.
    """

    ok: bool
    ops: list[str]
    arena_bytes: int | None
    missing: list[tuple[str, str]] = field(default_factory=list)
    reason: str = ""
    version: str | None = None

    def error_message(self, path: str = "the model") -> str:
        """One line: the op, the layer/option that made it, and what to do."""
        if self.missing:
            op, layer = self.missing[0]
            more = f" (also missing: {', '.join(o for o, _ in self.missing[1:])})" if len(self.missing) > 1 else ""
            return (f"{path}: TFLite Micro {self.version or ''} has no kernel for op {op}, produced by layer "
                    f"{layer}{more}; {MISSING_OP_ADVICE.get(op, GENERIC_ADVICE)}")
        return f"{path}: TFLite Micro {self.version or ''} cannot load this model: {self.reason or 'allocation failed'}"


def _runtime():
    try:
        from tflite_micro import runtime
    except ImportError as exc:
        raise ConfigError("the TFLite Micro runtime is not installed: pip install tflite-micro "
                          f"(the version utod pins in pyproject.toml) ({exc})") from None
    return runtime


def load_tflm(content: bytes, arena_size: int | None = None):
    """(TFLM interpreter or None, captured log). ``arena_size`` None: 10 x the file size."""
    runtime = _runtime()
    interp = None
    with _CaptureFd2() as cap:
        try:
            interp = runtime.Interpreter.from_bytes(bytes(content), arena_size=arena_size)
            interp.print_allocations()
        except RuntimeError:
            interp = None
    return interp, cap.text


def check_tflm(content: bytes, arena_size: int | None = None) -> TflmCheck:
    """Load ``content`` in TFLM: ops, measured arena, or the missing ops with their layers."""
    operators = model_operators(content)
    ops = sorted({o.op for o in operators})
    size = arena_size if arena_size is not None else max(10 * len(content), 1 << 20)
    interp, log = load_tflm(content, size)
    version = tflm_version()
    if interp is not None:
        m = _ARENA_RE.search(log)
        return TflmCheck(True, ops, int(m.group(1)) if m else None, version=version)
    missing_names = list(dict.fromkeys(_MISSING_RE.findall(log)))
    missing = []
    for op in missing_names:
        first = next((i for i, o in enumerate(operators) if o.op == op), None)
        missing.append((op, layer_of(operators, first) if first is not None else "?"))
    short = _ARENA_SHORT_RE.search(log)
    lines = [ln.strip() for ln in log.splitlines() if ln.strip()]
    reason = short.group(1) if short else (lines[0] if lines else "TFLM failed to allocate tensors")
    return TflmCheck(False, ops, None, missing, reason, version)


class TflmRunner:
    """Run a quantised TFLite flatbuffer in the TFLM runtime, one image at a time.

    ``run(x)`` takes the input tensor's dtype and shape (batch 1) and returns the outputs in
    subgraph order, as the tensors' own dtype.
    """

    def __init__(self, content: bytes, arena_size: int | None = None) -> None:
        interp, log = load_tflm(content, arena_size if arena_size is not None else max(10 * len(content), 1 << 20))
        if interp is None:
            raise ConfigError(check_tflm(content).error_message())
        self.interpreter = interp
        ins, outs = io_tensors(content)
        self.inputs, self.outputs = ins, outs

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        self.interpreter.set_input(np.ascontiguousarray(x), 0)
        self.interpreter.invoke()
        return [np.asarray(self.interpreter.get_output(i)) for i in range(len(self.outputs))]


# ---------------------------------------------------------------------- sizes report
def deploy_report(content: bytes, names: list[str] | None = None) -> dict[str, Any]:
    """What a microcontroller needs to know about a TFLite file, JSON-safe: flash bytes (the
    file as it sits in flash), the TFLM arena the runtime measures (None when TFLM cannot
    load it, with the reason), the ops, and the input/output tensors with dtypes, scales and
    zero points. ``names``: output names in subgraph order (e.g. the head groups)."""
    inputs, outputs = io_tensors(content)
    out = {"flash_bytes": len(content), "ops": ops_used(content), "tflm_version": tflm_version(),
           "tflm_loads": None, "arena_bytes": None, "tflm_error": None,
           "inputs": [t.to_dict() for t in inputs], "outputs": [t.to_dict() for t in outputs]}
    if names and len(names) == len(outputs):
        for d, n in zip(out["outputs"], names):
            d["group"] = n
    if out["tflm_version"] is not None:
        check = check_tflm(content)
        out.update(tflm_loads=check.ok, arena_bytes=check.arena_bytes,
                   tflm_error=None if check.ok else check.error_message())
    return out


def format_deploy_report(report: dict[str, Any]) -> list[str]:
    """The report as summary lines (export summary, ``utod inspect``)."""
    def tensor(t: dict[str, Any]) -> str:
        q = (f" scale {t['scale']:.6g} zero point {t['zero_point']}" if t.get("scale") is not None else "")
        label = t.get("group") or t["name"]
        return f"{label} {t['shape']} {t['dtype']}{q}"

    lines = [f"flash: {report['flash_bytes']:,} bytes ({report['flash_bytes'] / 1024:.1f} KB)"]
    if report.get("tflm_version") is None:
        lines.append("TFLite Micro arena: not measured (tflite-micro not installed)")
    elif report.get("tflm_loads"):
        arena = report["arena_bytes"]
        lines.append(f"TFLite Micro arena: {arena:,} bytes ({arena / 1024:.1f} KB), measured by the TFLM runtime "
                     f"{report['tflm_version']} (64-bit host; add a margin on the device)")
    else:
        lines.append(f"TFLite Micro: does not load: {report.get('tflm_error')}")
    lines.append(f"ops ({len(report['ops'])}): {', '.join(report['ops'])}")
    lines += [f"input:  {tensor(t)}" for t in report["inputs"]]
    lines += [f"output: {tensor(t)}" for t in report["outputs"]]
    return lines
