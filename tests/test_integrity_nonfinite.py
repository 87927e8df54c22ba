"""Nothing non-finite becomes a score, a best/last checkpoint or a train state offered for
resuming; a diverged run stops in one line naming only a state verified finite."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from utod.cli import cli
from utod.data.synthetic import generate_shapes
from utod.errors import ConfigError, NonFiniteError


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("UTOD_CACHE_DIR", str(tmp_path / "cache"))


def _tensors_finite(prefix: str) -> bool:
    from utod._keras import tf

    reader = tf.train.load_checkpoint(prefix)
    for key in reader.get_variable_to_shape_map():
        value = np.asarray(reader.get_tensor(key))
        if np.issubdtype(value.dtype, np.floating) and not np.isfinite(value).all():
            return False
    return True


def test_diverged_run_records_no_score_and_no_nonfinite_file(tmp_path):
    """--lr 1e6 with BatchNorm: the moving statistics blow up, validation outputs go NaN,
    then the loss does. Whatever the exact path, no NaN is scored or saved."""
    data = tmp_path / "data"
    generate_shapes(data, num_images=24, size=32, seed=3)
    run = tmp_path / "run"
    res = CliRunner().invoke(cli, ["train", "--image-dir", str(data), "--img-size", "32", "--cnn-width", "8",
                                   "--batch-size", "8", "--epochs", "4", "--lr", "1e6", "--use-batchnorm",
                                   "--num-workers", "1", "--ckpt-out", str(run)])
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output
    errors = [ln for ln in res.output.splitlines() if ln.startswith("Error:")]
    assert len(errors) == 1 and "non-finite" in errors[0]
    line = errors[0]
    if "verified finite: " in line:  # the named state really is finite
        prefix = line.split("verified finite: ", 1)[1].split(";", 1)[0]
        assert _tensors_finite(prefix)
    else:
        assert "No train state with finite weights was saved" in line
    with (run / "results.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert rows, res.output
    for r in rows:
        if r["val_loss"] and not math.isfinite(float(r["val_loss"])):
            assert r["map50"] == r["map50_95"] == r["precision"] == r["recall"] == "", r
    assert "not scored (mAP not available" in res.output
    assert not list(run.glob("best*.keras"))
    from utod.model.io import nonfinite_weights, read_checkpoint_meta, read_weights

    for ckpt in run.glob("*.keras"):
        meta = read_checkpoint_meta(ckpt)
        assert nonfinite_weights(read_weights(ckpt, meta), meta) == [], ckpt


def _state(tmp_path):
    from utod._keras import keras
    from utod.train.state import TrainState

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    opt = keras.optimizers.AdamW(1e-3)
    opt.build(model.trainable_variables)
    return model, TrainState(tmp_path / "run", model=model, optimizer=opt)


def test_state_with_nonfinite_weights_is_never_saved(tmp_path):
    model, state = _state(tmp_path)
    first = state.save()
    assert state.verified == first
    w = model.trainable_variables[0]
    w.assign(np.full(w.shape, np.nan, np.float32))
    with pytest.raises(NonFiniteError, match=f"state was not saved. Newest train state verified finite: {first}"):
        state.save()
    assert state.latest == first


def test_resume_passes_over_a_nonfinite_state(tmp_path):
    model, state = _state(tmp_path)
    w = model.trainable_variables[0]
    w.assign(np.ones(w.shape, np.float32))
    good = state.save()
    state.optimizer.iterations.assign_add(1)
    w.assign(np.full(w.shape, np.inf, np.float32))
    state.manager.save(checkpoint_number=state.global_step)  # as an older utod would have
    said: list[str] = []
    model2, state2 = _state(tmp_path)
    assert state2.restore(log=said.append) == (0, 0)
    assert state2.verified == good and np.all(model2.trainable_variables[0].numpy() == 1)
    assert "non-finite values" in said[0]
    for f in Path(good).parent.glob(f"{Path(good).name}.*"):
        f.unlink()
    _, state3 = _state(tmp_path)
    with pytest.raises(ConfigError, match="no train state reads back .*non-finite"):
        state3.restore(log=None)


def test_validation_with_nonfinite_outputs_is_not_scored():
    from utod._keras import tf
    from utod.data.dataset import DatasetItem
    from utod.loss import LOSS_KEYS
    from utod.model.config import ModelConfig
    from utod.train.validate import Validator

    items = [DatasetItem(f"im{i}.png", np.array([[0.5, 0.5, 1.0, 1.0]], np.float32), np.array([0], np.int32))
             for i in range(2)]

    class Data:
        def __init__(self):
            self.items = items

        def numpy_batches(self, epoch):
            yield {"index": np.arange(2, dtype=np.int32)}

    def step(batch, finite_loss=True):
        # a full-image box with score 1 (what NaN outputs decode to), a finite loss, NaN raw outputs
        dets = tf.constant([[[1.0, 0.0, 0.5, 0.5, 1.0, 1.0]]] * 2, tf.float32)
        losses = {k: tf.constant(0.1) for k in LOSS_KEYS}
        losses["raw_finite"] = tf.constant(False)
        return losses, dets, tf.constant([1, 1], tf.int32)

    logged: list[str] = []
    v = Validator(step, Data(), ModelConfig(num_classes=1, class_names=["box"], cnn_width=8), logged.append)
    try:
        result = v.run(1)
    finally:
        v.close()
    assert result.metrics["map50"] is None and result.metrics["map50_95"] is None
    assert "not scored" in logged[0]
