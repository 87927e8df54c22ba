"""The seed's flags that name built-in components map onto registry choices and options."""

from __future__ import annotations

import dataclasses

import pytest

from utod.config import TrainConfig, build_config
from utod.errors import ConfigError
from utod.seed_compat import assigner_options_from_flags, head_name, head_options_from_flags

DEFAULTS = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
HEAD_PARAMS = {"use_head_ese": False, "iou_aware": False, "cls_bottleneck_ratio": 0.5, "large_obj_branch": False,
               "large_obj_depth": 1, "large_obj_ch_scale": 1.0}


def test_seed_head_flags_become_head_options():
    cfg = build_config({"use_improved_head": True, "use_iou_aware_head": True, "utod_large_obj_branch": True,
                        "utod_large_obj_depth": 2, "utod_large_obj_ch_scale": 1.25, "use_head_ese": True})
    assert head_name(cfg) == "improved"
    opts = head_options_from_flags(cfg, HEAD_PARAMS, DEFAULTS)
    assert opts == {"use_head_ese": True, "iou_aware": True, "cls_bottleneck_ratio": 0.5, "large_obj_branch": True,
                    "large_obj_depth": 2, "large_obj_ch_scale": 1.25}
    assert head_name(build_config({"head": "fancy", "use_improved_head": True})) == "fancy"


def test_seed_flag_unsupported_by_a_third_party_head_is_an_error():
    cfg = build_config({"head": "fancy", "utod_large_obj_branch": True})
    with pytest.raises(ConfigError, match="--utod-large-obj-branch is not supported by head 'fancy'"):
        head_options_from_flags(cfg, {"width": 1}, DEFAULTS)
    assert head_options_from_flags(build_config({"head": "fancy"}), {"width": 1}, DEFAULTS) == {}


def test_simota_topk_flag():
    cfg = build_config({"assigner": "simota", "simota_topk": 12})
    assert assigner_options_from_flags(cfg, {"topk": 10}, {}) == {"topk": 12}
    assert assigner_options_from_flags(cfg, {"topk": 10}, {"topk": 5}) == {"topk": 5}
    with pytest.raises(ConfigError, match="assigner 'legacy' has no 'topk' option"):
        assigner_options_from_flags(build_config({"assigner": "legacy", "simota_topk": 3}), {}, {})
