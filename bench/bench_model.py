"""Model sizes: parameters, multiply-adds / FLOPs and CPU forward latency per width.

Reference configuration (docs/model.md §5): BN, residual backbone, ReLU, 8 anchors, 1 class,
64x64 input, improved head + IoU-aware + ESE + large-object branch (depth 2, scale 1.25).

    .venv/bin/python bench/bench_model.py                       # print the table
    .venv/bin/python bench/bench_model.py --write docs/model_sizes.md

MACs are counted from every Conv2D / DepthwiseConv2D layer's actual input/output shapes
(one multiply-add per kernel tap per output value); FLOPs = 2 x MACs (convolutions only;
BN, activations, pooling, ESE gating and the raw-map reshape are not counted). Latency is
the median of many batch-1 forward passes of the raw network through a ``tf.function``.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from utod._keras import keras, tf  # noqa: E402
from utod.model.config import ModelConfig  # noqa: E402
from utod.model.detector import build_model  # noqa: E402

REFERENCE_HEAD = dict(use_head_ese=True, iou_aware=True, large_obj_branch=True, large_obj_depth=2,
                      large_obj_ch_scale=1.25)
ANCHORS = [[0.05 * (i + 1), 0.06 * (i + 1)] for i in range(8)]


def reference_config(width: int) -> ModelConfig:
    return ModelConfig(cnn_width=width, anchors=ANCHORS, num_classes=1, use_batchnorm=True, residual=True,
                       activation="relu", head="improved", head_options=dict(REFERENCE_HEAD))


def count_macs(model, img_size: tuple[int, int]) -> int:
    """Multiply-adds of all convolutions for one image, from the shapes seen in a forward pass."""
    macs = 0
    patched = []

    def wrap(layer):
        original = layer.call

        def call(x, *args, **kwargs):
            nonlocal macs
            y = original(x, *args, **kwargs)
            kh, kw = layer.kernel_size
            cin = int(x.shape[-1])
            out_values = int(y.shape[1]) * int(y.shape[2]) * int(y.shape[3])
            if isinstance(layer, keras.layers.DepthwiseConv2D):
                macs += out_values * kh * kw
            else:
                macs += out_values * kh * kw * cin // layer.groups
            return y

        layer.call = call
        patched.append((layer, original))

    for layer in model.submodules:
        if isinstance(layer, keras.layers.Conv2D):  # DepthwiseConv2D subclasses Conv2D
            wrap(layer)
    try:
        model(tf.zeros([1, *img_size, 3]), training=False)
    finally:
        for layer, original in patched:
            layer.call = original
    return macs


def latency_ms(model, img_size: tuple[int, int], runs: int, warmup: int = 20) -> float:
    fn = tf.function(lambda x: model(x, training=False),
                     input_signature=[tf.TensorSpec([1, *img_size, 3], tf.float32)])
    x = tf.random.uniform([1, *img_size, 3], seed=0)
    for _ in range(warmup):
        fn(x).numpy()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn(x).numpy()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--widths", type=int, nargs="+", default=[16, 32, 64, 128, 256])
    ap.add_argument("--runs", type=int, default=200, help="timed forward passes per variant")
    ap.add_argument("--write", type=Path, help="also write the markdown table to this file")
    args = ap.parse_args(argv)

    load_before = os.getloadavg()[0]
    rows = []
    for width in args.widths:
        cfg = reference_config(width)
        model = build_model(cfg)
        trainable = int(sum(v.shape.num_elements() for v in model.trainable_weights))
        macs = count_macs(model, cfg.img_size)
        ms = latency_ms(model, cfg.img_size, args.runs)
        rows.append((width, model.count_params(), trainable, macs, ms))
        print(f"W={width:4d} params all={model.count_params():,} trainable={trainable:,} "
              f"MACs={macs / 1e6:.1f}M FLOPs={2 * macs / 1e9:.3f}G latency={ms:.2f} ms", flush=True)

    cpu = platform.processor() or platform.machine()
    lines = [
        "| W (`--cnn-width`) | params (all) | params (trainable) | MMACs | GFLOPs (2 x MACs) | CPU latency, batch 1 (ms) |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for width, total, trainable, macs, ms in rows:
        lines.append(f"| {width} | {total:,} | {trainable:,} | {macs / 1e6:.1f} | {2 * macs / 1e9:.3f} | {ms:.2f} |")
    notes = [
        "",
        "Reference configuration: BN, residual backbone, ReLU, 8 anchors, 1 class, 64x64 input, improved head "
        "+ IoU-aware + ESE + large-object branch (depth 2, scale 1.25).",
        "\"all\" is `count_params()`: trainable weights + BN moving statistics + the anchors variable (8 x 2).",
        "MACs count every convolution (one multiply-add per kernel tap per output value); FLOPs = 2 x MACs. "
        "BN, activations, pooling and the ESE gate are not counted.",
        f"Latency: median of {args.runs} batch-1 forward passes (raw map, no NMS) through a `tf.function`, "
        f"TensorFlow {tf.__version__} on {os.cpu_count()} CPU cores ({cpu}; 1-min load average "
        f"{load_before:.1f} before / {os.getloadavg()[0]:.1f} after the run: other jobs inflate these numbers); "
        "measured with `.venv/bin/python bench/bench_model.py`. At small widths this is dominated by TensorFlow's "
        "per-call overhead (a few ms), not by arithmetic; the published 0.60-0.77 ms for N (W=64) is an "
        "ONNX Runtime figure (see bench/bench_export.py for ORT / TFLite latency of exported models).",
        "Published UHD sizes for comparison (trainable, rounded, counted on the PyTorch model, so they agree "
        "only approximately): R (W=16) 0.13 M, Z (W=32) 0.51 M, N (W=64) 1.98 M and 0.22 GFLOPs, L (W=256) "
        "30.92 M. The exact reference is the seed's Keras model, whose trainable counts equal the column above.",
    ]
    table = "\n".join(lines + notes)
    print()
    print(table)
    if args.write:
        args.write.parent.mkdir(parents=True, exist_ok=True)
        args.write.write_text("# UltraTinyOD model sizes\n\n" + table + "\n")
        print(f"\nwrote {args.write}")


if __name__ == "__main__":
    main()
