"""From what the user gave (``--data`` / ``--image-dir``, ``--train-list`` / ``--val-list``) to
train/val item lists, class names and a list of data issues; the guard rails live here.

Used by training (:func:`load_training_data`), evaluation and export (:func:`load_eval_items`)
and ``utod anchors`` (:func:`load_items`), so every command reads datasets the same way.

Guard rails:

* no image has a label (file, XML or annotation record): :class:`DataError` naming the layouts
  looked for and where the labels were expected (an Ultralytics tree passed as a plain folder
  used to train as all-background and "succeed");
* more than :data:`MISSING_LABEL_WARN_SHARE` of the images have no label file: a warning
  (a missing file is often unfinished work, unlike an empty one, which says "no objects");
* the training split holds 0 boxes of the classes being trained: :class:`DataError`.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from utod.data.classes import ClassSpec, read_names_file, resolve_classes
from utod.data.dataset import MAX_LOGGED_ISSUES, DatasetItem, DatasetSummary
from utod.data.formats import ALL, DatasetSource, LabelRules, ReadResult, looked_for, open_dataset
from utod.data.formats.base import finish_result, path_key
from utod.data.formats.yolo import ListsSource
from utod.errors import ConfigError, DataError

MISSING_LABEL_WARN_SHARE = 0.3
Log = Callable[[str], None] | None


@dataclass
class LoadedDataset:
    """A read dataset: its source, the classes in use, items per split and the issues."""

    source: DatasetSource
    classes: ClassSpec
    result: ReadResult
    summary: DatasetSummary

    @property
    def issues(self) -> list[str]:
        return self.result.issues

    @property
    def splits(self) -> dict[str, list[DatasetItem]]:
        return self.result.splits

    def all_items(self) -> list[DatasetItem]:
        return self.result.all_items()


def open_source(data: str | os.PathLike | None, *, train_list: str | None = None, val_list: str | None = None,
                fmt: str | None = None) -> DatasetSource:
    """The dataset description: ``--train-list``/``--val-list`` (UHD's fixed split) or
    ``data`` (any layout, auto-detected unless ``fmt`` names it)."""
    if val_list and not train_list:
        raise ConfigError("--val-list needs --train-list")
    if train_list:  # --image-dir beside the lists: where list lines are found (as in UHD)
        return ListsSource(Path(train_list), Path(val_list) if val_list else None, Path(data) if data else None)
    if not data:
        raise ConfigError("no dataset given: pass --data (or --image-dir)")
    return open_dataset(data, fmt)


def resolve_source_classes(source: DatasetSource, classes: str | None, num_classes: int | None,
                           names_path: str | None, log: Log = None) -> ClassSpec:
    """The classes in use: ``--classes`` / ``--num-classes`` / ``--names`` as before, with the
    description's names (data.yaml ``names``, obj.names, COCO categories, VOC object names) as
    the names of every raw id, a ``--classes`` subset included."""
    spec = resolve_classes(classes, num_classes, names_path, dataset_names=source.names,
                           dataset_num_classes=source.num_classes)
    if log and source.names and not names_path:
        log(f"Class names from {source.names_origin}: {', '.join(spec.names)}")
    return spec


def label_rules(source: DatasetSource, spec: ClassSpec, names_path: str | None) -> LabelRules:
    """Without a subset, ids beyond the classes in use are label errors; with a subset, other
    ids are legal (ignored later) but still must be below the description's own class count."""
    max_class = source.num_classes if spec.subset else spec.num_classes
    return LabelRules(max_class=max_class, names=read_names_file(names_path) if names_path else None)


def read_source(source: DatasetSource, spec: ClassSpec, names_path: str | None = None, *, log: Log = print,
                require_labels: bool = True, rules: LabelRules | None = None) -> LoadedDataset:
    """Read ``source`` (by ``rules``, default :func:`label_rules`) and apply the guard rails
    (module docstring)."""
    result = source.read(rules or label_rules(source, spec, names_path))
    names = {cid: n for cid, n in zip(spec.class_ids, spec.names)}
    summary = finish_result(result, names, source.describe())
    summary.selected = list(spec.class_ids) if spec.subset else None
    if log is not None:
        for note in result.notes:
            log(note)
        for msg in result.issues[:MAX_LOGGED_ISSUES]:
            log(msg)
        if len(result.issues) > MAX_LOGGED_ISSUES:
            log(f"... and {len(result.issues) - MAX_LOGGED_ISSUES} more dataset issues")
    n = summary.images
    if n == 0:
        raise DataError(f"no usable images in {source.describe()} "
                        f"(looked for .jpg .jpeg .png .bmp .webp; {len(result.issues)} issue(s))"
                        + (f"; first: {result.issues[0]}" if result.issues else ""))
    if require_labels and result.labelled_images == 0:
        example = f" For example {result.unlabelled_examples[0]}." if result.unlabelled_examples else ""
        raise DataError(
            f"none of the {n} images of {source.describe()} has a label: labels were expected as "
            f"{source.expected_labels}.{example} Looked for these layouts: {looked_for()}. "
            f"Point --data at the dataset's root folder or its description file (data.yaml, obj.data, COCO .json).")
    missing = result.unlabelled_images
    if log is not None and n and missing / n > MISSING_LABEL_WARN_SHARE and result.labelled_images:
        ex = "; e.g. " + result.unlabelled_examples[0] if result.unlabelled_examples else ""
        log(f"warning: {missing} of {n} images ({100 * missing / n:.0f}%) have no label file and are used as "
            f"background images (labels expected as {source.expected_labels}{ex})")
    return LoadedDataset(source, spec, result, summary)


def split_for_training(ds: LoadedDataset, train_split: float, val_split: float, seed: int,
                       log: Log = print) -> tuple[list[DatasetItem], list[DatasetItem], str]:
    """(train, val, how): the description's own train/val sets when it has them (no re-split;
    a description with a train set but no val set gets the ratio split of its train set,
    UHD's --train-list alone trains without validation), else the ratio split."""
    from utod.data.split import split_items

    splits = ds.splits
    kept = {k: len(v) for k, v in splits.items() if k not in ("train", "val", ALL)}
    if kept and log:
        log("Kept apart (not trained or validated on): "
            + ", ".join(f"{k} ({n} images)" for k, n in kept.items()))
    if "train" in splits and "val" in splits:
        train, val = splits["train"], splits["val"]
        how = f"the dataset's own train/val sets ({ds.source.describe()})"
    elif "train" in splits and isinstance(ds.source, ListsSource) and "val" not in splits:
        train, val = splits["train"], []
        how = "--train-list (no --val-list: no validation)"
    elif "train" in splits:
        train, val = split_items(splits["train"], train_split, val_split, seed)
        how = f"the dataset has no validation set: ratio split of its train set (seed {seed})"
    else:
        pool = splits.get(ALL, [])
        train, val = split_items(pool, train_split, val_split, seed)
        how = f"ratio split {train_split:g}/{val_split:g} (seed {seed})"
    both = {path_key(i.image_path) for i in train} & {path_key(i.image_path) for i in val}
    for p in sorted(both)[:MAX_LOGGED_ISSUES]:
        ds.result.log.add(p, "image is in both the train and the val set", "kept in both (val is not independent)")
    if both and log:
        log(f"warning: {len(both)} image(s) are in both the train and the val set")
    leaks = roboflow_leaks(train, val)
    for name in leaks[:MAX_LOGGED_ISSUES]:
        ds.result.log.add(name, "a val image is an augmented copy of a train image (same Roboflow source "
                                "name before '.rf.')", "kept (val mAP is optimistic)")
    if leaks and log:
        log(f"warning: {len(leaks)} val image(s) are Roboflow copies of train images (same name before '.rf.')")
    return train, val, how


def _rf_source(path: str) -> str | None:
    name = os.path.basename(path)
    return name.split(".rf.", 1)[0] if ".rf." in name else None


def roboflow_leaks(train: list[DatasetItem], val: list[DatasetItem]) -> list[str]:
    """Val images whose Roboflow source name (the part before ``.rf.``) also appears in train:
    augmented copies of one photo on both sides."""
    sources = {s for s in (_rf_source(i.image_path) for i in train) if s}
    return [i.image_path for i in val if _rf_source(i.image_path) in sources]


def _saved_split_items(ds: LoadedDataset, saved: tuple[list[str], list[str]], log: Log
                       ) -> tuple[list[DatasetItem], list[DatasetItem], str]:
    """The items of a resumed run's saved split, in its order; what changed in the dataset
    since is reported, not re-split."""
    by_path: dict[str, DatasetItem] = {}
    for items in ds.splits.values():
        for it in items:
            by_path.setdefault(os.path.abspath(it.image_path), it)
    parts = []
    gone: list[str] = []
    for paths in saved:
        parts.append([by_path[p] for p in paths if p in by_path])
        gone += [p for p in paths if p not in by_path]
    listed = set(saved[0]) | set(saved[1])
    added = sorted(p for p in by_path if p not in listed)
    for p in gone[:MAX_LOGGED_ISSUES]:
        ds.result.log.add(p, "in the run's saved split but no longer in the dataset", "not used on resume")
    for p in added[:MAX_LOGGED_ISSUES]:
        ds.result.log.add(p, "added to the dataset after the run's split was made",
                          "not used on resume (start a new run to include it)")
    if log and (gone or added):
        log(f"warning: the dataset changed since this run's split: {len(gone)} image(s) of the saved split are "
            f"gone, {len(added)} new image(s) are not used; the saved train.txt / val.txt stay the split")
    return parts[0], parts[1], "the run's saved split (train.txt / val.txt)"


def usable_boxes(items: list[DatasetItem], class_ids: list[int]) -> int:
    ids = set(class_ids)
    return sum(int(sum(1 for c in it.labels.tolist() if c in ids)) for it in items)


def check_trainable(train: list[DatasetItem], spec: ClassSpec) -> None:
    """Training on 0 usable boxes is an error, never a run that "succeeds"."""
    if not train:
        raise DataError("the training split is empty")
    if usable_boxes(train, spec.class_ids) == 0:
        total = sum(it.num_boxes for it in train)
        other = f" ({total} boxes of other classes; --classes selects {spec.class_ids})" if total else ""
        raise DataError(f"the {len(train)} training images hold 0 boxes of the classes being trained{other}: "
                        f"nothing to learn. Check --classes and the labels (see data_issues.txt).")


def issue_counts(issues: list[str]) -> Counter:
    """Issues counted by their action (the text after the last " — ")."""
    return Counter(i.rsplit(" — ", 1)[-1] if " — " in i else "reported" for i in issues)


def write_data_issues(run_dir: str | os.PathLike, issues: list[str]) -> Path | None:
    """``data_issues.txt``: a header counting the issues by action, then one per line."""
    if not issues:
        return None
    from utod.atomic import write_text

    path = Path(run_dir) / "data_issues.txt"
    counts = issue_counts(issues)
    head = [f"# {len(issues)} data issue(s): " + ", ".join(f"{n} {a}" for a, n in counts.most_common())]
    return write_text(path, "\n".join(head + issues) + "\n")


@dataclass
class TrainingData:
    classes: ClassSpec
    train: list[DatasetItem]
    val: list[DatasetItem]
    dataset: LoadedDataset


def load_training_data(cfg, run_dir: str | os.PathLike, *, data: str | None = None, log: Log = print,
                       keep_split: tuple[list[str], list[str]] | None = None) -> TrainingData:
    """Everything the trainer needs from the data settings of ``cfg`` (a ``TrainConfig``):
    classes, the train/val items (written as train.txt / val.txt), data_issues.txt and
    dataset.json in ``run_dir``. ``data`` overrides ``cfg.data``/``cfg.image_dir`` (the
    built-in dataset). ``keep_split``: a resumed run's saved (train, val) image paths, used
    as they are (images gone or added since are reported, nothing is re-split, and
    train.txt / val.txt are not rewritten)."""

    from utod.data.split import write_split

    if cfg.data and cfg.image_dir and cfg.data != cfg.image_dir:
        raise ConfigError("give --data or --image-dir, not both (they take the same kinds of dataset)")
    source = open_source(data or cfg.data or cfg.image_dir, train_list=cfg.train_list, val_list=cfg.val_list,
                         fmt=cfg.data_format)
    if log:
        log(f"Dataset: {source.describe()} [layout {source.layout}]")
    spec = resolve_source_classes(source, cfg.classes, cfg.num_classes, cfg.names, log)
    ds = read_source(source, spec, cfg.names, log=log)
    if log:
        log(ds.summary.format())
    if keep_split is not None:
        train, val, how = _saved_split_items(ds, keep_split, log)
    else:
        train, val, how = split_for_training(ds, cfg.train_split, cfg.val_split, cfg.seed, log)
    run = Path(run_dir)
    run.mkdir(parents=True, exist_ok=True)
    issues_file = write_data_issues(run, ds.issues)
    if issues_file and log:
        log(f"{len(ds.issues)} data issue(s) listed in {issues_file}")
    if keep_split is None:
        write_split(run, train, val)
    from utod.atomic import write_json

    write_json(run / "dataset.json", {
        "layout": source.layout, "source": source.describe(), "split": how,
        "splits": {k: len(v) for k, v in ds.splits.items()}, "train": len(train), "val": len(val),
        "class_ids": spec.class_ids, "names": spec.names, "names_from": source.names_origin or cfg.names or "",
    })
    if log:
        log(f"Split: {len(train)} train, {len(val)} val images — {how}")
    check_trainable(train, spec)
    return TrainingData(spec, train, val, ds)


def load_items(data: str | os.PathLike, *, class_ids: list[int] | None = None, split: str = "all",
               train_split: float = 0.8, val_split: float = 0.2, seed: int = 42, fmt: str | None = None,
               log: Log = None, require_labels: bool = True, check_images: bool = True,
               model_names: list[str] | None = None) -> tuple[list[DatasetItem], LoadedDataset]:
    """Items of one part of a dataset: ``all``, ``train``, ``val`` (the description's sets, else
    the trainer's ratio split with the same settings) or ``test``. ``class_ids``: the raw ids a
    model was trained on (``None``: every class the description declares). ``model_names``: the
    model's class names; when the dataset names those ids differently (another class order),
    a warning says so (the mAP would compare the wrong classes)."""
    if split not in ("all", "train", "val", "test"):
        raise ConfigError(f"--split must be all, train, val or test, got '{split}'")
    source = open_source(data, fmt=fmt)
    subset = class_ids is not None
    ids = list(class_ids) if subset else list(range(source.num_classes or 0))
    spec = ClassSpec(ids, [(source.names or [])[i] if source.names and i < len(source.names) else f"class{i}"
                           for i in ids], subset=subset)
    if model_names and source.names and class_ids is not None:
        theirs = [source.names[i] if i < len(source.names) else f"class{i}" for i in class_ids]
        if [n.lower() for n in theirs] != [n.lower() for n in model_names]:
            import sys

            (log or (lambda m: print(m, file=sys.stderr)))(
                f"warning: the model's classes are {model_names} but {source.describe()} calls ids {class_ids} "
                f"{theirs} ({source.names_origin}); results compare those ids as they are")
    ds = read_source(source, spec, log=log, require_labels=require_labels,
                     rules=LabelRules(max_class=source.num_classes, check_images=check_images))
    if split == "all":
        items = ds.all_items()
    elif split == "test":
        items = ds.splits.get("test", [])
    else:
        train, val, _ = split_for_training(ds, train_split, val_split, seed, log=None)
        items = train if split == "train" else val
    if not items:
        raise DataError(f"the {split} part of {source.describe()} is empty "
                        f"(train_split {train_split}, val_split {val_split}; parts: "
                        f"{', '.join(f'{k} {len(v)}' for k, v in ds.splits.items())})")
    return items, ds
