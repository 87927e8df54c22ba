"""The component registry: loading, isolation of broken plugins, conflicts, lookups, options."""

from __future__ import annotations

import sys

import pytest

from utod import hookimpl
from utod.components import KINDS
from utod.registry import (
    BrokenComponentError,
    Component,
    ComponentConflictError,
    ComponentOptionError,
    PluginError,
    UnknownComponentError,
    build_registry,
    get_registry,
    parse_option_pairs,
    set_registry,
    validate_options,
)


class Legacy:
    """Centre-cell assigner (fake)."""

    def __init__(self, radius: int = 0):
        self.radius = radius


class SimOTA:
    """Dynamic-k assigner (fake)."""

    def __init__(self, topk: int = 10, center_radius: float = 2.5, use_cost: bool = True):
        self.topk, self.center_radius, self.use_cost = topk, center_radius, use_cost


class AssignerPlugin:
    """A plugin object, as a test would write one: methods named after the hooks."""

    @hookimpl
    def register_assigners(self, register):
        register("legacy", Legacy)
        register("simota", SimOTA, aliases=("sim-ota",))


def _plugin(kind_hook: str, *components: tuple) -> object:
    """A plugin object whose hook ``kind_hook`` registers ``(name, factory[, params])``."""

    def hook(register):
        for name, factory, *params in components:
            register(name, factory, **({"params": params[0]} if params else {}))

    return type("Plugin", (), {kind_hook: staticmethod(hook)})()


def _fake_registry():
    return build_registry(load_entry_points=False, plugins=[(AssignerPlugin(), "fake", "fake-dist", "1.2")])


# --------------------------------------------------------------------------- registering
def test_fake_plugin_registers_components_with_provider_and_defaults():
    reg = _fake_registry()
    assert reg.names("assigner") == ["legacy", "simota"]
    comp = reg.get("assigner", "simota")
    assert (comp.provider, comp.version, comp.plugin) == ("fake-dist", "1.2", "fake")
    assert comp.summary == "Dynamic-k assigner (fake)."
    assert comp.params == {"topk": 10, "center_radius": 2.5, "use_cost": True}
    assert comp.qualified_name == "fake-dist:simota"
    assert reg.get("assigner", "SIM-OTA") is comp  # aliases and case-insensitive lookup
    built = reg.create("assigner", "simota", {"topk": "12"})
    assert isinstance(built, SimOTA) and built.topk == 12 and built.center_radius == 2.5
    assert all(reg.names(k) == [] for k in KINDS if k != "assigner")


def test_explicit_params_and_summary_override_the_signature():
    def register(register):
        register("centre", SimOTA, summary="my summary", params={"topk": 3})

    reg = build_registry(load_entry_points=False,
                         plugins=[(type("P", (), {"register_assigners": staticmethod(register)})(), "p", "p", "0")])
    comp = reg.get("assigner", "centre")
    assert comp.summary == "my summary" and comp.params == {"topk": 3}
    with pytest.raises(ComponentOptionError, match="has no option 'center_radius'"):
        reg.create("assigner", "centre", {"center_radius": 1.0})


def test_lazy_string_factory_is_imported_only_when_created(plugin_modules):
    mod = plugin_modules("utod_test_lazy_losses", """
        class L1:
            '''L1 similarity (test).'''
            def __init__(self, scale=1.0):
                self.scale = scale
    """)
    reg = build_registry(load_entry_points=False, plugins=[
        (_plugin("register_iou_losses", ("l1", f"{mod}:L1", {"scale": 1.0})), "lazy", "lazy-dist", "0.1")])
    assert mod not in sys.modules
    row = reg.rows("iou_loss")[0]
    assert row["summary"] == "" and row["params"] == {"scale": 1.0}
    built = reg.create("iou_loss", "l1", {"scale": 2})
    assert mod in sys.modules and built.scale == 2.0 and isinstance(built.scale, float)


def test_lazy_factory_that_fails_to_import_shows_the_original_cause(plugin_modules):
    mod = plugin_modules("utod_test_broken_impl", "import utod_no_such_dependency\n")
    reg = build_registry(load_entry_points=False, plugins=[
        (_plugin("register_iou_losses", ("bad", f"{mod}:Bad", {}), ("missing_attr", "json:NoSuchThing", {})),
         "broken-impl", "broken-dist", "0.3")])
    with pytest.raises(BrokenComponentError) as info:
        reg.create("iou_loss", "bad")
    text = str(info.value)
    assert "broken-dist 0.3" in text and f"{mod}:Bad" in text
    assert "ModuleNotFoundError" in text and "utod_no_such_dependency" in text
    assert isinstance(info.value.__cause__, ModuleNotFoundError)
    with pytest.raises(BrokenComponentError, match="AttributeError"):
        reg.create("iou_loss", "missing_attr")
    # --check equivalent: both are marked broken, with the error in their rows.
    broken = reg.check()
    assert {c.name for c in broken} == {"bad", "missing_attr"}
    assert all(r["status"] == "broken" and r["error"] for r in reg.rows("iou_loss"))


