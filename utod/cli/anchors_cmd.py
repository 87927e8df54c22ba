"""``utod anchors``: compute anchors from the labels of a dataset (auto-anchors, docs/loss.md §7.2).

Reads the labels of ``--data`` (any layout of :mod:`utod.data.formats`), keeps boxes with
w > 0 and h > 0 of the selected classes, clusters their normalised sizes and prints the
anchors, their mean best shape-IoU with the labels and a ready-to-paste ``--anchors`` value.
Never imports TensorFlow.
"""

from __future__ import annotations

import json
import sys

import click

from utod.anchors import ALGORITHMS

MAX_SHOWN_ISSUES = 20


def anchors_arg(anchors) -> str:
    """``[[w, h], ...]`` -> ``"w,h;w,h"`` (6 decimals), the seed's ``--anchors`` format."""
    return ";".join(f"{w:.6f},{h:.6f}" for w, h in anchors)


@click.command("anchors")
@click.option("--data", "--image-dir", "image_dir", required=True,
              help="Dataset: folder (layout detected), data.yaml, obj.data, COCO .json or image list file.")
@click.option("--split", type=click.Choice(["all", "train", "val", "test"]), default="all", show_default=True,
              help="Part of the dataset whose boxes are clustered (train/val: the description's own sets).")
@click.option("-k", "--num-anchors", "k", type=click.IntRange(min=1), default=3, show_default=True,
              help="Number of anchors.")
@click.option("--alg", type=click.Choice(ALGORITHMS), default="kmeans", show_default=True,
              help="Clustering algorithm.")
@click.option("--classes", default=None, help='Raw class ids to use, e.g. "0,1" (default: every class).')
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the initial centres.")
@click.option("--iterations", type=click.IntRange(min=1), default=20, show_default=True,
              help="Maximum k-means iterations.")
@click.option("--bias", type=float, default=0.2, show_default=True, help="Bin bias of stratified_large.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of text.")
def anchors(image_dir: str, split: str, k: int, alg: str, classes: str | None, seed: int, iterations: int, bias: float,
            as_json: bool) -> None:
    """Cluster the label box sizes of a dataset into anchors (normalised w,h)."""
    from utod.cli._common import UtodCliError, user_errors

    with user_errors():
        import numpy as np

        from utod.anchors import kmeans_anchors, mean_best_iou
        from utod.data.classes import parse_class_list
        from utod.data.loading import load_items

        class_ids = parse_class_list(classes) if classes and classes.strip() else None
        items, ds = load_items(image_dir, split=split, check_images=False)  # labels only
        issues = ds.issues
        sizes = []
        for it in items:
            keep = np.ones(len(it.labels), bool) if class_ids is None else np.isin(it.labels, class_ids)
            sizes.append(it.boxes[keep, 2:4])
        images = items
        files_with_labels = ds.result.labelled_images
        for issue in issues[:MAX_SHOWN_ISSUES]:
            click.echo(f"warning: {issue}", err=True)
        if len(issues) > MAX_SHOWN_ISSUES:
            click.echo(f"warning: ... and {len(issues) - MAX_SHOWN_ISSUES} more label problems", err=True)
        wh = np.concatenate(sizes, 0) if sizes else np.zeros((0, 2), np.float32)
        wh = wh[(wh[:, 0] > 0) & (wh[:, 1] > 0)]
        if len(wh) == 0:
            which = f" of classes {class_ids}" if class_ids is not None else ""
            raise UtodCliError(f"no boxes{which} found in the label files of {len(images)} image(s) under "
                               f"'{image_dir}' ({files_with_labels} label file(s))")
        result = kmeans_anchors(wh, k, alg=alg, iterations=iterations, seed=seed, bias=bias)
        score = mean_best_iou(wh, result)

    rows = [[round(float(w), 6), round(float(h), 6)] for w, h in result]
    if as_json:
        json.dump({"anchors": rows, "mean_best_iou": score, "num_boxes": int(len(wh)), "num_images": len(images),
                   "alg": alg, "k": k, "anchors_arg": anchors_arg(rows)}, sys.stdout)
        click.echo()
        return
    click.echo(f"{len(wh)} boxes from {len(images)} images; {alg}, k={k}")
    for i, (w, h) in enumerate(rows):
        click.echo(f"  {i}: w={w:.6f} h={h:.6f}")
    click.echo(f"mean best IoU: {score:.4f}")
    click.echo(f'--anchors "{anchors_arg(rows)}"')
