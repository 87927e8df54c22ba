"""Checkpoints: round trip (anchors, wh_scale, BN statistics), metadata, clear errors."""

from __future__ import annotations

import subprocess
import sys
import zipfile

import numpy as np
import pytest

from utod import hookimpl
from utod.errors import CheckpointError
from utod.model.config import ModelConfig
from utod.model.io import load_checkpoint, read_checkpoint_meta, save_checkpoint

ANCHORS = [[0.1, 0.2], [0.3, 0.25], [0.5, 0.6], [0.05, 0.07]]


def test_round_trip_is_numerically_identical(tmp_path):
    from utod._keras import tf
    from utod.model.detector import build_model

    cfg = ModelConfig(cnn_width=8, num_classes=2, class_names=["cat", "dog"], class_ids=[15, 16], anchors=ANCHORS,
                      head="improved", head_options={"iou_aware": True, "use_head_ese": True},
                      use_batchnorm=True, residual=True, img_size=(64, 96))
    model = build_model(cfg)
    images = tf.random.uniform([3, 64, 96, 3], seed=5)
    model(images, training=True)  # move the BN moving statistics away from their init
    model.head.wh_scale.assign(tf.constant([[1.1, 0.9], [1.2, 1.0], [0.8, 1.3], [1.0, 1.05]]))
    expected = model(images, training=False).numpy()

    path = tmp_path / "runs" / "x" / "best.keras"
    save_checkpoint(path, model, extra={"epoch": 7, "map50": 0.5})
    assert path.exists() and not path.with_name("best.keras.tmp").exists()

    loaded, meta = load_checkpoint(path)
    np.testing.assert_array_equal(loaded(images, training=False).numpy(), expected)
    np.testing.assert_array_equal(loaded.anchors.numpy(), np.array(ANCHORS, np.float32))
    np.testing.assert_array_equal(loaded.head.wh_scale.numpy(), model.head.wh_scale.numpy())
    np.testing.assert_allclose(loaded.effective_anchors().numpy(), model.effective_anchors().numpy())
    assert loaded.config == cfg
    assert meta["extra"] == {"epoch": 7, "map50": 0.5}
    assert meta["model_config"]["class_names"] == ["cat", "dog"]
    assert meta["head"]["name"] == "improved" and meta["head"]["provider"] == "utod"
    assert meta["head"]["options"]["iou_aware"] is True


def test_anchors_travel_even_when_changed_after_build(tmp_path):
    from utod.model.detector import build_model

    model = build_model(ModelConfig(cnn_width=8))
    model.anchors.assign(np.array([[0.4, 0.4], [0.2, 0.1], [0.3, 0.3]], np.float32))
    save_checkpoint(tmp_path / "a.keras", model)
    loaded, _ = load_checkpoint(tmp_path / "a.keras")
    np.testing.assert_array_equal(loaded.anchors.numpy(), model.anchors.numpy())


def test_read_meta_does_not_import_tensorflow(tmp_path):
    from utod.model.detector import build_model

    path = save_checkpoint(tmp_path / "m.keras", build_model(ModelConfig(cnn_width=8)), extra={"epoch": 1})
    code = (
        "import sys, json; from utod.model.io import read_checkpoint_meta; "
        f"m = read_checkpoint_meta({str(path)!r}); "
        "print(json.dumps([m['extra']['epoch'], m['model_config']['cnn_width'], 'tensorflow' in sys.modules]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[1, 8, false]"


def test_missing_and_foreign_files(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        read_checkpoint_meta(tmp_path / "nope.keras")
    junk = tmp_path / "junk.keras"
    junk.write_text("hello")
    with pytest.raises(CheckpointError, match="not a utod checkpoint"):
        load_checkpoint(junk)
    other = tmp_path / "other.keras"
    with zipfile.ZipFile(other, "w") as zf:
        zf.writestr("config.json", "{}")
    with pytest.raises(CheckpointError, match="not a utod checkpoint"):
        read_checkpoint_meta(other)


class _FancyPlugin:
    @hookimpl
    def register_heads(self, register):
        register("fancy", "utod_plugins.impl.heads:UltraTinyODHead", summary="test head",
                 params={"iou_aware": False})


def test_missing_head_plugin_error_names_plugin(tmp_path):
    from utod.model.detector import build_model
    from utod.registry import build_registry

    with_fancy = build_registry(plugins=[(_FancyPlugin(), "fancy", "utod-fancy", "0.2")])
    model = build_model(ModelConfig(cnn_width=8, head="fancy", head_options={"iou_aware": True}), with_fancy)
    path = tmp_path / "runs" / "x" / "best.keras"
    save_checkpoint(path, model)
    loaded, _ = load_checkpoint(path, with_fancy)
    assert loaded.has_quality

    installed = build_registry()
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path, installed)
    assert {"improved", "utod"} <= set(installed.names("head"))
    assert str(err.value) == (
        f"checkpoint {path} needs head 'fancy' (from plugin 'utod-fancy 0.2'), which is not installed. "
        f"Available heads: {', '.join(installed.names('head'))}"
    )


def test_weight_mismatch_is_a_checkpoint_error(tmp_path):
    from utod.model.detector import build_model

    path = save_checkpoint(tmp_path / "m.keras", build_model(ModelConfig(cnn_width=8)))
    with zipfile.ZipFile(path) as zf:
        meta, weights = zf.read("utod.json"), zf.read("weights.npz")
    import json

    d = json.loads(meta)
    d["model_config"]["cnn_width"] = 16  # config no longer matches the stored tensors
    bad = tmp_path / "bad.keras"
    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr("utod.json", json.dumps(d))
        zf.writestr("weights.npz", weights)
    with pytest.raises(CheckpointError, match="shape"):
        load_checkpoint(bad)
