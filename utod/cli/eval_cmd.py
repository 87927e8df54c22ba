"""``utod eval MODEL --image-dir D``: COCO mAP (COCOeval) of a .keras checkpoint or an
exported .onnx / .tflite model on a labelled YOLO folder."""

from __future__ import annotations

import json

import click

from utod.cli._common import user_errors


@click.command("eval")
@click.argument("model_path", metavar="MODEL", type=click.Path(dir_okay=False))
@click.option("--data", "--image-dir", "image_dir", required=True, type=click.Path(),
              help="Labelled dataset: folder (layout detected), data.yaml, obj.data, COCO .json or list file.")
@click.option("--split", type=click.Choice(["all", "val", "train", "test"]), default="all", show_default=True,
              help="Evaluate all images, or one part: the dataset's own train/val/test set, else the "
                   "trainer's deterministic split.")
@click.option("--train-split", type=float, default=None, help="Split ratio (default: the checkpoint's, else 0.8).")
@click.option("--val-split", type=float, default=None, help="Split ratio (default: the checkpoint's, else 0.2).")
@click.option("--seed", type=int, default=None, help="Split seed (default: the checkpoint's, else 42).")
@click.option("--conf-thresh", type=float, default=0.001, show_default=True,
              help="Decode threshold for the mAP (low keeps the whole precision/recall curve).")
@click.option("--iou-thresh", type=float, default=None, help="NMS IoU (default: the model's).")
@click.option("--pr-conf-thresh", type=float, default=None,
              help="Threshold of the reported precision/recall (default: the model's conf_thresh).")
@click.option("--batch-size", type=int, default=32, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.option("--kernels", type=click.Choice(["auto", "tflm", "ref", "xnnpack"]), default="auto", show_default=True,
              help=".tflite only: tflm (TFLite Micro runtime), ref (tf.lite reference kernels, bit-exact with "
                   "TFLM), xnnpack (CPU deployment); auto = ref for int8 files, xnnpack for float ones.")
def eval_cmd(model_path, image_dir, split, train_split, val_split, seed, conf_thresh, iou_thresh, pr_conf_thresh,
             batch_size, as_json, kernels):
    """COCO-style mAP@0.5:0.95, mAP@0.5, per-class AP and P/R (COCOeval).

    Boxes are compared in model-input pixels. A .keras checkpoint and the .onnx/.tflite
    exported from it give the same numbers (within rounding) on the same images.

    \b
    An export with built-in post-processing (the default `utod export`) has its conf
    threshold, NMS IoU and top-K baked in: the mAP is computed on the detections the file
    outputs (its baked threshold or a higher --conf-thresh), and the report says which
    threshold that was. Export with --conf-thresh 0.001 (or --no-post) for files meant for
    mAP evaluation; a higher baked threshold cuts the precision/recall curve short.
    """
    with user_errors():
        from utod.api import evaluate, load
        from utod.metrics import format_report

        model = load(model_path, kernels=kernels)  # the Python API's functions: one implementation
        detector = model.detector
        log = None if as_json else (lambda m: click.echo(m, err=True))
        result = evaluate(model, image_dir, split=split, conf=conf_thresh, iou=iou_thresh, pr_conf=pr_conf_thresh,
                          batch_size=batch_size, train_split=train_split, val_split=val_split, seed=seed, log=log)
        result["model"] = model_path
        used = getattr(detector, "kernels_used", None)
        if used:
            from utod.infer.tflite_backend import describe_kernels

            result["kernels"] = used
        if as_json:
            click.echo(json.dumps(result, indent=2))
        else:
            click.echo(f"{model_path} ({detector.kind}) on {image_dir} [{split}]")
            if used:
                click.echo(f"kernels: {describe_kernels(used)}")
            click.echo(decode_note(result, detector.info))
            click.echo(format_report(result))
            from utod.diagnostics.report import f1_line, threshold_advice

            diag = result["diagnostics"]
            click.echo(f1_line(diag, "--pr-conf-thresh").strip())
            hint = threshold_advice(diag, "--pr-conf-thresh")
            if hint:
                click.echo(hint.strip())
            click.echo(f"read + preprocess + detect: {detector.last_run.summary()} "
                       f"({detector.kind}, {detector.batching()})")


def decode_note(result: dict, info) -> str:
    """Which decode settings the mAP was computed with; for a file with post-processing inside,
    the settings it has baked in and what that means for the mAP."""
    from utod.infer.modelinfo import MAP_EXPORT_ADVICE

    conf, iou = result["effective_conf_thresh"], result["effective_nms_iou"]
    if not info.has_postprocess:
        return f"decoded with conf >= {conf:g}, NMS IoU {iou:g}"
    text = (f"built-in post-processing: {info.baked_in()} (baked into the file); the mAP is computed "
            f"on the detections it outputs (conf >= {conf:g})")
    if info.cuts_pr_curve:
        text += (f", so the precision/recall curve stops at score {info.conf_thresh:g} and the mAP is lower "
                 f"than the checkpoint's; {MAP_EXPORT_ADVICE}")
    return text
