"""``utod export CKPT``: ONNX (default) or TFLite (float32 / full-integer int8), then a parity
check of the exported file against the Keras model on real or synthetic images."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from utod.cli._common import UtodCliError, split_settings, user_errors


def default_output(checkpoint: str, fmt: str, post: bool, int8: bool) -> Path:
    """``runs/x/best.keras`` -> ``runs/x/best.onnx`` (``_raw`` without post-processing,
    ``_int8`` for int8 TFLite)."""
    p = Path(checkpoint)
    stem = p.stem + ("" if post else "_raw") + ("_int8" if int8 else "")
    return p.with_name(stem + (".onnx" if fmt == "onnx" else ".tflite"))


@click.command("export")
@click.argument("checkpoint", type=click.Path(dir_okay=False))
@click.option("--format", "fmt", type=click.Choice(["onnx", "tflite"]), default="onnx", show_default=True,
              help="Output format.")
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None,
              help="Output file (default: next to the checkpoint, .onnx / .tflite).")
@click.option("--opset", type=int, default=17, show_default=True, help="ONNX opset.")
@click.option("--nchw", is_flag=True, help="Take NCHW input [N,3,H,W] (transposed inside the graph); "
              "the raw output (--no-post) becomes NCHW too.")
@click.option("--no-post", "no_post", is_flag=True,
              help="Export the raw head map plus anchors and wh_scale outputs instead of final detections.")
@click.option("--batch", type=int, default=1, show_default=True, help="Static batch size.")
@click.option("--dynamic-batch", is_flag=True, help="Dynamic batch dimension (overrides --batch).")
@click.option("--conf-thresh", type=float, default=None,
              help="Score threshold baked into the post-processing (default: the checkpoint's). "
                   "Use --conf-thresh 0.001 for files meant for mAP evaluation.")
@click.option("--iou-thresh", type=float, default=None, help="NMS IoU baked into the post-processing.")
@click.option("--max-detections", type=int, default=None, help="K, rows of the detections output.")
@click.option("--simplify", is_flag=True, help="Simplify the ONNX graph with onnxslim.")
@click.option("--data", "--image-dir", "image_dir", type=click.Path(), default=None,
              help="Dataset (any layout: folder, data.yaml, obj.data, COCO .json, list file) for the parity "
                   "check, int8 calibration and the int8 mAP.")
@click.option("--check-images", type=int, default=8, show_default=True,
              help="Images used for the parity check (synthetic ones without --image-dir).")
@click.option("--int8", is_flag=True, help="TFLite full-integer int8 quantisation (raw output; decoded outside).")
@click.option("--calib-images", type=int, default=100, show_default=True,
              help="Representative images for int8 calibration, drawn from --image-dir.")
@click.option("--split", type=click.Choice(["all", "val", "train", "test"]), default="val", show_default=True,
              help="Images of --image-dir on which the int8 and float mAP are compared (the trainer's split).")
@click.option("--train-split", type=float, default=None, help="Split ratio (default: the checkpoint's, else 0.8).")
@click.option("--val-split", type=float, default=None, help="Split ratio (default: the checkpoint's, else 0.2).")
@click.option("--seed", type=int, default=None, help="Split seed (default: the checkpoint's, else 42).")
@click.option("--skip-check", is_flag=True, help="Do not run the exported model (no parity check).")
def export(checkpoint, fmt, output, opset, nchw, no_post, batch, dynamic_batch, conf_thresh, iou_thresh,
           max_detections, simplify, image_dir, check_images, int8, calib_images, split, train_split,
           val_split, seed, skip_check):
    """Export a .keras checkpoint to ONNX or TFLite and check it against the Keras model.

    \b
    ONNX input `images` float32 RGB in [0,1], NHWC [N,H,W,3] (or NCHW with --nchw).
    Outputs: `detections` [N,K,6] (score, class, cx, cy, w, h normalised) + `num_detections`,
    or with --no-post `raw` [N,Hg,Wg,A*(5+Q+C)] + `anchors` [A,2] + `wh_scale` [A,2].
    Metadata (class names, input size, resize backend, anchors, score mode...) is stored
    in the file. A parity error (difference above tolerance) exits with code 1.

    \b
    The post-processed export bakes in its conf threshold, NMS IoU and K: nothing
    below the threshold can come out of the file. For files meant for mAP evaluation
    (`utod eval`), export with --conf-thresh 0.001 (or --no-post); the checkpoint's
    default threshold is meant for deployment and cuts the precision/recall curve.

    \b
    int8 TFLite: calibrated on --calib-images images of --image-dir; its mAP is reported
    next to the float model's on the --split part of --image-dir (default: the trainer's
    validation split, ratios and seed read from the checkpoint).
    """
    with user_errors():
        if simplify and fmt != "onnx":
            raise UtodCliError("--simplify applies to --format onnx")
        if fmt == "onnx" and int8:
            raise UtodCliError("--int8 applies to --format tflite")
        if int8 and not image_dir:
            raise UtodCliError("--int8 needs --image-dir (representative images for calibration)")
        if not Path(checkpoint).suffix.lower() == ".keras":
            raise UtodCliError(f"{checkpoint}: export takes a .keras checkpoint")
        ok = _export(checkpoint, fmt, output, opset, nchw, not no_post, None if dynamic_batch else batch,
                     conf_thresh, iou_thresh, max_detections, simplify, image_dir, check_images, int8,
                     calib_images, split, train_split, val_split, seed, skip_check)
    if not ok:
        sys.exit(1)


def _export(checkpoint, fmt, output, opset, nchw, post, batch, conf_thresh, iou_thresh, max_detections,
            simplify, image_dir, check_images, int8, calib_images, split, train_split, val_split, seed,
            skip_check) -> bool:
    import numpy as np

    from utod.atomic import check_writable_dir
    from utod.evaluation import load_eval_items
    from utod.export import check_parity, compare_quantised, export_onnx, export_tflite, synthetic_images
    from utod.infer.keras_backend import KerasDetector
    from utod.infer.load import load_detector
    from utod.infer.modelinfo import MAP_CONF_THRESH, MAP_EXPORT_ADVICE
    from utod.metrics import format_report
    from utod.model.io import load_checkpoint

    out = Path(output) if output else default_output(checkpoint, fmt, post, int8)
    if out.is_dir():
        raise UtodCliError(f"-o {out}: is a folder; give the output file's name")
    check_writable_dir(out.parent)  # before the conversion, not after it
    model, meta = load_checkpoint(checkpoint)
    keras_det = KerasDetector(model, checkpoint, meta)
    split_cfg = split_settings(meta, train_split, val_split, seed)

    items = None
    if image_dir:
        items = load_eval_items(image_dir, keras_det.info, split="all", log=None)
    if fmt == "onnx":
        info = export_onnx(model, out, post=post, nchw=nchw, batch=batch, opset=opset, conf_thresh=conf_thresh,
                           nms_iou=iou_thresh, max_detections=max_detections, simplify=simplify)
    else:
        if batch is None:
            click.echo("note: a TFLite file has a fixed batch; writing batch 1 (a runtime can still resize "
                       "the input with Interpreter.resize_tensor_input)")
            batch = 1
        calib = None
        if int8:
            rng = np.random.default_rng(0)
            chosen = rng.permutation(len(items))[:max(calib_images, 1)]
            calib = keras_det.preprocessor.load([items[i].image_path for i in chosen])
            click.echo(f"int8 calibration on {len(calib)} images of {image_dir}")
        info = export_tflite(model, out, post=post, int8=int8, calibration_images=calib, nchw=nchw,
                             batch=batch, conf_thresh=conf_thresh, nms_iou=iou_thresh,
                             max_detections=max_detections, log=click.echo)
    layout = "NCHW" if info.input_layout == "nchw" else "NHWC"
    click.echo(f"wrote {out} ({fmt}{' int8' if int8 else ''}, {info.output} output, input {layout} "
               f"{info.img_size[0]}x{info.img_size[1]}, batch {batch or 'dynamic'})")
    if "simplified" in info.extra:
        click.echo(f"simplified with {info.extra['simplified']}")
    if info.has_postprocess:
        click.echo(f"post-processing baked in: {info.baked_in()}")
        if info.cuts_pr_curve:
            click.echo(f"note: detections below this threshold cannot come out of the file; {MAP_EXPORT_ADVICE}")
    if skip_check:
        return True

    exported = load_detector(out)
    if items:
        paths = [it.image_path for it in items[:check_images]]
        images, source = keras_det.preprocessor.load(paths), f"images of {image_dir}"
    else:
        images, source = synthetic_images(info, check_images), "synthetic images"
    report = check_parity(exported, model, images, tolerance=float("inf") if int8 else None)
    click.echo(report.format() + f" [{source}]" + (" (int8: difference reported, not checked)" if int8 else ""))
    if int8 and items:
        eval_items = load_eval_items(image_dir, keras_det.info, split=split, log=None, **split_cfg)
        quant = compare_quantised(keras_det, exported, eval_items,
                                  conf_thresh=min(MAP_CONF_THRESH, keras_det.info.conf_thresh),
                                  source=f"{split} split of {image_dir}")
        click.echo(quant.format())
        click.echo("int8 model in detail:")
        click.echo(format_report(quant.int8_result))
    if not report.ok:
        click.echo(f"Error: the exported model differs from the Keras model: {report.format()}", err=True)
    return report.ok
