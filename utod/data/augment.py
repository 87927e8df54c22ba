"""Augmentation configs (the seed's aug.yaml format) and the per-sample augmenter.

YAML layouts accepted (docs/pipeline.md §3.1):

* ``data_augment:`` holding an ordered mapping ``OpName: value`` (the seed's);
* a bare op mapping as the whole document;
* the PyTorch reference's ``data_augment_pre:`` / ``data_augment_post:`` — concatenated, pre ops first (the seed
  silently ran nothing for this layout). Mixing it with ``data_augment:`` is an error.

Values (docs/pipeline.md §3.2): ``null`` removes the op; a mapping gives parameters (``prob`` optional,
otherwise the op's default); a bare number (or bool) sets the op's ``scalar_params``
(``prob`` for most ops, ``min_area`` for RemoveOutliers, ``prob`` and ``ratio`` for
RandomCrop). Unlike the seed, a bare number is accepted for every op. Unknown op names and unknown
parameters are ``ConfigError`` naming the YAML file and listing what exists.

A missing file given explicitly is an error (the seed fell back to the defaults with a print);
``path=None`` uses the shipped default (``utod/data/default_aug.yaml``, the seed's default).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from utod.components import Sample
from utod.errors import ConfigError
from utod.registry import PluginError, Registry, get_registry, validate_options

KIND = "augmentation"
DEFAULT_AUG_PATH = Path(__file__).with_name("default_aug.yaml")

AugOps = list[tuple[str, dict[str, Any]]]


class AugmentationError(PluginError):
    """An augmentation raised or broke its contract (message names the op, later the image)."""


def _read_yaml(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"aug config '{path}' not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"aug config '{path}' cannot be read: {exc}") from exc
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        raise ConfigError(f"{where}: invalid YAML: {getattr(exc, 'problem', None) or exc}") from exc


def _op_mapping(doc: Any, where: str) -> list[tuple[str, Any]]:
    """The ordered ``(op, value)`` pairs of a loaded document by the module's layouts."""
    if doc is None:
        return []
    if not isinstance(doc, Mapping):
        raise ConfigError(f"{where}: expected a mapping of augmentation ops, got {type(doc).__name__}")
    pre_post = [k for k in ("data_augment_pre", "data_augment_post") if k in doc]
    if pre_post and "data_augment" in doc:
        raise ConfigError(f"{where}: use either 'data_augment:' or 'data_augment_pre:'/'data_augment_post:', not both")
    if pre_post:
        sections = [doc.get("data_augment_pre"), doc.get("data_augment_post")]
    elif "data_augment" in doc:
        sections = [doc.get("data_augment")]
    else:
        sections = [doc]
    pairs: list[tuple[str, Any]] = []
    for sec in sections:
        if sec is None:
            continue
        if not isinstance(sec, Mapping):
            raise ConfigError(f"{where}: an augmentation section must be a mapping 'OpName: params', "
                              f"got {type(sec).__name__}")
        pairs.extend((str(k), v) for k, v in sec.items())
    return pairs


def resolve_ops(pairs: Sequence[tuple[str, Any]], registry: Registry | None = None,
                where: str = "augmentations") -> AugOps:
    """Turn ``(op, yaml value)`` pairs into validated ``(canonical name, params)``.

    ``where`` prefixes error messages (the YAML file). ``None`` values are dropped.
    """
    reg = registry or get_registry()
    out: AugOps = []
    for name, value in pairs:
        if value is None:
            continue
        try:
            comp = reg.get(KIND, name)
        except PluginError as exc:
            raise ConfigError(f"{where}: {exc}") from exc
        if isinstance(value, (bool, int, float)):
            scalars = getattr(comp.load(), "scalar_params", ("prob",))
            number = float(value) if isinstance(value, bool) else value  # `ToGray: true` -> prob 1.0
            params: dict[str, Any] = {p: number for p in scalars}
        elif isinstance(value, Mapping):
            params = {str(k): v for k, v in value.items()}
        else:
            raise ConfigError(f"{where}: augmentation '{name}' expects a number or a mapping of parameters, "
                              f"got {value!r}")
        try:
            params = validate_options(comp, params)
        except PluginError as exc:
            raise ConfigError(f"{where}: {exc}") from exc
        out.append((comp.name, params))
    return out


def load_aug_config(path: str | os.PathLike | None, no_aug: bool = False,
                    registry: Registry | None = None) -> AugOps:
    """Ordered ``[(op name, params)]`` from an aug.yaml (``None``: the shipped default).

    ``no_aug`` returns ``[]``. ``registry`` defaults to the process registry.
    """
    if no_aug:
        return []
    p = Path(path) if path is not None else DEFAULT_AUG_PATH
    return resolve_ops(_op_mapping(_read_yaml(p), str(p)), registry, where=f"aug config '{p}'")


@dataclass
class _Step:
    name: str
    transform: Any
    prob: float
    always: bool
    samples_needed: int


class Augmenter:
    """Applies transforms in order, each with its probability. Pure numpy/OpenCV, thread-safe
    as long as each call gets its own ``rng``.

    ``__call__(sample, rng, pool) -> Sample``: per op, unless it is ``always_apply``, one
    ``rng.random()`` is drawn and the op runs when it is ``< prob``. Multi-image ops
    (``samples_needed > 1``) are skipped when ``pool`` is None.
    """

    def __init__(self, steps: list[_Step]) -> None:
        self.steps = steps

    @property
    def needs_pool(self) -> bool:
        return any(s.samples_needed > 1 for s in self.steps)

    def __len__(self) -> int:
        return len(self.steps)

    def __call__(self, sample: Sample, rng: np.random.Generator, pool: Any = None) -> Sample:
        for step in self.steps:
            if not step.always and not rng.random() < step.prob:
                continue
            if step.samples_needed > 1 and pool is None:
                continue
            try:
                sample = step.transform(sample, rng, pool)
            except Exception as exc:
                raise AugmentationError(f"augmentation '{step.name}' failed: {type(exc).__name__}: {exc}") from exc
            if len(sample.boxes) != len(sample.labels):
                raise AugmentationError(f"augmentation '{step.name}' returned {len(sample.boxes)} boxes "
                                        f"but {len(sample.labels)} labels")
        return sample


def build_augmenter(registry: Registry | None, ops: Sequence[tuple[str, Mapping[str, Any]]]) -> Augmenter:
    """Build every op of ``ops`` through the registry (options validated again)."""
    reg = registry or get_registry()
    steps = []
    for name, params in ops:
        try:
            comp = reg.get(KIND, name)
            opts = validate_options(comp, dict(params))
            obj = reg.create(KIND, name, opts)
        except PluginError as exc:
            raise ConfigError(str(exc)) from exc
        factory = type(obj)
        prob = getattr(obj, "prob", opts.get("prob", comp.params.get("prob", 1.0)))
        steps.append(_Step(
            name=comp.name,
            transform=obj,
            prob=float(prob),
            always=bool(getattr(obj, "always_apply", getattr(factory, "always_apply", False))),
            samples_needed=int(getattr(obj, "samples_needed", 1)),
        ))
    return Augmenter(steps)
