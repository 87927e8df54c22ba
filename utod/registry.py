"""The component registry: a pluggy PluginManager that loads every ``utod`` entry point
(built-ins included), collects what each plugin registers, and hands out components by
kind and name.

Nothing here imports TensorFlow; components given as ``"module:attr"`` strings are imported
only when :meth:`Registry.create` builds them.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.metadata as md
import inspect
import os
import sys
import traceback
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pluggy
import yaml

from utod import ENTRY_POINT_GROUP, PROJECT_NAME, hookspecs
from utod.components import HOOK_FOR_KIND, KINDS

NAME_PLACEHOLDER = "-"


class PluginError(Exception):
    """Base class of registry errors; the CLI prints them and exits with code 2."""

    exit_code = 2


class UnknownComponentError(PluginError):
    pass


class ComponentConflictError(PluginError):
    pass


class BrokenComponentError(PluginError):
    pass


class ComponentOptionError(PluginError):
    pass


@dataclass
class Component:
    """One registered component."""

    kind: str
    name: str
    factory: Any
    summary: str
    params: dict[str, Any]
    provider: str
    version: str
    plugin: str
    aliases: tuple[str, ...] = ()
    status: str = "ok"
    error: str | None = None

    @property
    def qualified_name(self) -> str:
        return f"{self.provider}:{self.name}"

    def load(self) -> Callable[..., Any]:
        """Import the factory if it was registered as a ``module:attr`` string."""
        if not isinstance(self.factory, str):
            return self.factory
        module_name, _, attr = self.factory.partition(":")
        try:
            obj: Any = importlib.import_module(module_name)
            for part in attr.split("."):
                obj = getattr(obj, part)
        except Exception as exc:  # the plugin's own import failure, shown with its cause
            raise BrokenComponentError(
                f"{self.kind} '{self.name}' from {self.provider} {self.version} cannot be imported "
                f"({self.factory}): {type(exc).__name__}: {exc}"
            ) from exc
        return obj

    def row(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "provider": self.provider,
            "version": self.version,
            "plugin": self.plugin,
            "status": self.status,
            "summary": self.summary,
            "params": {k: _jsonable(v) for k, v in self.params.items()},
            "aliases": list(self.aliases),
            "error": self.error,
        }

    def keys(self) -> set[str]:
        """Lower-case name and aliases: what a user may type to select this component."""
        return {self.name.lower(), *(a.lower() for a in self.aliases)}


@dataclass
class LoadFailure:
    """A plugin that could not be imported or whose hooks failed (status ``error``), or
    one switched off with ``UTOD_DISABLED_PLUGINS`` (status ``disabled``, not loaded)."""

    plugin: str
    provider: str
    version: str
    error: str
    traceback: str = ""
    status: str = "error"

    def row(self) -> dict[str, Any]:
        return {
            "kind": NAME_PLACEHOLDER,
            "name": NAME_PLACEHOLDER,
            "provider": self.provider,
            "version": self.version,
            "plugin": self.plugin,
            "status": self.status,
            "summary": self.error if self.status == "disabled" else "",
            "params": {},
            "aliases": [],
            "error": None if self.status == "disabled" else self.error,
        }


def _jsonable(value: Any) -> Any:
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return repr(value)


class _PluginManager(pluggy.PluginManager):
    """pluggy's PluginManager that also takes an *unmarked* function named exactly like a utod
    hook as its implementation (``def register_assigners(register): ...`` in a module), the
    way pytest accepts unmarked ``pytest_*`` functions. ``parse_hookimpl_opts`` is pluggy's
    documented override point for this; marked hooks go through it unchanged."""

    def parse_hookimpl_opts(self, plugin: object, name: str):  # type: ignore[override]
        opts = super().parse_hookimpl_opts(plugin, name)
        if opts is None and name in _HOOK_NAMES and inspect.isroutine(getattr(plugin, name, None)):
            return {}  # pluggy fills in the default options
        return opts


_HOOK_NAMES = frozenset(HOOK_FOR_KIND.values())


def _unknown_hooks(pm: pluggy.PluginManager, plugin: object) -> list[str]:
    """Hooks the plugin implements that have no utod hookspec (usually a typo), asked from
    pluggy's public API (the plugin's hook callers without a spec)."""
    if not pm.is_registered(plugin):
        return []
    return sorted(caller.name for caller in pm.get_hookcallers(plugin) or [] if not caller.has_spec())


def _summary_of(factory: Any) -> str:
    doc = inspect.getdoc(factory) if not isinstance(factory, str) else None
    return doc.strip().splitlines()[0] if doc else ""


def _params_of(factory: Any) -> dict[str, Any]:
    """Keyword parameters that have defaults, read from the factory's signature."""
    if isinstance(factory, str):
        return {}
    try:
        sig = inspect.signature(factory)
    except (TypeError, ValueError):
        return {}
    out = {}
    for p in sig.parameters.values():
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.default is not p.empty:
            out[p.name] = p.default
    return out