def test_component_names_must_be_non_empty_strings():
    reg = build_registry(load_entry_points=False, plugins=[
        (_plugin("register_heads", ("  ", Legacy)), "blank", "blank-dist", "1")])
    assert reg.names("head") == []
    assert "non-empty string" in reg.failures[0].error


# --------------------------------------------------------------------------- isolation
def test_hook_that_raises_is_reported_and_skipped():
    class Raising:
        @hookimpl
        def register_assigners(self, register):
            register("early", Legacy)  # registered before the failure: must not survive
            raise RuntimeError("cannot find CUDA")

    reg = build_registry(load_entry_points=False, plugins=[
        (Raising(), "raising", "raising-dist", "0.1"), (AssignerPlugin(), "fake", "fake-dist", "1.2")])
    assert reg.names("assigner") == ["legacy", "simota"]
    (failure,) = reg.failures
    assert (failure.plugin, failure.provider, failure.version) == ("raising", "raising-dist", "0.1")
    assert failure.error == "register_assigners failed: RuntimeError: cannot find CUDA"
    assert "Traceback" in failure.traceback
    assert not reg.plugin_manager.has_plugin("raising")


def test_misspelled_hook_is_reported():
    class Typo:
        @hookimpl
        def register_iou_loss(self, register):  # missing the final "es"
            register("x", Legacy)

    reg = build_registry(load_entry_points=False, plugins=[(Typo(), "typo", "typo-dist", "1")])
    assert reg.names("iou_loss") == []
    assert "unknown hook(s) register_iou_loss" in reg.failures[0].error


def test_registering_the_same_plugin_name_twice_is_a_failure_not_a_crash():
    reg = build_registry(load_entry_points=False, plugins=[
        (AssignerPlugin(), "fake", "fake-dist", "1"), (AssignerPlugin(), "fake", "other-dist", "2")])
    assert len(reg.components["assigner"]) == 2
    assert reg.failures[0].provider == "other-dist" and "already registered" in reg.failures[0].error


GOOD_PLUGIN = """
from utod import hookimpl

@hookimpl
def register_assigners(register):
    register("legacy", "utod_test_nowhere:Legacy", summary="centre cell", params={"radius": 0})
    register("simota", "utod_test_nowhere:SimOTA", summary="dynamic k", params={"topk": 10})
"""


def test_broken_entry_point_does_not_stop_the_others(fake_distributions, plugin_modules):
    good = plugin_modules("utod_test_good_plugin", GOOD_PLUGIN)
    bad = plugin_modules("utod_test_bad_plugin", "raise ImportError('libfoo.so: cannot open shared object')\n")
    fake_distributions([
        ("utod-bad", "0.0.1", {"bad": bad}),
        ("utod-good", "2.0", {"good": good}),
        ("utod-ghost", "9", {"ghost": "utod_test_module_that_does_not_exist"}),
    ])
    reg = build_registry()
    assert reg.names("assigner") == ["legacy", "simota"]
    assert reg.get("assigner", "legacy").provider == "utod-good"
    errors = {f.provider: f for f in reg.failures}
    assert set(errors) == {"utod-bad", "utod-ghost"}
    assert errors["utod-bad"].error == "ImportError: libfoo.so: cannot open shared object"
    assert errors["utod-bad"].plugin == "bad" and errors["utod-bad"].version == "0.0.1"
    assert "ModuleNotFoundError" in errors["utod-ghost"].error
    # Asking for a name that a failed plugin may have provided lists the failures.
    with pytest.raises(UnknownComponentError) as info:
        reg.get("assigner", "atss")
    text = str(info.value)
    assert text.startswith("unknown assigner 'atss'. Available: legacy, simota")
    assert "utod-bad (bad): ImportError: libfoo.so" in text and "utod-ghost (ghost)" in text
    # Failures come last in the rows, with status error and the message.
    rows = reg.rows()
    assert [r["status"] for r in rows[-2:]] == ["error", "error"]
    assert rows[-2]["error"].startswith("ImportError") and rows[-2]["kind"] == "-"


