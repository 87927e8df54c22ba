"""``utod export CKPT``: ONNX (default), TFLite (float32 / full-integer int8 / 16x8) or a TFLite
Micro firmware bundle, then a parity check of the exported file against the Keras model on
real or synthetic images, and for quantised files the int8 mAP with TFLM-exact kernels."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import click

from utod.cli._common import UtodCliError, split_settings, user_errors
from utod.diagnostics.threshold import CONF_THRESH, resolve_for_model

# Quantised exports emit the raw head as one tensor per group (box, obj, quality, cls), each
# with its own scale, unless --concat-outputs: chosen by the int8 mAP table of
# bench/bench_int8.py (docs/deploy.md).
DEFAULT_QUANTISED_SPLIT = True


def default_output(checkpoint: str, fmt: str, post: bool, int8: bool) -> Path:
    """``runs/x/best.keras`` -> ``runs/x/best.onnx`` (``_raw`` without post-processing,
    ``_int8`` for int8 TFLite, folder ``best_tflm`` for the firmware bundle)."""
    p = Path(checkpoint)
    if fmt == "tflm":
        return p.with_name(p.stem + "_tflm")
    stem = p.stem + ("" if post else "_raw") + ("_int8" if int8 else "")
    return p.with_name(stem + (".onnx" if fmt == "onnx" else ".tflite"))


@click.command("export")
@click.argument("checkpoint", type=click.Path(dir_okay=False))
@click.option("--format", "fmt", type=click.Choice(["onnx", "tflite", "tflm"]), default="onnx", show_default=True,
              help="Output format; tflm = int8 TFLite (16x8 with --int16) plus a firmware bundle folder (C array, "
                   "op resolver, config header, C99 post-process).")
@click.option("-o", "--output", type=click.Path(), default=None,
              help="Output file (default: next to the checkpoint, .onnx / .tflite), or folder for --format tflm.")
@click.option("--opset", type=int, default=17, show_default=True, help="ONNX opset.")
@click.option("--nchw", is_flag=True, help="Take NCHW input [N,3,H,W] (transposed inside the graph); "
              "the raw output (--no-post) becomes NCHW too.")
@click.option("--no-post", "no_post", is_flag=True,
              help="Export the raw head map plus anchors and wh_scale outputs instead of final detections.")
@click.option("--split-outputs/--concat-outputs", "split_outputs", default=None,
              help="Raw head as one output per group (box, obj, quality, cls), each with its own quantisation "
                   "scale, or one concatenated tensor. Default: split for int8/tflm, concatenated otherwise.")
@click.option("--batch", type=int, default=1, show_default=True, help="Static batch size.")
@click.option("--dynamic-batch", is_flag=True, help="Dynamic batch dimension (overrides --batch).")
@click.option("--conf-thresh", type=CONF_THRESH, default=None,
              help="Score threshold baked into the post-processing (default: the checkpoint's). "
                   "Use --conf-thresh 0.001 for files meant for mAP evaluation; 'best' (or 'f1'): the "
                   "F1-optimal confidence stored in the checkpoint by training.")
@click.option("--iou-thresh", type=float, default=None, help="NMS IoU baked into the post-processing.")
@click.option("--max-detections", type=int, default=None, help="K, rows of the detections output.")
@click.option("--simplify", is_flag=True, help="Simplify the ONNX graph with onnxslim.")
@click.option("--data", "--image-dir", "image_dir", type=click.Path(), default=None,
              help="Dataset (any layout: folder, data.yaml, obj.data, COCO .json, list file) for the parity "
                   "check, calibration and the int8 mAP.")
@click.option("--check-images", type=int, default=8, show_default=True,
              help="Images used for the parity check (synthetic ones without --image-dir).")
@click.option("--int8", is_flag=True, help="TFLite full-integer int8 quantisation (raw output; decoded outside).")
@click.option("--int16", is_flag=True, help="TFLite 16x8 quantisation: int16 activations, int8 weights.")
@click.option("--calib-images", type=int, default=100, show_default=True,
              help="Representative images for calibration: from the run's train.txt when the checkpoint has "
                   "a run folder, else --image-dir minus the evaluation split.")
@click.option("--split", type=click.Choice(["all", "val", "train", "test"]), default="val", show_default=True,
              help="Images of --image-dir on which the int8 and float mAP are compared (the trainer's split).")
@click.option("--train-split", type=float, default=None, help="Split ratio (default: the checkpoint's, else 0.8).")
@click.option("--val-split", type=float, default=None, help="Split ratio (default: the checkpoint's, else 0.2).")
@click.option("--seed", type=int, default=None, help="Split seed (default: the checkpoint's, else 42).")
@click.option("--kernels", type=click.Choice(["auto", "tflm", "ref", "xnnpack"]), default="auto", show_default=True,
              help="Kernels that score a quantised file: tflm (the TFLite Micro runtime), ref (tf.lite reference "
                   "kernels, bit-exact with TFLM), xnnpack (CPU deployment); auto = ref.")
@click.option("--max-arena", type=int, default=None, help="Fail (exit 2) when the TFLM arena exceeds these bytes.")
@click.option("--arena-margin", type=float, default=0.10, show_default=True,
              help="--format tflm: arena size = measured + this fraction (at least 1 KiB) + 16 B.")
@click.option("--skip-check", is_flag=True, help="Do not run the exported model (no parity check, no int8 mAP).")
def export(checkpoint, fmt, output, opset, nchw, no_post, split_outputs, batch, dynamic_batch, conf_thresh,
           iou_thresh, max_detections, simplify, image_dir, check_images, int8, int16, calib_images, split,
           train_split, val_split, seed, kernels, max_arena, arena_margin, skip_check):
    """Export a .keras checkpoint to ONNX, TFLite or a TFLite Micro firmware bundle, and check
    it against the Keras model.

    \b
    ONNX input `images` float32 RGB in [0,1], NHWC [N,H,W,3] (or NCHW with --nchw).
    Outputs: `detections` [N,K,6] (score, class, cx, cy, w, h normalised) + `num_detections`,
    or with --no-post `raw` [N,Hg,Wg,A*(5+Q+C)] (or one tensor per group with
    --split-outputs) + `anchors` [A,2] + `wh_scale` [A,2]. Metadata (class names, input size,
    resize backend, anchors, score mode...) is stored in the file. A parity error
    (difference above tolerance) exits with code 1.

    \b
    The post-processed export bakes in its conf threshold, NMS IoU and K: nothing
    below the threshold can come out of the file. For files meant for mAP evaluation
    (`utod eval`), export with --conf-thresh 0.001 (or --no-post); the checkpoint's
    default threshold is meant for deployment and cuts the precision/recall curve.

    \b
    int8 TFLite / tflm: every file is loaded in the TFLite Micro runtime before it is
    written (an op TFLM lacks is an error naming it and the layer that made it); the
    summary gives flash bytes, the measured arena, ops and IO quantisation. Calibration
    images come from the run's train.txt (or --image-dir minus the evaluation split); the
    int8 mAP is reported next to the float model's on the --split part of --image-dir (or
    the run's val.txt), with TFLM-exact kernels unless --kernels xnnpack.
    """
    with user_errors():
        quantised = int8 or int16 or fmt == "tflm"
        if simplify and fmt != "onnx":
            raise UtodCliError("--simplify applies to --format onnx")
        if fmt == "onnx" and (int8 or int16):
            raise UtodCliError("--int8/--int16 apply to --format tflite and tflm")
        if int8 and int16:
            raise UtodCliError("choose one of --int8 and --int16")
        if fmt == "tflm" and nchw:
            raise UtodCliError("--format tflm is an NHWC model (no --nchw)")
        if not Path(checkpoint).suffix.lower() == ".keras":
            raise UtodCliError(f"{checkpoint}: export takes a .keras checkpoint")
        if quantised and not image_dir:
            from utod.deploy.calibration import run_train_list

            if run_train_list(checkpoint) is None:
                raise UtodCliError("int8 export needs representative images: give --image-dir (the checkpoint "
                                   "has no run folder with train.txt)")
        if split_outputs is None:
            split_outputs = DEFAULT_QUANTISED_SPLIT if quantised else False
        if split_outputs and not quantised and not no_post:
            raise UtodCliError("--split-outputs applies to the raw head: add --no-post (int8 exports are raw)")
        if max_arena is not None and not quantised:
            raise UtodCliError("--max-arena applies to int8 exports (--int8 or --format tflm)")
        conf_thresh = resolve_for_model(conf_thresh, checkpoint, click.echo)
        ok = _export(checkpoint, fmt, output, opset, nchw, not no_post, split_outputs,
                     None if dynamic_batch else batch, conf_thresh, iou_thresh, max_detections, simplify, image_dir,
                     check_images, "int16" if int16 else ("int8" if quantised else None), calib_images, split,
                     train_split, val_split, seed, kernels, max_arena, arena_margin, skip_check)
    if not ok:
        sys.exit(1)


def _eval_items(checkpoint, image_dir, split, split_cfg, info):
    """(items the int8 mAP is reported on, words for them) or (None, "")."""
    from utod.deploy.calibration import run_val_list
    from utod.evaluation import load_eval_items

    if image_dir:
        items = load_eval_items(image_dir, info, split=split, log=None, **split_cfg)
        return items, f"the {split} split of {image_dir}" if split != "all" else f"all of {image_dir}"
    val = run_val_list(checkpoint)
    if val is not None:
        return load_eval_items(str(val), info, split="all", log=None), f"{val} (the run's validation split)"
    return None, ""


def _export(checkpoint, fmt, output, opset, nchw, post, split_outputs, batch, conf_thresh, iou_thresh,
            max_detections, simplify, image_dir, check_images, quant, calib_images, split, train_split,
            val_split, seed, kernels, max_arena, arena_margin, skip_check) -> bool:
    from utod.atomic import check_writable_dir
    from utod.evaluation import load_eval_items
    from utod.export import check_parity, compare_quantised, export_onnx, export_tflite, synthetic_images
    from utod.infer.keras_backend import KerasDetector
    from utod.infer.load import load_detector
    from utod.infer.modelinfo import MAP_CONF_THRESH, MAP_EXPORT_ADVICE
    from utod.metrics import format_report
    from utod.model.io import load_checkpoint

    out = Path(output) if output else default_output(checkpoint, fmt, post, quant == "int8")
    if fmt != "tflm" and out.is_dir():
        raise UtodCliError(f"-o {out}: is a folder; give the output file's name")
    if fmt == "tflm" and out.exists() and not out.is_dir():
        raise UtodCliError(f"-o {out}: is a file; --format tflm writes a folder")
    check_writable_dir(out.parent)  # before the conversion, not after it
    model, meta = load_checkpoint(checkpoint)
    keras_det = KerasDetector(model, checkpoint, meta)
    split_cfg = split_settings(meta, train_split, val_split, seed)

    items = load_eval_items(image_dir, keras_det.info, split="all", log=None) if image_dir else None
    eval_items, eval_source = (None, "")
    if quant:
        eval_items, eval_source = _eval_items(checkpoint, image_dir, split, split_cfg, keras_det.info)
    if fmt == "onnx":
        info = export_onnx(model, out, post=post, nchw=nchw, batch=batch, opset=opset, conf_thresh=conf_thresh,
                           nms_iou=iou_thresh, max_detections=max_detections, simplify=simplify,
                           split_outputs=split_outputs)
        model_file = out
    else:
        if batch is None:
            click.echo("note: a TFLite file has a fixed batch; writing batch 1 (a runtime can still resize "
                       "the input with Interpreter.resize_tensor_input)")
            batch = 1
        calib = None
        if quant:
            from utod.deploy.calibration import choose_calibration

            chosen = choose_calibration(checkpoint, calib_images, image_items=items, eval_items=eval_items,
                                        image_dir=image_dir, eval_source=eval_source or "no evaluation images")
            calib = keras_det.preprocessor.load(chosen.paths)
            click.echo(chosen.describe())
        tmpdir = None
        if fmt == "tflm":
            tmpdir = tempfile.TemporaryDirectory(prefix="utod-tflm-")
            model_file = Path(tmpdir.name) / "model.tflite"
        else:
            model_file = out
        info = export_tflite(model, model_file, post=post, int8=quant == "int8", int16=quant == "int16",
                             calibration_images=calib, nchw=nchw, batch=batch, conf_thresh=conf_thresh,
                             nms_iou=iou_thresh, max_detections=max_detections, split_outputs=split_outputs,
                             max_arena=max_arena, log=click.echo)
        if fmt == "tflm":
            from utod.deploy.bundle import write_bundle

            summary = write_bundle(model_file, out, arena_margin=arena_margin)
            tmpdir.cleanup()
            model_file = Path(summary.folder) / "model.tflite"
    layout = "NCHW" if info.input_layout == "nchw" else "NHWC"
    kind = f"{fmt}{' ' + quant if quant else ''}"
    groups = f", outputs {'/'.join(info.raw_groups)}" if info.raw_groups else ""
    click.echo(f"wrote {out} ({kind}, {info.output} output{groups}, input {layout} "
               f"{info.img_size[0]}x{info.img_size[1]}, batch {batch or 'dynamic'})")
    if fmt != "onnx":
        from utod.deploy.tflm import deploy_report, format_deploy_report

        for line in format_deploy_report(deploy_report(model_file.read_bytes(), info.raw_groups)):
            click.echo(f"  {line}")
    if fmt == "tflm":
        click.echo(summary.format())
    if "simplified" in info.extra:
        click.echo(f"simplified with {info.extra['simplified']}")
    if info.has_postprocess:
        click.echo(f"post-processing baked in: {info.baked_in()}")
        if info.cuts_pr_curve:
            click.echo(f"note: detections below this threshold cannot come out of the file; {MAP_EXPORT_ADVICE}")
    if skip_check:
        return True

    exported = load_detector(model_file, kernels=kernels)
    if items:
        paths = [it.image_path for it in items[:check_images]]
        images, source = keras_det.preprocessor.load(paths), f"images of {image_dir}"
    elif eval_items:
        paths = [it.image_path for it in eval_items[:check_images]]
        images, source = keras_det.preprocessor.load(paths), "evaluation images"
    else:
        images, source = synthetic_images(info, check_images), "synthetic images"
    report = check_parity(exported, model, images, tolerance=float("inf") if quant else None)
    if quant:  # quantisation changes the raw values by design: its measure is the mAP below
        click.echo(f"{quant} vs Keras on {report.images} {source}: max abs diff of the raw outputs "
                   f"{report.max_abs_diff:.3g} (quantisation error, reported, not checked"
                   + ("; the mAP comparison follows)" if eval_items else ")"))
    else:
        click.echo(report.format() + f" [{source}]")
    if quant and eval_items:
        quant_report = compare_quantised(keras_det, exported, eval_items,
                                         conf_thresh=min(MAP_CONF_THRESH, keras_det.info.conf_thresh),
                                         source=f"{eval_source}, none used for calibration",
                                         label="16x8" if quant == "int16" else "int8")
        click.echo(quant_report.format())
        advice = quant_report.advice()
        if advice:
            click.echo(advice)
        click.echo(f"{quant} model in detail:")
        click.echo(format_report(quant_report.int8_result))
    if not report.ok:
        click.echo(f"Error: the exported model differs from the Keras model: {report.format()}", err=True)
    return report.ok