@dataclass
class Registry:
    """Components by kind and name, plus the plugins that failed to load."""

    components: dict[str, list[Component]] = field(default_factory=lambda: {k: [] for k in KINDS})
    failures: list[LoadFailure] = field(default_factory=list)
    disabled: list[LoadFailure] = field(default_factory=list)
    plugin_manager: pluggy.PluginManager | None = None

    # ------------------------------------------------------------------ building
    def collect(self, plugin: object, plugin_name: str, provider: str, version: str) -> None:
        """Call the plugin's hooks and record what it registers. Errors become failures.

        ``plugin`` must already be registered with :attr:`plugin_manager`. Each hook is called
        through pluggy's hook caller, restricted to this one plugin
        (``subset_hook_caller``), so every component is attributed to the plugin that
        registered it and one plugin's failure cannot stop the others.
        """
        pm = self.plugin_manager
        if pm is None or not pm.is_registered(plugin):
            raise PluginError(f"plugin '{plugin_name}' must be registered with the plugin manager before collect()")
        unknown = _unknown_hooks(pm, plugin)
        if unknown:
            self._fail(plugin, LoadFailure(
                plugin_name, provider, version,
                f"unknown hook(s) {', '.join(unknown)}; utod hooks are {', '.join(HOOK_FOR_KIND.values())}"))
            return
        added: list[Component] = []
        others = [p for p in pm.get_plugins() if p is not plugin]
        for kind, hook_name in HOOK_FOR_KIND.items():
            call_hook = pm.subset_hook_caller(hook_name, remove_plugins=others)

            def register(name, factory, *, summary=None, params=None, aliases=(), _kind=kind):
                if not isinstance(name, str) or not name.strip():
                    raise ValueError(f"component name must be a non-empty string, got {name!r}")
                added.append(
                    Component(
                        kind=_kind,
                        name=name.strip(),
                        factory=factory,
                        summary=summary if summary is not None else _summary_of(factory),
                        params=dict(params) if params is not None else _params_of(factory),
                        provider=provider,
                        version=version,
                        plugin=plugin_name,
                        aliases=tuple(aliases),
                    )
                )

            try:
                call_hook(register=register)
            except Exception as exc:
                self._fail(plugin, LoadFailure(plugin_name, provider, version,
                                               f"{hook_name} failed: {type(exc).__name__}: {exc}",
                                               traceback.format_exc()))
                return
        for comp in added:
            self.components[comp.kind].append(comp)
        self._mark_conflicts()

    def _fail(self, plugin: object, failure: LoadFailure) -> None:
        """Record a plugin that cannot be used and take it out of the plugin manager."""
        self.failures.append(failure)
        pm = self.plugin_manager
        if pm is not None and pm.is_registered(plugin):
            pm.unregister(plugin)

    def _mark_conflicts(self) -> None:
        """Status ``conflict`` for components of one kind sharing a name or alias."""
        for comps in self.components.values():
            for c in comps:
                clash = any(o is not c and o.keys() & c.keys() for o in comps)
                if clash:
                    c.status = "conflict"
                elif c.status == "conflict":
                    c.status = "ok"

    def conflicts(self) -> list[list[Component]]:
        """Groups of components (same kind) that share a name or alias."""
        groups: list[list[Component]] = []
        for comps in self.components.values():
            seen: set[int] = set()
            for c in comps:
                if id(c) in seen or c.status != "conflict":
                    continue
                group = [o for o in comps if o is c or o.keys() & c.keys()]
                seen.update(id(o) for o in group)
                if len(group) > 1:
                    groups.append(group)
        return groups

    def check(self, kind: str | None = None) -> list[Component]:
        """Import every lazy ``module:attr`` factory (this may import TensorFlow); components
        whose import fails get status ``broken`` and the error text. Returns the broken ones."""
        broken = []
        for k in KINDS:
            if kind and k != kind:
                continue
            for c in self.components[k]:
                try:
                    c.load()
                except BrokenComponentError as exc:
                    c.status, c.error = "broken", str(exc)
                    broken.append(c)
        return broken

    # ------------------------------------------------------------------ lookup
    def names(self, kind: str) -> list[str]:
        return sorted({c.name for c in self.components[kind]}, key=str.lower)

    def get(self, kind: str, name: str) -> Component:
        """The component ``name`` of ``kind``; ``provider:name`` picks one of a conflict."""
        if kind not in self.components:
            raise PluginError(f"unknown component kind '{kind}'. Kinds: {', '.join(KINDS)}")
        label = kind.replace("_", " ")
        provider = None
        wanted = name.strip()
        if ":" in wanted:
            provider, _, wanted = wanted.partition(":")
        matches = [
            c for c in self.components[kind]
            if c.name.lower() == wanted.lower() or wanted.lower() in (a.lower() for a in c.aliases)
        ]
        if provider is not None:
            matches = [c for c in matches if c.provider.lower() == provider.lower()
                       or c.plugin.lower() == provider.lower()]
        if not matches:
            msg = self._unknown_message(kind, label, name)
            raise UnknownComponentError(msg)
        if len(matches) > 1:
            who = ", ".join(f"{c.provider} {c.version} (plugin '{c.plugin}')" for c in matches)
            picks = " or ".join(f"'{c.provider}:{c.name}'" for c in matches)
            raise ComponentConflictError(
                f"{label} '{wanted}' is registered more than once, by: {who}. Select one as {picks}, "
                f"or uninstall/disable one of the plugins (UTOD_DISABLED_PLUGINS=name)."
            )
        return matches[0]

    def _unknown_message(self, kind: str, label: str, name: str) -> str:
        available = self.names(kind)
        close = difflib.get_close_matches(name, available, n=1, cutoff=0.6)
        if not close:
            lowered = {a.lower(): a for a in available}
            close = [lowered[m] for m in difflib.get_close_matches(name.lower(), list(lowered), n=1, cutoff=0.6)]
        msg = f"unknown {label} '{name}'."
        if close:
            msg += f" Did you mean '{close[0]}'?"
        msg += f" Available: {', '.join(available) if available else '(none)'}"
        if self.failures:
            broken = "; ".join(f"{f.provider} ({f.plugin}): {f.error}" for f in self.failures)
            msg += f". Plugins that failed to load (one may provide it): {broken}"
        if self.disabled:
            off = ", ".join(f"{d.provider} ({d.plugin})" for d in self.disabled)
            msg += f". Disabled by UTOD_DISABLED_PLUGINS: {off}"
        return msg

    def create(self, kind: str, name: str, options: Mapping[str, Any] | None = None, *args: Any) -> Any:
        """Build component ``name`` of ``kind`` with validated ``options``.

        ``args`` are passed positionally before the options (heads get their context).
        """
        comp = self.get(kind, name)
        opts = validate_options(comp, options or {})
        factory = comp.load()
        try:
            return factory(*args, **opts)
        except PluginError:
            raise
        except (TypeError, ValueError) as exc:  # constructors validate their options
            raise ComponentOptionError(f"{kind.replace('_', ' ')} '{comp.name}' rejected its options {opts}: {exc}") from exc

    def rows(self, kind: str | None = None) -> list[dict[str, Any]]:
        """Table rows for ``list-plugins``: components sorted by (kind, name), then the
        plugins that failed to load, then the disabled ones."""
        rows = []
        for k in KINDS:
            if kind and k != kind:
                continue
            rows.extend(c.row() for c in sorted(self.components[k], key=lambda c: (c.name.lower(), c.provider)))
        rows.extend(f.row() for f in self.failures)
        rows.extend(d.row() for d in self.disabled)
        return rows


