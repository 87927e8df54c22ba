"""int8 on TensorFlow Lite Micro: accuracy drop, flash and arena (prints numbers; not a test).

Trains a fixed recipe (64x64, 300 epochs by default) on the real datasets and, for each model,
prints float mAP@0.5 / mAP@0.5:0.95 (Keras) next to the int8 mAP with TFLM-exact kernels
(tf.lite BUILTIN_REF, bit-exact with the TFLite Micro runtime: tests/test_tflm.py) for the
concatenated raw output and for split outputs (one tensor per head group, each with its own
scale), optionally 16x8 (int16 activations), plus flash KB and the TFLM arena KB measured by
the runtime. Calibration uses the run's train.txt; mAP is on the run's val.txt (images
calibration never saw).

Configurations: the seed's reference configuration (BN, residual, improved + IoU-aware + ESE
head, large-object branch) at W=16 and W=64, and the plain head at W=16.

    python bench/bench_int8.py [--data ../shared/data] [--epochs 300] [--datasets raccoon,playing_cards]
                               [--configs ref16,ref64,plain16] [--int16] [--keep DIR]

The data folder defaults to $UTOD_BENCH_DATA, else ../shared/data relative to the repo root;
(or ../../shared/data from a worktree); missing datasets are skipped with a message.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

COMMON = {
    "img_size": "64x64", "batch_size": 32, "lr": 0.003, "weight_decay": 0.0001, "auto_anchors": True,
    "num_anchors": 8, "iou_loss": "ciou", "conf_thresh": 0.15, "activation": "relu",
    "resize_mode": "opencv_inter_nearest", "use_batchnorm": True, "log_interval": 100000, "seed": 42,
}
REFERENCE = {"utod_residual": True, "use_improved_head": True, "use_iou_aware_head": True, "use_head_ese": True,
             "utod_large_obj_branch": True, "utod_large_obj_depth": 2, "utod_large_obj_ch_scale": 1.25}
CONFIGS = {
    "ref16": ("reference W=16", {"cnn_width": 16, **REFERENCE}),
    "ref64": ("reference W=64", {"cnn_width": 64, **REFERENCE}),
    "plain16": ("plain head W=16", {"cnn_width": 16}),
}


def data_root(arg: str | None) -> Path:
    if arg:
        return Path(arg)
    if os.environ.get("UTOD_BENCH_DATA"):
        return Path(os.environ["UTOD_BENCH_DATA"])
    for base in (REPO.parent, REPO.parent.parent):  # a clone, or a worktree one level further down
        if (base / "shared" / "data").is_dir():
            return base / "shared" / "data"
    return REPO.parent / "shared" / "data"


def measure(dataset: Path, key: str, epochs: int, int16: bool, work: Path) -> list[dict]:
    from utod.deploy.calibration import choose_calibration
    from utod.deploy.tflm import deploy_report
    from utod.evaluation import evaluate_detector, load_eval_items
    from utod.export import export_tflite
    from utod.infer.keras_backend import KerasDetector
    from utod.infer.tflite_backend import TfliteDetector
    from utod.model.io import load_checkpoint
    from utod.train.run import run_training

    label, flags = CONFIGS[key]
    run_dir = work / f"{dataset.name}_{key}"
    t0 = time.perf_counter()
    run_training({**COMMON, **flags, "image_dir": str(dataset), "epochs": epochs, "ckpt_out": str(run_dir),
                  "cache_dir": str(work / "cache")})
    train_s = time.perf_counter() - t0
    ckpt = run_dir / "best.keras"
    model, meta = load_checkpoint(ckpt)
    keras_det = KerasDetector(model, str(ckpt), meta)
    val = load_eval_items(str(run_dir / "val.txt"), keras_det.info, split="all", log=None)
    calib_set = choose_calibration(ckpt, 100, image_items=None, eval_items=val, image_dir=None, eval_source="val")
    calib = keras_det.preprocessor.load(calib_set.paths)
    fl = evaluate_detector(keras_det, val, conf_thresh=0.001)
    variants = [("concat", dict(split_outputs=False, int8=True)), ("split", dict(split_outputs=True, int8=True))]
    if int16:
        variants.append(("split16", dict(split_outputs=True, int16=True)))
    rows = []
    for name, kw in variants:
        path = work / f"{dataset.name}_{key}_{name}.tflite"
        try:
            export_tflite(model, path, post=False, calibration_images=calib, log=lambda _m: None, **kw)
        except Exception as exc:  # e.g. an op TFLM cannot run in 16x8: report, keep going
            rows.append({"dataset": dataset.name, "config": label, "variant": name, "error": str(exc)[:120]})
            continue
        rep = deploy_report(path.read_bytes())
        q = evaluate_detector(TfliteDetector(str(path), kernels="ref"), val, conf_thresh=0.001)
        rows.append({"dataset": dataset.name, "config": label, "variant": name, "float50": fl["map50"],
                     "float": fl["map"], "q50": q["map50"], "q": q["map"], "flash_kb": rep["flash_bytes"] / 1024,
                     "arena_kb": (rep["arena_bytes"] or 0) / 1024, "loads": rep["tflm_loads"],
                     "calib": len(calib_set.paths), "val": len(val), "train_s": train_s})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=None, help="folder holding raccoon/ and playing_cards/")
    ap.add_argument("--datasets", default="raccoon,playing_cards")
    ap.add_argument("--configs", default="ref16,ref64,plain16")
    ap.add_argument("--epochs", type=int, default=300)
    ap.add_argument("--int16", action="store_true", help="also 16x8 (int16 activations) with split outputs")
    ap.add_argument("--keep", default=None, help="keep the run folders and .tflite files in this folder")
    args = ap.parse_args()
    root = data_root(args.data)
    datasets = [root / d for d in args.datasets.split(",") if d]
    present = [d for d in datasets if d.is_dir()]
    for d in datasets:
        if not d.is_dir():
            print(f"skip: dataset {d} not found (set --data or UTOD_BENCH_DATA)")
    if not present:
        print("nothing to benchmark")
        return
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_int8_") as tmp_name:
        tmp = args.keep or tmp_name
        Path(tmp).mkdir(parents=True, exist_ok=True)
        for d in present:
            for key in args.configs.split(","):
                rows += measure(d, key, args.epochs, args.int16, Path(tmp))
                print_table(rows)
    print("\n=== bench_int8 (final) ===")
    print_table(rows)


def print_table(rows: list[dict]) -> None:
    print("\n| dataset | config | outputs | float mAP@0.5 | float mAP@.5:.95 | int8 mAP@0.5 (drop) | "
          "int8 mAP@.5:.95 (drop) | flash KB | arena KB |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        if "error" in r:
            print(f"| {r['dataset']} | {r['config']} | {r['variant']} | error: {r['error']} |||||| ")
            continue
        print(f"| {r['dataset']} | {r['config']} | {r['variant']} | {r['float50']:.4f} | {r['float']:.4f} | "
              f"{r['q50']:.4f} ({100 * (r['float50'] - r['q50']):+.2f} pt) | {r['q']:.4f} "
              f"({100 * (r['float'] - r['q']):+.2f} pt) | {r['flash_kb']:.1f} | {r['arena_kb']:.1f} |")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
