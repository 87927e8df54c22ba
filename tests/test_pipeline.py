"""DetectionData: static shapes, eval completeness, per-epoch reproducible augmentation,
class remapping, the decode-once cache and undecodable images."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from utod.data.dataset import DatasetItem, scan_dataset
from utod.data.pipeline import DetectionData, PipelineConfig
from utod.errors import ConfigError, DataError
from utod.registry import build_registry


@pytest.fixture(scope="module")
def reg():
    return build_registry()


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("pipe")
    rng = np.random.default_rng(0)
    for i in range(10):
        img = rng.integers(0, 80, (40, 48, 3), dtype=np.uint8)
        x1, y1 = int(rng.integers(0, 24)), int(rng.integers(0, 20))
        img[y1:y1 + 16, x1:x1 + 20] = 255
        cv2.imwrite(str(root / f"im{i:02d}.png"), img)
        cls = i % 3
        (root / f"im{i:02d}.txt").write_text(
            f"{cls} {(x1 + 10) / 48:.5f} {(y1 + 8) / 40:.5f} {20 / 48:.5f} {16 / 40:.5f}\n"
            f"{(cls + 1) % 3} 0.9 0.9 0.1 0.1\n")
    return root


@pytest.fixture(scope="module")
def items(dataset_dir) -> list[DatasetItem]:
    return scan_dataset(dataset_dir, log=None).items


def cfg(tmp_path, **kw) -> PipelineConfig:
    base = dict(img_size=(32, 32), batch_size=4, max_boxes=5, cache_dir=str(tmp_path / "cache"), num_workers=2,
                aug_ops=[("HorizontalFlip", {"prob": 0.5}), ("RandomHSV", {"prob": 1.0, "hue_gain": 0.5}),
                         ("Mosaic", {"prob": 0.5})])
    base.update(kw)
    return PipelineConfig(**base)


def batches(data, epoch):
    return [{k: v.numpy() for k, v in b.items()} for b in data.dataset(epoch)]


def test_eval_includes_every_image_with_static_shapes(reg, items, tmp_path):
    data = DetectionData(items, cfg(tmp_path), reg, training=False, log=None)
    ds = data.dataset(0)
    spec = ds.element_spec
    assert spec["image"].shape == (4, 32, 32, 3) and spec["boxes"].shape == (4, 5, 4)
    assert spec["labels"].shape == (4, 5) and spec["mask"].shape == (4, 5) and spec["index"].shape == (4,)
    out = batches(data, 0)
    assert len(out) == 3 == data.steps_per_epoch
    idx = np.concatenate([b["index"] for b in out])
    assert idx.tolist() == list(range(10)) + [-1, -1]
    last = out[-1]
    assert not last["mask"][2:].any() and (last["labels"][2:] == -1).all() and (last["image"][2:] == 0).all()
    b = out[0]
    assert b["image"].dtype == np.float32 and b["boxes"].dtype == np.float32
    assert b["labels"].dtype == np.int32 and b["mask"].dtype == bool and b["index"].dtype == np.int32
    assert 0.0 <= b["image"].min() and b["image"].max() <= 1.0
    # no augmentation in eval: boxes are the label boxes, raw ids pass through
    np.testing.assert_allclose(b["boxes"][0, :2], items[0].boxes, atol=1e-6)
    assert b["labels"][0, :2].tolist() == items[0].labels.tolist()
    assert (b["mask"].sum(axis=1) == 2).all()


def test_training_is_reproducible_per_epoch_and_changes_between_epochs(reg, items, tmp_path):
    a = DetectionData(items, cfg(tmp_path), reg, training=True, log=None)
    b = DetectionData(items, cfg(tmp_path, num_workers=1), reg, training=True, log=None)
    assert a.steps_per_epoch == 2  # 10 // 4, drop remainder
    e1a, e1b, e2 = batches(a, 1), batches(b, 1), batches(a, 2)
    for x, y in zip(e1a, e1b):
        for k in x:
            np.testing.assert_array_equal(x[k], y[k])
    assert not np.array_equal(e1a[0]["image"], e2[0]["image"])
    # the same image in two epochs is augmented differently (nothing cached after augmentation)
    i = int(e1a[0]["index"][0])
    assert not np.array_equal(a.sample(i, 1, 0).image, a.sample(i, 2, 0).image)
    np.testing.assert_array_equal(a.sample(i, 1, 0).image, a.sample(i, 1, 0).image)


def test_training_boxes_valid_and_mask_consistent(reg, items, tmp_path):
    data = DetectionData(items, cfg(tmp_path), reg, training=True, log=None)
    for b in batches(data, 0):
        m = b["mask"]
        assert ((b["labels"] >= 0) == m).all()
        assert (b["boxes"][~m] == 0).all()
        bx = b["boxes"][m]
        assert (bx[:, 2:] > 0).all() and (bx[:, :2] - bx[:, 2:] / 2 >= -1e-5).all()
        assert (bx[:, :2] + bx[:, 2:] / 2 <= 1 + 1e-5).all()
        assert (b["index"] >= 0).all()


def test_class_subset_remaps_and_drops(reg, items, tmp_path):
    data = DetectionData(items, cfg(tmp_path, class_ids=[2, 0], aug_ops=None), reg, training=False, log=None)
    for b in batches(data, 0):
        for j, i in enumerate(b["index"]):
            if i < 0:
                continue
            raw = items[i].labels.tolist()
            expected = [{2: 0, 0: 1}[r] for r in raw if r in (2, 0)]
            assert b["labels"][j][b["mask"][j]].tolist() == expected


def test_max_boxes_cap(reg, items, tmp_path):
    data = DetectionData(items, cfg(tmp_path, max_boxes=1, aug_ops=None), reg, training=False, log=None)
    b = data.make_batch(0, 0)
    assert b["boxes"].shape == (4, 1, 4) and b["mask"].all()


def test_small_training_set_gives_one_full_batch(reg, items, tmp_path):
    data = DetectionData(items[:3], cfg(tmp_path, batch_size=8), reg, training=True, log=None)
    out = batches(data, 0)
    assert len(out) == 1 and data.steps_per_epoch == 1 and sorted(set(out[0]["index"].tolist())) == [0, 1, 2]


def test_cache_is_built_once_and_reused(reg, items, tmp_path):
    c = cfg(tmp_path, aug_ops=None)
    first = DetectionData(items, c, reg, training=False, log=None)
    assert first.cache.built_now
    second = DetectionData(items, c, reg, training=False, log=None)
    assert not second.cache.built_now and second.cache.key == first.cache.key
    other = DetectionData(items, cfg(tmp_path, aug_ops=None, resize_mode="keras_bilinear"), reg, training=False,
                          log=None)
    assert other.cache.built_now and other.cache.key != first.cache.key
    ref = cv2.cvtColor(cv2.imread(items[3].image_path), cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(first.cache.images[3], cv2.resize(ref, (32, 32), interpolation=cv2.INTER_NEAREST))


def test_undecodable_image_is_dropped_with_message(reg, dataset_dir, tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0" + b"garbage" * 10)
    items = scan_dataset(dataset_dir, log=None).items[:3]
    items.insert(1, DatasetItem(str(bad), np.zeros((0, 4), np.float32), np.zeros((0,), np.int32)))
    logged: list[str] = []
    data = DetectionData(items, cfg(tmp_path, aug_ops=None), reg, training=False, log=logged.append)
    assert data.num_items == 3 and all(it.image_path != str(bad) for it in data.items)
    assert logged == [f"{bad}:1: cannot decode image — image skipped"] == data.dropped
    logged.clear()
    DetectionData(items, cfg(tmp_path, aug_ops=None), reg, training=False, log=logged.append)
    assert logged == data.dropped  # reported again when the cache is reused


def test_errors(reg, items, tmp_path):
    with pytest.raises(DataError):
        DetectionData([], cfg(tmp_path), reg, training=True, log=None)
    with pytest.raises(ConfigError, match="unknown resize 'nope'"):
        DetectionData(items, cfg(tmp_path, resize_mode="nope"), reg, training=True, log=None)
    with pytest.raises(ConfigError, match="unknown augmentation"):
        DetectionData(items, cfg(tmp_path, aug_ops=[("Nope", {})]), reg, training=True, log=None)


def test_dataset_can_start_mid_epoch_with_identical_batches(tmp_path):
    """Resume support: batches from ``start_step`` equal those of a full pass."""
    from utod.data.augment import load_aug_config
    from utod.data.dataset import scan_dataset
    from utod.data.pipeline import DetectionData, PipelineConfig
    from utod.data.synthetic import generate_shapes

    generate_shapes(tmp_path / "d", num_images=12, size=64, seed=1)
    items = scan_dataset(tmp_path / "d", log=lambda m: None, num_classes=3).items
    data = DetectionData(items, PipelineConfig(batch_size=4, aug_ops=load_aug_config(None), seed=3,
                                               cache_dir=str(tmp_path / "c")), training=True)
    full = list(data.numpy_batches(2))
    tail = list(data.numpy_batches(2, start_step=1))
    assert len(tail) == len(full) - 1
    for a, b in zip(full[1:], tail):
        np.testing.assert_array_equal(a["image"], b["image"])
        np.testing.assert_array_equal(a["boxes"], b["boxes"])
    assert len(list(data.dataset(2, start_step=2))) == len(full) - 2
    data.close()


def test_a_failing_third_party_augmentation_names_the_op_and_the_image(items, tmp_path):
    from utod import hookimpl
    from utod.data.augment import AugmentationError

    class Crashes:
        def __init__(self, prob: float = 1.0) -> None:
            self.prob = prob

        def __call__(self, sample, rng, pool=None):
            raise ValueError("kernel size must be odd")

    class WrongShape(Crashes):
        def __call__(self, sample, rng, pool=None):
            return type(sample)(sample.image[:8], sample.boxes, sample.labels)

    class Plugin:
        @hookimpl
        def register_augmentations(self, register):
            register("Crashes", Crashes, summary="always fails")
            register("WrongShape", WrongShape, summary="returns a cropped image")

    reg = build_registry(plugins=[(Plugin(), "acme", "acme-aug", "0.1")])
    for op, message in (("Crashes", "augmentation 'Crashes' failed: ValueError: kernel size must be odd"),
                        ("WrongShape", "changed the image shape to (8, 32, 3)")):
        data = DetectionData(items, cfg(tmp_path, aug_ops=[(op, {"prob": 1.0})]), reg, training=True, log=None)
        with pytest.raises(AugmentationError) as info:
            data.make_batch(0, 0)
        first = items[int(data.epoch_order(0)[0])].image_path
        assert str(info.value).startswith(f"{first} (epoch 1, batch 1): ") and message in str(info.value)
        data.close()
