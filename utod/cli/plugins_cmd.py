"""``utod list-plugins``: every registered component, grouped by kind, as a table or JSON.

Never imports TensorFlow (unless ``--check`` is given): components registered as
``"module:attr"`` strings are listed from their registration data alone.
"""

from __future__ import annotations

import difflib
import json
import sys
from collections.abc import Sequence
from typing import Any

import click

from utod.components import KINDS

COLUMNS: tuple[str, ...] = ("kind", "name", "provider", "version", "status", "summary")
PLUGIN_STATUSES = ("error", "disabled")  # rows that are whole plugins, not components


def normalise_kind(text: str) -> str:
    """``iou-loss``/``IoU_Losses``/``assigners`` -> the registry kind, or raise BadParameter."""
    key = text.strip().lower().replace("-", "_")
    if key not in KINDS and key.endswith("es") and key[:-2] in KINDS:
        key = key[:-2]
    elif key not in KINDS and key.endswith("s") and key[:-1] in KINDS:
        key = key[:-1]
    if key in KINDS:
        return key
    close = difflib.get_close_matches(key, KINDS, n=1)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    raise click.BadParameter(f"unknown kind '{text}'.{hint} Kinds: {', '.join(KINDS)}")


def _kind_option(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    return None if value is None else normalise_kind(value)


def format_params(params: dict[str, Any]) -> str:
    """``{"topk": 10, "eps": 1e-7}`` -> ``topk=10, eps=1e-07`` (JSON-style values)."""
    return ", ".join(f"{k}={json.dumps(v)}" for k, v in params.items())


def render_table(rows: Sequence[dict[str, Any]], verbose: bool = False) -> list[str]:
    """Aligned text lines for ``rows`` (``Registry.rows()``): one block per kind, then the
    plugins that failed to load (their error as summary) and the disabled ones. ``verbose``
    adds each component's parameters and aliases on an indented line below it."""
    comps = [r for r in rows if r["status"] not in PLUGIN_STATUSES]
    failed = [r for r in rows if r["status"] in PLUGIN_STATUSES]
    cells = [[str(r[c]) if r[c] is not None else "" for c in COLUMNS] for r in comps]
    cells += [[r["kind"], r["name"], r["provider"], r["version"], r["status"], r["error"] or r["summary"]]
              for r in failed]
    header = [c.upper() for c in COLUMNS]
    widths = [max([len(header[i])] + [len(row[i]) for row in cells]) for i in range(len(COLUMNS) - 1)]

    def line(values: Sequence[str]) -> str:
        head = "  ".join(v.ljust(w) for v, w in zip(values[:-1], widths))
        return f"{head}  {values[-1]}".rstrip()

    out = [line(header), "-" * (sum(widths) + 2 * len(widths) + len(header[-1]))]
    previous_kind = None
    for row, text in zip(comps + failed, cells):
        if previous_kind is not None and row["kind"] != previous_kind:
            out.append("")
        previous_kind = row["kind"]
        out.append(line(text))
        if verbose and row["status"] not in PLUGIN_STATUSES:
            extras = []
            if row["params"]:
                extras.append(f"params: {format_params(row['params'])}")
            if row["aliases"]:
                extras.append(f"aliases: {', '.join(row['aliases'])}")
            if row["error"]:
                extras.append(f"error: {row['error']}")
            if extras:
                out.append(" " * (widths[0] + 2) + "; ".join(extras))
    return out


def conflict_notes(registry: Any, kind: str | None) -> list[str]:
    """One line per name registered more than once, saying how to select each provider."""
    notes = []
    for group in registry.conflicts():
        if kind and group[0].kind != kind:
            continue
        label = group[0].kind.replace("_", " ")
        who = ", ".join(f"{c.provider} {c.version}" for c in group)
        picks = " or ".join(f"'{c.provider}:{c.name}'" for c in group)
        notes.append(f"note: {label} '{group[0].name}' is registered by {who}; select one as {picks} "
                     f"(e.g. --{group[0].kind.replace('_', '-')} {group[0].provider}:{group[0].name}) "
                     f"or disable a plugin with UTOD_DISABLED_PLUGINS=<plugin>.")
    return notes


@click.command("list-plugins")
@click.option("--kind", "kind", metavar="KIND", callback=_kind_option,
              help=f"Only this kind: {', '.join(KINDS)}.")
@click.option("--json", "as_json", is_flag=True, help="Print the rows as a JSON list (for scripts).")
@click.option("--check", is_flag=True,
              help="Also import every component (slow: may import TensorFlow); failures get status 'broken'.")
@click.option("--strict", is_flag=True,
              help="Exit with code 1 when a plugin failed to load, a name conflicts or (with --check) "
                   "a component is broken.")
@click.option("-v", "--verbose", is_flag=True, help="Show parameters, aliases and load-error tracebacks.")
def list_plugins(kind: str | None, as_json: bool, check: bool, strict: bool, verbose: bool) -> None:
    """List every assigner, IoU loss, cls loss, head, resize backend and augmentation that
    the installed plugins register, with the plugin (distribution) and version providing it.

    Select a component by NAME (e.g. `--assigner simota`); when two plugins register the
    same name, select one as PROVIDER:NAME."""
    from utod.registry import get_registry

    registry = get_registry()
    broken = registry.check(kind) if check else []
    rows = registry.rows(kind)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
    else:
        if not any(r["status"] not in PLUGIN_STATUSES for r in rows):
            what = f"{kind} components" if kind else "components"
            click.echo(f"No {what} registered. Plugins register through the 'utod' entry-point group.")
        if rows:
            for text in render_table(rows, verbose=verbose):
                click.echo(text)
        for note in conflict_notes(registry, kind):
            click.echo(note)
        if verbose:
            for failure in registry.failures:
                click.echo(f"\nTraceback of plugin '{failure.plugin}' ({failure.provider} {failure.version}):",
                           err=True)
                click.echo(failure.traceback.rstrip() or failure.error, err=True)
    problems = []
    if registry.failures:
        problems.append(f"{len(registry.failures)} plugin(s) failed to load")
    conflicts = [g for g in registry.conflicts() if not kind or g[0].kind == kind]
    if conflicts:
        problems.append(f"{len(conflicts)} name conflict(s)")
    if broken:
        problems.append(f"{len(broken)} broken component(s)")
    if strict and problems:
        click.echo(f"list-plugins --strict: {'; '.join(problems)}", err=True)
        sys.exit(1)