def test_strict_mode_re_raises_load_errors(fake_distributions, plugin_modules, monkeypatch):
    bad = plugin_modules("utod_test_bad_strict", "raise ImportError('boom')\n")
    fake_distributions([("utod-bad", "1", {"bad": bad})])
    monkeypatch.setenv("UTOD_STRICT_PLUGINS", "1")
    with pytest.raises(ImportError, match="boom"):
        build_registry()


def test_disabled_plugins_are_skipped(fake_distributions, plugin_modules, monkeypatch):
    good = plugin_modules("utod_test_good_disabled", GOOD_PLUGIN)
    bad = plugin_modules("utod_test_bad_disabled", "raise ImportError('boom')\n")
    fake_distributions([("utod-bad", "1", {"bad": bad}), ("utod-good", "1", {"good": good})])
    monkeypatch.setenv("UTOD_DISABLED_PLUGINS", "utod-bad, GOOD")
    reg = build_registry()
    assert reg.failures == [] and reg.names("assigner") == []
    assert bad not in sys.modules and good not in sys.modules  # not even imported
    assert [(d.provider, d.plugin, d.status) for d in reg.disabled] == [("utod-bad", "bad", "disabled"),
                                                                         ("utod-good", "good", "disabled")]
    rows = reg.rows()
    assert [r["status"] for r in rows] == ["disabled", "disabled"]
    assert rows[0]["error"] is None and "UTOD_DISABLED_PLUGINS" in rows[0]["summary"]
    with pytest.raises(UnknownComponentError, match=r"Disabled by UTOD_DISABLED_PLUGINS: utod-bad \(bad\), utod-good"):
        reg.get("assigner", "legacy")


def test_same_distribution_seen_twice_loads_once(fake_distributions, plugin_modules):
    good = plugin_modules("utod_test_good_twice", GOOD_PLUGIN)
    fake_distributions([("utod-good", "1", {"good": good}), ("utod-good", "1", {"good": good})])
    reg = build_registry()
    assert [c.status for c in reg.components["assigner"]] == ["ok", "ok"]
    assert reg.failures == []


# --------------------------------------------------------------------------- conflicts
def test_duplicate_name_is_a_conflict_naming_both_providers():
    reg = build_registry(load_entry_points=False, plugins=[
        (AssignerPlugin(), "fake", "fake-dist", "1.2"),
        (_plugin("register_assigners", ("simota", SimOTA)), "extra", "utod-extra", "0.9")])
    statuses = {(c.provider, c.name): c.status for c in reg.components["assigner"]}
    assert statuses == {("fake-dist", "legacy"): "ok", ("fake-dist", "simota"): "conflict",
                        ("utod-extra", "simota"): "conflict"}
    with pytest.raises(ComponentConflictError) as info:
        reg.create("assigner", "simota")
    text = str(info.value)
    assert "fake-dist 1.2" in text and "utod-extra 0.9" in text
    assert "'fake-dist:simota'" in text and "'utod-extra:simota'" in text
    assert reg.get("assigner", "utod-extra:simota").provider == "utod-extra"
    assert reg.get("assigner", "fake:simota").provider == "fake-dist"  # plugin name works too
    assert reg.get("assigner", "legacy").status == "ok"
    (group,) = reg.conflicts()
    assert {c.provider for c in group} == {"fake-dist", "utod-extra"}
    with pytest.raises(UnknownComponentError, match="unknown assigner 'nobody:simota'"):
        reg.get("assigner", "nobody:simota")


def test_alias_clashing_with_a_name_is_a_conflict():
    reg = build_registry(load_entry_points=False, plugins=[
        (AssignerPlugin(), "fake", "fake-dist", "1"),
        (_plugin("register_assigners", ("sim-ota", Legacy)), "other", "other-dist", "1")])
    assert {c.name: c.status for c in reg.components["assigner"]}["legacy"] == "ok"
    assert len(reg.conflicts()) == 1
    with pytest.raises(ComponentConflictError):
        reg.get("assigner", "sim-ota")


def test_same_name_in_different_kinds_is_not_a_conflict():
    class Both:
        @hookimpl
        def register_iou_losses(self, register):
            register("ciou", Legacy)

        @hookimpl
        def register_cls_losses(self, register):
            register("ciou", Legacy)

    reg = build_registry(load_entry_points=False, plugins=[(Both(), "both", "both-dist", "1")])
    assert reg.conflicts() == []
    assert reg.get("cls_loss", "ciou").kind == "cls_loss"


