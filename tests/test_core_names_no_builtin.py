"""The core (``utod/``) never names a built-in component: only ``utod/defaults.py`` may.

Every string literal in ``utod/**/*.py`` is compared with the names and aliases the built-in
plugin package (``utod_plugins``) registers. A literal equal to one of them outside the
defaults module means the core depends on a particular plugin (a default spelled in place,
a fallback, a special case) and fails this test. Put the name in ``utod/defaults.py`` and
import it, or, better, make the component declare what the core needs.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from utod import PROJECT_NAME
from utod.registry import build_registry

CORE = Path(__file__).resolve().parents[1] / "utod"
DEFAULTS_MODULE = CORE / "defaults.py"

# (file, literal): why the literal is not a component name. Keep this list short.
NOT_COMPONENT_NAMES = {
    ("utod/diagnostics/callback.py", "iou"): "a metadata key (the matching IoU threshold)",
}


def _builtin_names() -> dict[str, set[str]]:
    reg = build_registry()
    names: dict[str, set[str]] = {}
    for kind, comps in reg.components.items():
        for comp in comps:
            if comp.provider == PROJECT_NAME:
                for name in (comp.name, *comp.aliases):
                    names.setdefault(name, set()).add(kind)
    return names


def _literals(path: Path):
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            yield node.lineno, node.value


def test_builtins_are_found():
    names = _builtin_names()
    assert {"assigner", "iou_loss", "cls_loss", "head", "resize", "augmentation"} <= set().union(*names.values())


def test_core_names_no_builtin_outside_the_defaults_module():
    names = _builtin_names()
    # The plain head's name is also the project's name ("utod" as a program name, a folder, a
    # metadata key), so it is checked by the pattern below instead of by literal.
    names.pop(PROJECT_NAME, None)
    found = []
    for path in sorted(CORE.rglob("*.py")):
        if path == DEFAULTS_MODULE:
            continue
        for line, value in _literals(path):
            rel = path.relative_to(CORE.parent).as_posix()
            if value in names and (rel, value) not in NOT_COMPONENT_NAMES:
                found.append(f"{path.relative_to(CORE.parent)}:{line}: '{value}' ({', '.join(sorted(names[value]))})")
    assert not found, "built-in component names in the core (move them to utod/defaults.py):\n" + "\n".join(found)


def test_core_never_falls_back_to_the_plain_head_by_name():
    pattern = re.compile(r"head[^\n]*[\"']" + re.escape(PROJECT_NAME) + r"[\"']")
    found = []
    for path in sorted(CORE.rglob("*.py")):
        if path == DEFAULTS_MODULE:
            continue
        for i, text in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if pattern.search(text):
                found.append(f"{path.relative_to(CORE.parent)}:{i}: {text.strip()}")
    assert not found, "the core names the built-in head:\n" + "\n".join(found)


def test_the_check_would_catch_a_leak(tmp_path):
    leak = tmp_path / "leak.py"
    leak.write_text('def f(cfg):\n    return cfg.get("assigner", "simota")\n', encoding="utf-8")
    assert ("simota" in _builtin_names()) and any(v == "simota" for _, v in _literals(leak))