# ---------------------------------------------------------------------- options
def parse_option_value(text: str) -> Any:
    """Parse a ``--x-opt key=value`` value safely (YAML scalars/lists, never eval)."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def parse_option_pairs(pairs: Iterable[str], flag: str = "--opt") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise ComponentOptionError(f"{flag} expects key=value, got '{pair}'")
        out[key.strip()] = parse_option_value(value.strip())
    return out


def _coerce(comp: Component, key: str, value: Any, default: Any) -> Any:
    label = f"{comp.kind.replace('_', ' ')} '{comp.name}' option '{key}'"
    if default is None:
        return value
    try:
        if value is None:
            raise ValueError
        if isinstance(default, bool):
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in ("true", "yes", "1", "on", "false", "no", "0", "off"):
                return value.lower() in ("true", "yes", "1", "on")
            if isinstance(value, (int, float)) and value in (0, 1):
                return bool(value)
            raise ValueError
        if isinstance(default, int):
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            return int(value)
        if isinstance(default, float):
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        if isinstance(default, (list, tuple)):
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return value  # components such as ranges may accept a scalar too
            if not isinstance(value, (list, tuple)):
                raise ValueError
            return list(value)
        if isinstance(default, dict):
            if not isinstance(value, dict):
                raise ValueError
            return dict(value)
        if isinstance(default, str):
            if isinstance(value, (list, tuple, dict)):
                raise ValueError
            return str(value)
    except (ValueError, TypeError):
        raise ComponentOptionError(
            f"{label} expects {type(default).__name__} (default {default!r}), got {value!r}"
        ) from None
    return value


def validate_options(comp: Component, options: Mapping[str, Any]) -> dict[str, Any]:
    """Reject unknown keys (with close matches) and coerce values to the defaults' types."""
    out = {}
    for key, value in options.items():
        if key not in comp.params:
            known = sorted(comp.params)
            close = difflib.get_close_matches(key, known, n=1)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            raise ComponentOptionError(
                f"{comp.kind.replace('_', ' ')} '{comp.name}' has no option '{key}'.{hint} "
                f"Options: {', '.join(f'{k}={comp.params[k]!r}' for k in known) if known else '(none)'}"
            )
        out[key] = _coerce(comp, key, value, comp.params[key])
    return out


