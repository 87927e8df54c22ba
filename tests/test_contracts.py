"""The contract test kit (utod.sdk.testing) run over EVERY installed component: the built-ins
and the example plugin package (through a fake ``utod`` entry point, as if pip-installed).
Also: the kit catches broken components (each rule is seen to fail once)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from utod.components import KINDS, Sample
from utod.registry import build_registry
from utod.sdk import testing as kit

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

PACKAGE = Path(__file__).resolve().parents[1] / "examples" / "utod-example-plugin"
PROJECT = tomllib.loads((PACKAGE / "pyproject.toml").read_text(encoding="utf-8"))["project"]


@pytest.fixture
def installed(fake_distributions, monkeypatch):
    """The real installed plugins plus utod-example-plugin from its own pyproject.toml."""
    monkeypatch.syspath_prepend(str(PACKAGE / "src"))
    for mod in [m for m in sys.modules if m.startswith("utod_example_plugin")]:
        monkeypatch.delitem(sys.modules, mod)
    fake_distributions([(PROJECT["name"], PROJECT["version"], PROJECT["entry-points"]["utod"])], keep_real=True)
    reg = build_registry()
    assert not reg.failures, reg.failures
    return reg


@pytest.mark.parametrize("kind", KINDS)
def test_every_installed_component_keeps_its_contract(installed, kind):
    results = kit.check_registry(installed, kinds=(kind,))
    assert len(results) == len(installed.components[kind]) > 0
    failed = [f"{r.provider}:{r.name}: {r.error}" for r in results if not r.ok]
    assert not failed, "\n".join(failed)
    providers = {r.provider for r in results}
    assert "utod" in providers
    if kind in ("assigner", "iou_loss", "augmentation"):
        assert PROJECT["name"] in providers  # the example plugin's components were checked too


# ---------------------------------------------------------------------------- the kit bites
def _boxes(n=1):
    return np.array([[0.5, 0.5, 0.4, 0.4]] * n, np.float32)


class _Flip:
    prob = 1.0

    def __call__(self, sample, rng, pool):
        return Sample(sample.image[:, ::-1].copy(), sample.boxes.copy(), sample.labels.copy())


def test_a_correct_augmentation_passes():
    kit.check_augmentation(_Flip())


@pytest.mark.parametrize(("broken", "rule"), [
    ("inplace", "must not modify the input"),
    ("global_rng", "same rng seed"),
    ("shared_state", "not thread-safe"),
    ("float64", "float32"),
    ("range", r"\[0, 1\]"),
])
def test_broken_augmentations_are_caught(broken, rule):
    import threading
    import time

    class Broken(_Flip):
        def __init__(self):
            self.buffer = None
            self.lock = threading.Lock()

        def __call__(self, sample, rng, pool):
            if broken == "inplace":
                sample.image[0, 0] = 0.0
                return Sample(sample.image, sample.boxes, sample.labels)
            if broken == "global_rng":
                return Sample(np.clip(sample.image + np.random.uniform(-0.1, 0.1), 0, 1).astype(np.float32),
                              sample.boxes, sample.labels)
            if broken == "shared_state":  # a scratch buffer on self: races between threads
                self.buffer = sample.image[:, ::-1].copy()
                time.sleep(0.002)
                return Sample(self.buffer, sample.boxes, sample.labels)
            if broken == "float64":
                return Sample(sample.image.astype(np.float64), sample.boxes, sample.labels)
            return Sample(sample.image * 2.0, sample.boxes, sample.labels)

    with pytest.raises(kit.ContractError, match=rule):
        kit.check_augmentation(Broken())


def test_broken_resize_is_caught():
    import cv2

    class SharedBuffer:  # reuses one output array: wrong as soon as two threads resize at once
        out = None

        def __call__(self, image, size):
            import time

            self.out = cv2.resize(image, (size[1], size[0]))
            time.sleep(0.001)
            return self.out

    with pytest.raises(kit.ContractError, match="thread-safe"):
        kit.check_resize(SharedBuffer())
    with pytest.raises(kit.ContractError, match="uint8"):
        kit.check_resize(lambda image, size: cv2.resize(image, (size[1], size[0])).astype(np.float32))


def test_broken_iou_loss_and_assigner_are_caught():
    from utod._keras import tf
    from utod.sdk import Assignment, boxes

    with pytest.raises(kit.ContractError, match="identical boxes"):
        kit.check_iou_loss(lambda p, t: boxes.iou(p, t) * 0.5)

    def leaky(pred, cls, obj, gt, labels, mask, anchors, num_classes, has_quality):
        shape = tf.shape(pred)[:4]
        pos = tf.zeros(shape)
        pos = tf.tensor_scatter_nd_update(pos, [[0, 0, 0, 0]], [1.0])  # positive even without boxes
        return Assignment(pos, pred, tf.zeros(tf.concat([shape, [num_classes]], 0)))

    with pytest.raises(kit.ContractError, match="without boxes got positives"):
        kit.check_assigner(leaky)


def test_head_contract_needs_a_declared_score_mode():
    from utod_plugins.impl.heads import UltraTinyODHead

    kit.check_head(UltraTinyODHead)

    class NoMode(UltraTinyODHead):
        def __init__(self, *a, **kw):
            super().__init__(*a, **kw)
            self.default_score_mode = None

    with pytest.raises(kit.ContractError, match="default_score_mode"):
        kit.check_head(NoMode)


def test_every_kind_has_a_protocol_and_a_check():
    from utod.components import PROTOCOL_FOR_KIND

    assert set(PROTOCOL_FOR_KIND) == set(KINDS)
    assert set(kit.CHECKS) | {"head"} == set(KINDS)  # heads are checked through their factory