# --------------------------------------------------------------------------- lookups
def test_unknown_name_message_is_exact():
    with pytest.raises(UnknownComponentError) as info:
        _fake_registry().get("assigner", "simtoa")
    assert str(info.value) == "unknown assigner 'simtoa'. Did you mean 'simota'? Available: legacy, simota"
    assert info.value.exit_code == 2


def test_unknown_name_without_close_match_and_empty_kind():
    reg = _fake_registry()
    with pytest.raises(UnknownComponentError) as info:
        reg.get("assigner", "zzz")
    assert str(info.value) == "unknown assigner 'zzz'. Available: legacy, simota"
    with pytest.raises(UnknownComponentError, match=r"unknown iou loss 'diou'. Available: \(none\)"):
        reg.get("iou_loss", "diou")
    with pytest.raises(UnknownComponentError, match="Did you mean 'simota'"):
        reg.get("assigner", "SIMOTTA")


def test_unknown_kind():
    with pytest.raises(PluginError, match="unknown component kind 'loss'. Kinds: assigner, iou_loss"):
        _fake_registry().get("loss", "x")


def test_rows_are_sorted_by_kind_then_name_with_schema():
    reg = build_registry(load_entry_points=False, plugins=[
        (_plugin("register_iou_losses", ("zeta", Legacy), ("Alpha", Legacy)), "l", "l-dist", "1"),
        (AssignerPlugin(), "fake", "fake-dist", "1")])
    rows = reg.rows()
    assert [(r["kind"], r["name"]) for r in rows] == [
        ("assigner", "legacy"), ("assigner", "simota"), ("iou_loss", "Alpha"), ("iou_loss", "zeta")]
    assert set(rows[0]) == {"kind", "name", "provider", "version", "plugin", "status", "summary", "params",
                            "aliases", "error"}
    assert rows[1]["aliases"] == ["sim-ota"] and rows[1]["params"]["topk"] == 10
    assert [r["name"] for r in reg.rows("iou_loss")] == ["Alpha", "zeta"]


def test_factory_rejecting_options_is_an_option_error():
    def strict_factory(*, radius: int = 1):
        if radius < 0:
            raise TypeError("radius must be >= 0")
        if radius > 5:
            raise ValueError("radius must be <= 5")
        return radius

    reg = build_registry(load_entry_points=False, plugins=[
        (_plugin("register_assigners", ("strict", strict_factory)), "s", "s-dist", "1")])
    assert reg.create("assigner", "strict", {"radius": "3"}) == 3
    with pytest.raises(ComponentOptionError, match="rejected its options"):
        reg.create("assigner", "strict", {"radius": -1})
    with pytest.raises(ComponentOptionError, match=r"rejected its options \{'radius': 6\}: radius must be <= 5"):
        reg.create("assigner", "strict", {"radius": 6})


def test_get_and_set_registry_round_trip():
    reg = _fake_registry()
    set_registry(reg)
    try:
        assert get_registry() is reg
    finally:
        set_registry(None)
    assert get_registry() is not reg
    set_registry(None)


def test_builtins_register_through_the_utod_entry_points_lazily(fresh_registry):
    builtins = [c for k in KINDS for c in fresh_registry.components[k] if c.provider == "utod"]
    for comp in builtins:
        assert isinstance(comp.factory, str) and comp.factory.startswith("utod_plugins.impl."), comp
    assert not [f for f in fresh_registry.failures if f.provider == "utod"]


# --------------------------------------------------------------------------- options
def _comp(**params) -> Component:
    return Component("assigner", "simota", SimOTA, "", params, "fake-dist", "1", "fake")


def test_parse_option_pairs_is_yaml_safe():
    opts = parse_option_pairs(["topk=12", "radius = 2.5", "flag=true", "sizes=[1, 2]", "name=abc",
                               "exp=1e-3", "empty=''", "obj={a: 1}", "spaced=a=b"])
    assert opts == {"topk": 12, "radius": 2.5, "flag": True, "sizes": [1, 2], "name": "abc", "exp": "1e-3",
                    "empty": "", "obj": {"a": 1}, "spaced": "a=b"}
    # No code is ever executed: python tags are not constructed, the text is kept.
    evil = parse_option_pairs(["x=!!python/object/apply:os.system ['echo hacked']"])["x"]
    assert isinstance(evil, str) and evil.startswith("!!python")
    assert parse_option_pairs(["bad=[1, 2"]) == {"bad": "[1, 2"}


@pytest.mark.parametrize("pair", ["topk", "=3", "topk=", " = "])
def test_parse_option_pairs_rejects_malformed(pair):
    with pytest.raises(ComponentOptionError, match=f"--assigner-opt expects key=value, got '{pair}'"):
        parse_option_pairs([pair], flag="--assigner-opt")


