"""The Python API round trip on a tiny model: utod.train -> utod.load -> predict -> evaluate ->
export, on a data.yaml with list files; and the CLI's guard rail for a dataset without labels."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from utod.data.synthetic import CLASS_NAMES, generate_shapes


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("UTOD_CACHE_DIR", str(tmp_path / "cache"))


def _yaml_dataset(root: Path) -> Path:
    generate_shapes(root / "pool", num_images=24, size=64, seed=5)
    (root / "pool" / "obj.names").unlink()  # the names must come from the YAML
    imgs = sorted((root / "pool").glob("*.png"))
    (root / "train.txt").write_text("".join(f"./pool/{p.name}\n" for p in imgs[:16]))
    (root / "val.txt").write_text("".join(f"./pool/{p.name}\n" for p in imgs[16:]))
    names = {i: n for i, n in enumerate(CLASS_NAMES)}
    (root / "data.yaml").write_text(yaml.safe_dump({"train": "train.txt", "val": "val.txt", "names": names}))
    return root / "data.yaml"


def test_api_round_trip(tmp_path):
    import utod

    data = _yaml_dataset(tmp_path / "ds")
    run = utod.train(data=data, epochs=1, img_size="64x64", cnn_width=8, batch_size=8, lr=0.003,
                     classes="1,2", ckpt_out=str(tmp_path / "run"), no_aug=True)
    assert run.run_dir == tmp_path / "run" and run.best.is_file()
    assert 0.0 <= run.metrics["map50"] <= 1.0 and np.isfinite(run.metrics["val_loss"])
    assert (run.run_dir / "val.txt").read_text().count("\n") == 8  # the YAML's val set, not a re-split
    meta = json.loads((run.run_dir / "dataset.json").read_text())
    assert meta["layout"] == "ultralytics" and meta["names"] == list(CLASS_NAMES[1:3])

    model = utod.load(run.best)
    assert model.class_names == list(CLASS_NAMES[1:3])  # names from the YAML, --classes subset included
    img = sorted((tmp_path / "ds" / "pool").glob("*.png"))[0]
    one = model.predict(img, conf=0.0)
    assert isinstance(one, utod.Detections) and one.image_size == (64, 64)
    assert one.boxes.shape == (len(one), 4) and set(one.class_names) <= set(list(CLASS_NAMES[1:3]))
    assert len(one) and one.xyxy.shape == (len(one), 4) and one.rows()[0]["class_name"] in CLASS_NAMES
    many = model.predict([img, str(img)], conf=0.0)
    assert len(many) == 2 and np.allclose(many[0].scores, many[1].scores)
    import cv2

    arr = cv2.cvtColor(cv2.imread(str(img)), cv2.COLOR_BGR2RGB)
    np.testing.assert_allclose(model.predict(arr, conf=0.0).scores, one.scores, rtol=1e-5)
    folder = model.predict(tmp_path / "ds" / "pool")
    assert isinstance(folder, list) and len(folder) == 24

    res = model.evaluate(data, split="val")
    assert res["split"] == "val" and 0.0 <= res["map50"] <= 1.0
    res_cli = CliRunner().invoke(utod_cli(), ["eval", str(run.best), "--data", str(data), "--split", "val", "--json"])
    assert res_cli.exit_code == 0, res_cli.output
    assert json.loads(res_cli.stdout)["map50"] == pytest.approx(res["map50"])

    onnx = model.export(format="onnx", data=str(data))
    assert onnx.is_file() and onnx.suffix == ".onnx"
    exported = utod.load(onnx)
    assert exported.class_names == list(CLASS_NAMES[1:3])
    assert exported.evaluate(data, split="val")["map50"] == pytest.approx(res["map50"], abs=0.02)
    from utod.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown option"):
        model.export(format="onnx", not_an_option=1)


def utod_cli():
    from utod.cli import cli

    return cli


def test_train_unknown_option_is_named(tmp_path):
    import utod
    from utod.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown setting 'epoch'.*'epochs'"):
        utod.train(data=tmp_path, epoch=3)


def test_cli_train_on_a_folder_without_labels_exits_2(tmp_path):
    generate_shapes(tmp_path / "d", num_images=6, size=64, seed=1)
    for p in (tmp_path / "d").glob("shapes_*.txt"):
        p.unlink()
    res = CliRunner().invoke(utod_cli(), ["train", "--data", str(tmp_path / "d"), "--ckpt-out", str(tmp_path / "r"),
                                          "--epochs", "1", "--cnn-width", "8"])
    assert res.exit_code == 2
    assert "none of the 6 images" in res.output and "Looked for these layouts" in res.output
    assert not list((tmp_path / "r").glob("*.keras"))


def test_import_utod_stays_light():
    code = "import sys, utod; utod.train; assert 'tensorflow' not in sys.modules, 'TF imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_seed_command_names_travel_with_a_classes_subset(tmp_path):
    """The seed's README: --image-dir <cvat export>/obj_train_data --classes 0, obj.names one
    folder up. The checkpoint and the predictions call class 0 by its name, not 'class0'."""
    from utod.model.io import load_checkpoint

    export = tmp_path / "wholebody"
    generate_shapes(export / "obj_train_data", num_images=12, size=64, seed=2)
    (export / "obj_train_data" / "obj.names").rename(export / "obj.names")
    run = tmp_path / "run"
    res = CliRunner().invoke(utod_cli(), [
        "train", "--image-dir", str(export / "obj_train_data"), "--classes", "0", "--epochs", "1",
        "--cnn-width", "8", "--batch-size", "4", "--img-size", "64x64", "--ckpt-out", str(run), "--no-aug"])
    assert res.exit_code == 0, res.output
    _, meta = load_checkpoint(run / "last.keras")
    assert json.dumps(meta).count(f'"{CLASS_NAMES[0]}"') >= 1 and "class0" not in json.dumps(meta)
    out = tmp_path / "pred"
    res = CliRunner().invoke(utod_cli(), ["predict", str(run / "last.keras"), str(export / "obj_train_data"),
                                          "--out", str(out), "--no-draw", "--conf-thresh", "0.0"])
    assert res.exit_code == 0, res.output
    data = json.loads((out / "detections.json").read_text())
    records = data["images"] if isinstance(data, dict) else data
    rows = [d for r in records for d in r["detections"]]
    assert rows and {d["class_name"] for d in rows} == {CLASS_NAMES[0]}
