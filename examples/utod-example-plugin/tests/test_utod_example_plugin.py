"""Tests a plugin author would ship: each component checked against its utod contract.

Run: ``pytest examples/utod-example-plugin/tests`` (after ``pip install -e
examples/utod-example-plugin``). The registry is built from the registration module
directly, so these tests do not depend on what else is installed.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import utod_example_plugin
from utod_example_plugin import plugin

from utod.registry import build_registry
from utod.sdk import Assignment, Sample


@pytest.fixture(scope="module")
def registry():
    reg = build_registry(load_entry_points=False,
                         plugins=[(plugin, "example", "utod-example-plugin", utod_example_plugin.__version__)])
    assert reg.failures == []
    return reg


def test_registration_does_not_import_tensorflow():
    code = ("import sys, utod_example_plugin.plugin; "
            "assert 'tensorflow' not in sys.modules, 'registration imported TensorFlow'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_every_component_builds_with_its_defaults(registry):
    for kind, name in [("iou_loss", "diou"), ("iou_loss", "eiou"), ("assigner", "atss"),
                       ("augmentation", "GridMask")]:
        assert registry.create(kind, name) is not None


@pytest.mark.parametrize("name", ["diou", "eiou"])
def test_iou_loss_contract(registry, name):
    from utod._keras import tf

    fn = registry.create("iou_loss", name)
    boxes = tf.constant([[0.5, 0.5, 0.2, 0.3], [0.3, 0.6, 0.1, 0.1]])
    np.testing.assert_allclose(fn(boxes, boxes).numpy(), 1.0, atol=1e-5)  # identical -> 1
    worse = fn(boxes, boxes + [0.05, 0.0, 0.0, 0.0]).numpy()
    assert (worse < 1.0).all() and worse.shape == (2,)
    pred = tf.Variable(boxes + 0.01)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(1.0 - fn(pred, boxes))
    assert np.isfinite(tape.gradient(loss, pred).numpy()).all()


def test_assigner_contract(registry):
    from utod._keras import tf

    b, a, h, w, c = 2, 2, 4, 4, 3
    gt = tf.constant([[[0.5, 0.5, 0.4, 0.4]], [[0.0, 0.0, 0.0, 0.0]]])
    out = tf.function(registry.create("assigner", "atss"))(
        tf.fill([b, a, h, w, 4], 0.5), tf.zeros([b, a, h, w, c]), tf.zeros([b, a, h, w]), gt,
        tf.constant([[2], [-1]]), tf.constant([[True], [False]]), tf.constant([[0.25, 0.25], [0.5, 0.5]]), c, False)
    assert isinstance(out, Assignment)
    assert out.pos_mask.shape == (b, a, h, w) and out.cls_targets.shape == (b, a, h, w, c)
    pos = out.pos_mask.numpy()
    assert pos[0].sum() >= 1 and pos[1].sum() == 0  # image 1 has no box
    assert (out.cls_targets.numpy()[0][pos[0] > 0] == [0, 0, 1]).all()


def test_augmentation_contract(registry):
    aug = registry.create("augmentation", "GridMask", {"prob": 1.0})
    sample = Sample(np.ones((16, 16, 3), np.float32), np.array([[0.5, 0.5, 0.5, 0.5]], np.float32),
                    np.array([0], np.int32))
    out = aug(sample, np.random.default_rng(0), None)
    assert isinstance(out, Sample) and out.image.shape == (16, 16, 3) and out.image.dtype == np.float32
    assert 0.0 < out.image.mean() < 1.0 and len(out.boxes) == len(out.labels) == 1


@pytest.mark.parametrize(("kind", "name"), [("iou_loss", "diou"), ("iou_loss", "eiou"), ("assigner", "atss"),
                                            ("augmentation", "GridMask")])
def test_utod_contract_kit(registry, kind, name):
    """utod's own contract checks (shapes, dtypes, tf.function, determinism, thread safety)."""
    from utod.sdk.testing import check_component

    check_component(registry, kind, name)