def test_validate_options_rejects_unknown_keys_with_close_matches():
    comp = _comp(topk=10, center_radius=2.5)
    with pytest.raises(ComponentOptionError) as info:
        validate_options(comp, {"tpok": 3})
    assert str(info.value) == ("assigner 'simota' has no option 'tpok'. Did you mean 'topk'? "
                               "Options: center_radius=2.5, topk=10")
    with pytest.raises(ComponentOptionError, match=r"has no option 'x'. Options: \(none\)"):
        validate_options(_comp(), {"x": 1})


@pytest.mark.parametrize(("default", "given", "expected"), [
    (10, "12", 12), (10, 12.0, 12), (10, 7, 7),
    (2.5, 3, 3.0), (2.5, "1e-3", 0.001), (2.5, "inf", float("inf")),
    (True, "no", False), (True, "Yes", True), (False, 1, True), (False, True, True),
    ([1.0, 2.0], (3, 4), [3, 4]), ([1.0, 2.0], 0.5, 0.5), ({"a": 1}, {"b": 2}, {"b": 2}),
    ("nearest", "bilinear", "bilinear"), ("nearest", 3, "3"),
    (None, [1, "x"], [1, "x"]), (None, None, None),
])
def test_validate_options_coerces_to_the_default_type(default, given, expected):
    out = validate_options(_comp(p=default), {"p": given})["p"]
    assert out == expected and type(out) is type(expected)


@pytest.mark.parametrize(("default", "given"), [
    (10, 12.5), (10, True), (10, "ten"), (10, None), (10, [1]),
    (2.5, "fast"), (2.5, False), (2.5, None),
    (True, "maybe"), (True, 2), (True, None),
    ([1.0, 2.0], "x"), ({"a": 1}, [1]), ("nearest", [1, 2]), ("nearest", None),
])
def test_validate_options_rejects_wrong_types(default, given):
    with pytest.raises(ComponentOptionError) as info:
        validate_options(_comp(p=default), {"p": given})
    text = str(info.value)
    assert text.startswith("assigner 'simota' option 'p' expects") and repr(default) in text


def test_options_from_the_command_line_flow_into_the_component():
    reg = _fake_registry()
    opts = parse_option_pairs(["topk=7", "center_radius=1", "use_cost=off"], flag="--assigner-opt")
    built = reg.create("assigner", "simota", opts)
    assert (built.topk, built.center_radius, built.use_cost) == (7, 1.0, False)
    assert isinstance(built.center_radius, float)


# --------------------------------------------------------------------------- hooks
def test_hookspecs_match_the_kinds_and_are_documented():
    from pathlib import Path

    from utod import hookspecs
    from utod.components import HOOK_FOR_KIND

    specs = {name for name in dir(hookspecs) if hasattr(getattr(hookspecs, name), "utod_spec")}
    assert specs == set(HOOK_FOR_KIND.values())
    reg = build_registry(load_entry_points=False)
    assert {name for name in dir(reg.plugin_manager.hook) if not name.startswith("_")} == specs
    guide = (Path(__file__).resolve().parents[1] / "docs" / "plugins.md").read_text(encoding="utf-8")
    for kind, hook in HOOK_FOR_KIND.items():
        assert f"`{hook}`" in guide and f"### {kind}" in guide, (kind, hook)


# --------------------------------------------------------------------------- through pluggy
def test_hooks_are_called_through_pluggys_hook_caller():
    """collect() goes through pluggy's hook machinery: monitoring sees the call, and pluggy
    options such as ``specname`` work (a hand-made getattr call would miss this hook)."""

    class Renamed:
        @hookimpl(specname="register_assigners")
        def my_assigners(self, register):
            register("renamed", Legacy)

    reg = build_registry(load_entry_points=False)
    plugin = Renamed()
    reg.plugin_manager.register(plugin, name="renamed")
    seen = []
    undo = reg.plugin_manager.add_hookcall_monitoring(
        lambda hook_name, impls, kwargs: seen.append((hook_name, [i.plugin for i in impls])), lambda *a: None)
    try:
        reg.collect(plugin, "renamed", "renamed-dist", "1")
    finally:
        undo()
    assert reg.names("assigner") == ["renamed"]
    assert ("register_assigners", [plugin]) in seen


def test_collect_needs_a_registered_plugin():
    reg = build_registry(load_entry_points=False)
    with pytest.raises(PluginError, match="must be registered"):
        reg.collect(AssignerPlugin(), "loose", "loose-dist", "1")