# ---------------------------------------------------------------------- loading
def _env_list(name: str) -> set[str]:
    return {s.strip().lower() for s in os.environ.get(name, "").split(",") if s.strip()}


def _iter_entry_points() -> list[tuple[md.EntryPoint, str, str]]:
    seen: set[tuple[str, str]] = set()
    out = []
    for dist in md.distributions():
        try:
            eps = dist.entry_points
        except Exception:  # broken metadata of an unrelated package
            continue
        for ep in eps:
            if ep.group != ENTRY_POINT_GROUP:
                continue
            dist_name = dist.metadata["Name"] or "?"
            key = (dist_name.lower(), ep.name)
            if key in seen:  # the same distribution visible twice on sys.path
                continue
            seen.add(key)
            out.append((ep, dist_name, dist.version or "?"))
    out.sort(key=lambda t: (t[1].lower() != PROJECT_NAME, t[1].lower(), t[0].name))
    return out


def build_registry(*, load_entry_points: bool = True, plugins: Iterable[tuple[object, str, str, str]] = ()) -> Registry:
    """Create a fresh registry.

    ``load_entry_points``: load every ``utod`` entry point (built-ins included). A plugin that
    fails to import or register is recorded in ``failures`` and skipped; the others load.
    ``UTOD_DISABLED_PLUGINS=a,b`` skips plugins by entry-point or distribution name and
    ``UTOD_STRICT_PLUGINS=1`` re-raises load errors.
    ``plugins``: extra ``(object, plugin_name, provider, version)`` to register (tests, scripts).
    """
    pm = _PluginManager(PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    reg = Registry(plugin_manager=pm)
    disabled = _env_list("UTOD_DISABLED_PLUGINS")
    strict = os.environ.get("UTOD_STRICT_PLUGINS", "") not in ("", "0")
    if load_entry_points:
        for ep, dist_name, version in _iter_entry_points():
            if ep.name.lower() in disabled or dist_name.lower() in disabled:
                reg.disabled.append(LoadFailure(ep.name, dist_name, version, "disabled by UTOD_DISABLED_PLUGINS",
                                                status="disabled"))
                continue
            try:
                module = ep.load()
                pm.register(module, name=f"{dist_name}:{ep.name}")
            except Exception as exc:
                if strict:
                    raise
                reg.failures.append(LoadFailure(ep.name, dist_name, version,
                                                f"{type(exc).__name__}: {exc}", traceback.format_exc()))
                continue
            reg.collect(module, ep.name, dist_name, version)
    for obj, name, provider, version in plugins:
        try:
            pm.register(obj, name=name)
        except Exception as exc:  # duplicate plugin name, hook signature not matching its spec
            reg.failures.append(LoadFailure(name, provider, version, f"{type(exc).__name__}: {exc}",
                                            traceback.format_exc()))
            continue
        reg.collect(obj, name, provider, version)
    return reg


_REGISTRY: Registry | None = None


def get_registry() -> Registry:
    """The process-wide registry, built on first use."""
    global _REGISTRY
    if _REGISTRY is None:
        _REGISTRY = build_registry()
    return _REGISTRY


def set_registry(reg: Registry | None) -> None:
    """Replace the process-wide registry (tests); ``None`` rebuilds it on next use."""
    global _REGISTRY
    _REGISTRY = reg


def warn_failures(reg: Registry, stream=None) -> None:
    stream = stream or sys.stderr
    for f in reg.failures:
        print(f"warning: plugin '{f.plugin}' from {f.provider} {f.version} failed to load: {f.error}", file=stream)
