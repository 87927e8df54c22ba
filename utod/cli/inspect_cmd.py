"""``utod inspect FILE``: what a .keras checkpoint (or an exported .onnx / .tflite) holds.

For checkpoints everything comes from the file itself (``utod.json`` + ``weights.npz``);
TensorFlow is not imported. The ``=== Anchors ===`` / ``=== wh_scale ===`` blocks follow the
seed's tools/inspect_checkpoint.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
import numpy as np

from utod.cli._common import UtodCliError, user_errors


def _weight(values: list[np.ndarray], meta: dict[str, Any], needle: str) -> np.ndarray | None:
    """The first stored weight whose name contains ``needle`` (e.g. ``anchors``)."""
    index = [i for i, w in enumerate(meta.get("weights", [])) if needle in str(w.get("name", ""))]
    if not index:
        return None
    return np.asarray(values[index[0]])


def checkpoint_report(path: str) -> dict[str, Any]:
    """JSON-safe description of a .keras checkpoint."""
    from utod.model.io import nonfinite_weights, read_checkpoint_meta, read_weights

    p = Path(path)
    meta = read_checkpoint_meta(p)
    cfg = meta.get("model_config", {})
    values = read_weights(p, meta)  # CheckpointError for a damaged file or a missing weight
    anchors = np.asarray(meta["anchors"], np.float32) if "anchors" in meta else _weight(values, meta, "anchors")
    # the values are in the metadata; by weight name only for checkpoints written before that
    wh_scale = (np.asarray(meta["wh_scale"], np.float32) if "wh_scale" in meta
                else _weight(values, meta, "wh_scale"))
    if anchors is None:
        anchors = np.asarray(cfg.get("anchors", []), np.float32)
    if wh_scale is None:
        wh_scale = np.ones_like(anchors)
    sizes = [(str(w.get("name", "")), int(np.prod(w.get("shape", [])))) for w in meta.get("weights", [])]
    total = sum(n for _, n in sizes)
    stats = sum(n for name, n in sizes if "moving_mean" in name or "moving_variance" in name or "anchors" in name)
    extra = meta.get("extra", {}) or {}
    metrics = extra.get("metrics") or {}
    return {
        "file": str(p),
        "format": "keras-checkpoint",
        "utod_version": meta.get("utod_version"),
        "img_size": cfg.get("img_size"),
        "num_classes": cfg.get("num_classes"),
        "class_names": cfg.get("class_names"),
        "class_ids": cfg.get("class_ids"),
        "resize_mode": cfg.get("resize_mode"),
        "head": meta.get("head", {}),
        "anchors": anchors.tolist(),
        "wh_scale": wh_scale.tolist(),
        "effective_anchors": (anchors * wh_scale).tolist(),
        "nonfinite_weights": nonfinite_weights(values, meta),
        "params_all": total,
        "params_trainable": int(meta["trainable_params"]) if "trainable_params" in meta else total - stats,
        "plugins": extra.get("plugins"),
        "epoch": extra.get("epoch"),
        "step": extra.get("step"),
        "use_ema": extra.get("use_ema"),
        "metrics": metrics,
        "diagnostics": extra.get("diagnostics"),  # F1-optimal confidence (utod.diagnostics.threshold)
        "model_config": cfg,
        "train_config": extra.get("train_config"),
    }


def onnx_report(path: str) -> dict[str, Any]:
    import onnx

    try:
        proto = onnx.load(path, load_external_data=False)
    except Exception as exc:
        raise UtodCliError(f"{path}: not a readable ONNX file ({type(exc).__name__}: {exc})") from exc

    def dims(v) -> list[Any]:
        return [d.dim_param or d.dim_value or "?" for d in v.type.tensor_type.shape.dim]

    initialisers = {i.name for i in proto.graph.initializer}
    props = {p.key: p.value for p in proto.metadata_props}
    info = json.loads(props["utod_info"]) if "utod_info" in props else {}
    return {
        "file": path,
        "format": "onnx",
        "opset": [{"domain": o.domain or "ai.onnx", "version": o.version} for o in proto.opset_import],
        "producer": f"{proto.producer_name} {proto.producer_version}".strip(),
        "inputs": [{"name": i.name, "shape": dims(i), "elem_type": onnx.TensorProto.DataType.Name(
            i.type.tensor_type.elem_type)} for i in proto.graph.input if i.name not in initialisers],
        "outputs": [{"name": o.name, "shape": dims(o), "elem_type": onnx.TensorProto.DataType.Name(
            o.type.tensor_type.elem_type)} for o in proto.graph.output],
        "nodes": len(proto.graph.node),
        "postprocessing": _postprocessing(props.get("utod_info")),
        "anchors": info.get("anchors"),
        "wh_scale": info.get("wh_scale"),
        "metadata": {k: v for k, v in props.items() if k != "utod_info"},
    }


def tflite_report(path: str) -> dict[str, Any]:
    from utod.infer.tflite_backend import TfliteDetector

    det = TfliteDetector(path)
    it = det.interpreter

    def describe(d: dict[str, Any]) -> dict[str, Any]:
        scale, zero = d["quantization"]
        return {"name": d["name"], "shape": [int(s) for s in d["shape"]], "dtype": np.dtype(d["dtype"]).name,
                "quantization": {"scale": float(scale), "zero_point": int(zero)} if scale else None}

    from utod.deploy.tflm import deploy_report

    info = json.loads(det.info.to_json())
    return {
        "file": path,
        "format": "tflite",
        "deploy": deploy_report(Path(path).read_bytes(), det.info.raw_groups),
        "inputs": [describe(d) for d in it.get_input_details()],
        "outputs": [describe(d) for d in it.get_output_details()],
        "postprocessing": _postprocessing(det.info.to_json()),
        "anchors": info["anchors"],
        "wh_scale": info["wh_scale"],
        "metadata": info,
    }


def _postprocessing(info_json: str | None) -> str | None:
    """What an exported file does after the network: baked-in NMS settings, or raw output."""
    if not info_json:
        return None
    from utod.infer.modelinfo import MAP_EXPORT_ADVICE, ModelInfo

    info = ModelInfo.from_json(info_json)
    if not info.has_postprocess:
        return "none: raw map output, decoded and NMS'd outside the model"
    return (f"baked in: {info.baked_in()} (detections below conf {info.conf_thresh:g} cannot come out; "
            f"{MAP_EXPORT_ADVICE})")


def _matrix(rows: list[list[float]] | None) -> list[str]:
    if not rows:
        return ["  (none)"]
    return [f"  [{i}] " + ", ".join(f"{v:.6f}" for v in r) for i, r in enumerate(rows)]


def render(report: dict[str, Any]) -> str:
    lines = [f"file: {report['file']} ({report['format']})"]
    if report["format"] == "keras-checkpoint":
        head = report.get("head") or {}
        metrics = report.get("metrics") or {}
        lines += [
            f"utod version: {report.get('utod_version')}",
            f"input size: {report.get('img_size')}   resize backend: {report.get('resize_mode')}",
            f"classes ({report.get('num_classes')}): {report.get('class_names')}   raw ids: {report.get('class_ids')}",
            f"head: {head.get('name')} from {head.get('provider', '?')} {head.get('version', '')} "
            f"options {head.get('options', {})}",
            f"params: {report['params_all']:,} (all)  {report['params_trainable']:,} "
            "(without BN statistics and anchors)",
            f"epoch: {report.get('epoch')}   step: {report.get('step')}   EMA weights: {report.get('use_ema')}",
        ]
        if report.get("nonfinite_weights"):
            bad = report["nonfinite_weights"]
            lines.append(f"WARNING: {len(bad)} weight tensor(s) hold NaN/Inf (first {bad[0]}): eval, export and "
                         "predict refuse this checkpoint")
        if metrics:
            lines.append("metrics: " + "  ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}"
                                                 for k, v in metrics.items()))
        diag = report.get("diagnostics") or {}
        if diag.get("f1_conf") is not None:
            lines.append(f"F1-optimal conf: {diag['f1_conf']:g} (P {diag.get('precision', 0):.3f} R "
                         f"{diag.get('recall', 0):.3f} F1 {diag.get('f1', 0):.3f} on validation, epoch "
                         f"{diag.get('epoch')}; use --conf-thresh best)")
        if report.get("plugins"):
            lines.append("plugins:")
            plugins = report["plugins"]
            items = plugins.items() if isinstance(plugins, dict) else enumerate(plugins)
            for k, v in items:
                lines.append(f"  {k}: {json.dumps(v)}")
        lines.append("model config: " + json.dumps(report.get("model_config")))
    else:
        for key in ("inputs", "outputs"):
            lines.append(f"{key}:")
            for t in report[key]:
                lines.append(f"  {t['name']}: {t['shape']} {t.get('elem_type', t.get('dtype'))}"
                             + (f" quant {t['quantization']}" if t.get("quantization") else ""))
        if report.get("postprocessing"):
            lines.append(f"post-processing: {report['postprocessing']}")
        if report["format"] == "onnx":
            lines.append(f"opset: {report['opset']}   nodes: {report['nodes']}   producer: {report['producer']}")
            lines.append("metadata:")
            lines += [f"  {k}: {v}" for k, v in report["metadata"].items()]
        else:
            from utod.deploy.tflm import format_deploy_report

            lines.append("deployment (TFLite Micro):")
            lines += [f"  {line}" for line in format_deploy_report(report["deploy"])]
            lines.append("metadata: " + json.dumps(report["metadata"]))
    lines += ["", "=== Anchors ===", *_matrix(report.get("anchors")), "", "=== wh_scale ===",
              *_matrix(report.get("wh_scale"))]
    if report.get("effective_anchors"):
        lines += ["", "=== Effective anchors (anchors * wh_scale) ===", *_matrix(report["effective_anchors"])]
    return "\n".join(lines)


@click.command("inspect")
@click.argument("path", metavar="FILE", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def inspect_cmd(path, as_json):
    """Show what a .keras checkpoint, .onnx or .tflite file holds: anchors, wh_scale, classes,
    input size, resize backend, head and plugins, parameters, training epoch and metrics.
    For .tflite: flash bytes, the TFLite Micro arena measured by the runtime, the ops used,
    and the input/output dtypes, scales and zero points."""
    with user_errors():
        suffix = Path(path).suffix.lower()
        if not Path(path).exists():
            raise UtodCliError(f"{path}: file not found")
        if suffix == ".onnx":
            report = onnx_report(path)
        elif suffix == ".tflite":
            report = tflite_report(path)
        else:
            report = checkpoint_report(path)
        click.echo(json.dumps(report, indent=2) if as_json else render(report))
