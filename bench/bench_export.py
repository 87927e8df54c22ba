"""CPU latency of the exported N-size UltraTinyOD (untrained weights; latency does not depend
on them): width 64, 8 anchors, improved + IoU-aware + ESE head, large-object branch (depth 2,
scale 1.25), BN, residual, ReLU, 64x64, batch 1.

Prints the median (and p90) of >= --runs runs after --warmup runs for: Keras forward
(tf.function), onnxruntime with and without post-processing (1 thread and default threads),
TFLite float with and without post-processing, and TFLite int8 (raw) with --int8.
The original project reports 0.60-0.77 ms for this variant on a desktop CPU.

    python bench/bench_export.py [--runs 300] [--int8] [--out DIR] [--markdown]

The machine (CPU model, cores, library versions) and the load average before and after are
printed too: timings taken on a busy machine are not comparable.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable

import numpy as np


def timed(fn: Callable[[], object], runs: int, warmup: int) -> tuple[float, float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    times.sort()
    return statistics.median(times), times[int(0.9 * (len(times) - 1))]


def cpu_model() -> str:
    """CPU model name from /proc/cpuinfo (Linux), else platform.processor()."""
    import platform

    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def load_average() -> str:
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "n/a"


def versions() -> str:
    import onnxruntime
    import tf2onnx

    from utod._keras import tf

    return f"tensorflow {tf.__version__}, tf2onnx {tf2onnx.__version__}, onnxruntime {onnxruntime.__version__}"


def n_model():
    from utod.model.config import ModelConfig
    from utod.model.detector import build_model

    anchors = [[w / 64, h / 64] for w, h in ((4, 6), (8, 12), (12, 20), (16, 28), (24, 32), (32, 44),
                                              (44, 52), (56, 60))]
    cfg = ModelConfig(img_size=(64, 64), num_classes=1, cnn_width=64, activation="relu", use_batchnorm=True,
                      residual=True, head="improved", anchors=anchors,
                      head_options={"iou_aware": True, "use_head_ese": True, "large_obj_branch": True,
                                    "large_obj_depth": 2, "large_obj_ch_scale": 1.25})
    return build_model(cfg)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=300)
    ap.add_argument("--warmup", type=int, default=30)
    ap.add_argument("--int8", action="store_true", help="also export and time full-integer int8 TFLite")
    ap.add_argument("--out", default=None, help="folder for the exported files (default: a temp folder)")
    ap.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    args = ap.parse_args()
    runs = max(args.runs, 200)

    from utod._keras import tf
    from utod.export import export_onnx, export_tflite, synthetic_images
    from utod.infer.onnx_backend import OnnxDetector
    from utod.infer.tflite_backend import TfliteDetector

    out = args.out or tempfile.mkdtemp(prefix="utod_bench_")
    os.makedirs(out, exist_ok=True)
    model = n_model()
    trainable = int(sum(np.prod(v.shape) for v in model.trainable_weights))
    print(f"N model: {model.count_params():,} params (all), {trainable:,} trainable")
    print(f"CPU: {cpu_model()}, {os.cpu_count()} cores; {versions()}")
    load_before = load_average()
    x = synthetic_images(_info(model), 1)
    rows: list[tuple[str, float, float]] = []

    fwd = tf.function(lambda t: model(t, training=False))
    xt = tf.constant(x)
    rows.append(("keras forward (tf.function, raw)", *timed(lambda: fwd(xt).numpy(), runs, args.warmup)))

    for post in (False, True):
        path = os.path.join(out, f"n_{'post' if post else 'raw'}.onnx")
        export_onnx(model, path, post=post)
        for threads in (1, None):
            det = OnnxDetector(path, threads=threads)
            feed = {det.input_name: x}
            label = f"onnxruntime {'post' if post else 'raw'} ({threads or 'default'} thread{'s' if threads != 1 else ''})"
            rows.append((label, *timed(lambda d=det, f=feed: d.session.run(None, f), runs, args.warmup)))

    variants = [("raw", False, False), ("post", True, False)] + ([("int8 raw", False, True)] if args.int8 else [])
    for name, post, int8 in variants:
        path = os.path.join(out, f"n_{name.replace(' ', '_')}.tflite")
        export_tflite(model, path, post=post, int8=int8,
                      calibration_images=synthetic_images(_info(model), 32) if int8 else None, log=lambda m: None)
        for threads in (1, None):
            det = TfliteDetector(path, threads=threads)
            rows.append((f"tflite {name} ({threads or 'default'} thread{'s' if threads != 1 else ''})",
                         *timed(lambda d=det: d._run(x), runs, args.warmup)))

    print(f"\nbatch 1, 64x64, median / p90 of {runs} runs after {args.warmup} warm-up (ms); "
          f"load average (1/5/15 min) before {load_before}, after {load_average()}:")
    if args.markdown:
        print("\n| runtime | median ms | p90 ms |\n|---|---:|---:|")
        for label, med, p90 in rows:
            print(f"| {label} | {med:.3f} | {p90:.3f} |")
        print()
    else:
        for label, med, p90 in rows:
            print(f"  {label:<44} {med:8.3f}  {p90:8.3f}")
    print("reference: UltraTinyOD N (original PyTorch export) 0.60-0.77 ms on a desktop CPU")
    print(f"files in {out}")


def _info(model):
    from utod.infer.modelinfo import info_from_model

    return info_from_model(model)


if __name__ == "__main__":
    main()
