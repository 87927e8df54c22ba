"""--weights (initialise from a checkpoint, class count changes) and --device parsing."""

from __future__ import annotations

import json

import numpy as np
import pytest

from utod.devices import apply_device, parse_device, strategy_for
from utod.errors import ConfigError
from utod.finetune import checkpoint_settings, load_initial_weights


def _model(num_classes: int, width: int = 8, anchors=((0.1, 0.1), (0.3, 0.3))):
    from utod.model.config import ModelConfig
    from utod.model.detector import build_model
    from utod.registry import get_registry

    cfg = ModelConfig(img_size=(32, 32), num_classes=num_classes, cnn_width=width, head="improved",
                      use_batchnorm=True, anchors=[list(a) for a in anchors])
    return build_model(cfg, get_registry())


@pytest.fixture(scope="module")
def three_class_ckpt(tmp_path_factory):
    from utod.model.io import save_checkpoint

    model = _model(3)
    rng = np.random.default_rng(0)
    model.set_weights([rng.normal(size=w.shape).astype(np.float32) if "anchors" not in v.name else w
                       for v, w in zip(model.weights, model.get_weights())])
    path = tmp_path_factory.mktemp("ckpt") / "three.keras"
    save_checkpoint(path, model, {"train_config": {"cnn_width": 8, "use_batchnorm": True, "head": "improved",
                                                   "img_size": "32x32", "activation": "relu"}})
    return path, {v.name: w for v, w in zip(model.weights, model.get_weights())}


def test_other_class_count_copies_everything_but_the_class_output(three_class_ckpt):
    path, src = three_class_ckpt
    model = _model(1)
    logs: list[str] = []
    rep = load_initial_weights(model, str(path), logs.append)
    assert sorted(rep.reinitialised) == ["head/cls_out/bias", "head/cls_out/kernel"]
    assert rep.class_change == (3, 1) and not rep.mismatched
    assert rep.loaded == rep.total - 3  # anchors kept, class kernel + bias re-initialised
    assert "class count 3 -> 1" in logs[0] and "re-initialised" in logs[0]
    for v in model.weights:
        if "cls_out" in v.name or "anchors" in v.name:
            continue
        np.testing.assert_array_equal(v.numpy(), src[v.name])
    kernel = next(v for v in model.weights if "cls_out/kernel" in v.name).numpy()
    assert kernel.shape[-1] == 2 and np.abs(kernel).max() < 5  # fresh he_normal, not garbage


def test_same_network_copies_all_and_wh_scale_only_with_the_same_anchors(three_class_ckpt):
    path, src = three_class_ckpt
    same = _model(3)
    rep = load_initial_weights(same, str(path), lambda m: None)
    assert rep.loaded == rep.total - 1 and rep.skipped == ["anchors"]
    other = _model(3, anchors=((0.2, 0.2), (0.4, 0.4)))
    rep = load_initial_weights(other, str(path), lambda m: None)
    assert any(s.startswith("wh_scale") for s in rep.skipped)


def test_another_width_is_refused(three_class_ckpt):
    with pytest.raises(ConfigError, match="weight tensors fit"):
        load_initial_weights(_model(3, width=16), str(three_class_ckpt[0]), lambda m: None)


def test_network_settings_come_from_the_checkpoint_unless_given(three_class_ckpt):
    path, _ = three_class_ckpt
    got = checkpoint_settings(str(path), {"cnn_width": 16})
    assert "cnn_width" not in got and got["use_batchnorm"] is True and got["head"] == "improved"
    np.testing.assert_allclose(json.loads(got["anchors"]), [[0.1, 0.1], [0.3, 0.3]], rtol=1e-6)
    assert got["num_anchors"] == 2 and got["auto_anchors"] is False
    assert "anchors" not in checkpoint_settings(str(path), {"auto_anchors": True})


def test_device_parsing_and_strategy():
    assert parse_device(None) is None
    assert parse_device("cpu").cpu
    assert parse_device(" 0 ").gpus == (0,)
    assert parse_device("0,1").gpus == (0, 1) and parse_device("cuda:0,cuda:2").gpus == (0, 2)
    assert strategy_for(parse_device("0,1"), "default") == "mirrored"
    assert strategy_for(parse_device("0"), "mirrored") == "default"
    assert strategy_for(None, "mirrored") == "mirrored"
    for bad in ("gpu", "0,,1", "-1", "0,0"):
        with pytest.raises(ConfigError, match="--device"):
            parse_device(bad)


def test_missing_gpu_is_a_config_error_and_cpu_works():
    from utod._keras import tf

    n = len(tf.config.list_physical_devices("GPU"))
    with pytest.raises(ConfigError, match=f"no GPU {n} on this machine"):
        apply_device(parse_device(str(n)), lambda m: None)
    if n == 0:
        apply_device(parse_device("cpu"), lambda m: None)
