"""``utod list-plugins`` and how the CLI reports plugin errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from utod import hookimpl
from utod.cli import cli, main
from utod.cli._common import user_errors
from utod.registry import get_registry, set_registry

ROOT = Path(__file__).resolve().parents[1]
ROW_KEYS = {"kind", "name", "provider", "version", "plugin", "status", "summary", "params", "aliases", "error"}


class Assigners:
    @hookimpl
    def register_assigners(self, register):
        register("legacy", "utod_test_nowhere:Legacy", summary="Centre cell, best anchor", params={"radius": 0})
        register("simota", "utod_test_nowhere:SimOTA", summary="Dynamic-k", params={"topk": 10, "eps": 1e-6},
                 aliases=("sim",))


class Losses:
    @hookimpl
    def register_iou_losses(self, register):
        register("giou", "json:dumps", summary="Generalised IoU", params={})

    @hookimpl
    def register_augmentations(self, register):
        register("GridMask", "json:loads", summary="Grid of dropped squares", params={"prob": 0.5})


class SecondSimOTA:
    @hookimpl
    def register_assigners(self, register):
        register("simota", "utod_test_nowhere:Other", summary="Another SimOTA", params={})


class Raising:
    @hookimpl
    def register_heads(self, register):
        raise RuntimeError("head plugin needs a GPU")


def invoke(*args: str):
    return CliRunner().invoke(cli, ["list-plugins", *args])


@pytest.fixture
def clean(install_registry):
    return install_registry((Assigners(), "assigners", "utod", "0.1.0"), (Losses(), "losses", "utod", "0.1.0"))


@pytest.fixture
def messy(install_registry):
    return install_registry((Assigners(), "assigners", "utod", "0.1.0"), (Losses(), "losses", "utod", "0.1.0"),
                            (SecondSimOTA(), "second", "utod-extra", "2.1"),
                            (Raising(), "raising", "utod-gpu-head", "0.0.3"))


def test_table_is_grouped_by_kind_with_the_columns(clean):
    result = invoke()
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == ["KIND", "NAME", "PROVIDER", "VERSION", "STATUS", "SUMMARY"]
    body = [line.split()[:5] for line in lines[2:] if line.strip()]
    assert body == [["assigner", "legacy", "utod", "0.1.0", "ok"], ["assigner", "simota", "utod", "0.1.0", "ok"],
                    ["iou_loss", "giou", "utod", "0.1.0", "ok"], ["augmentation", "GridMask", "utod", "0.1.0", "ok"]]
    # A blank line separates the kinds; summaries are printed in full.
    assert lines[4] == "" and "Centre cell, best anchor" in lines[2]
    assert "note:" not in result.output


def test_failures_and_conflicts_are_listed_after_the_components(messy):
    result = invoke()
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    simota = [line for line in lines if " simota " in line]
    assert len(simota) == 2 and all(" conflict " in line for line in simota)
    error_line = next(i for i, line in enumerate(lines) if "utod-gpu-head" in line)
    last_component = max(i for i, line in enumerate(lines) if "GridMask" in line)
    assert error_line > last_component
    assert lines[error_line].split()[:5] == ["-", "-", "utod-gpu-head", "0.0.3", "error"]
    assert "register_heads failed: RuntimeError: head plugin needs a GPU" in lines[error_line]
    note = next(line for line in lines if line.startswith("note:"))
    assert "assigner 'simota' is registered by utod 0.1.0, utod-extra 2.1" in note
    assert "'utod:simota' or 'utod-extra:simota'" in note and "--assigner utod:simota" in note


def test_verbose_shows_params_aliases_and_tracebacks(messy):
    result = CliRunner().invoke(cli, ["list-plugins", "-v"])
    assert result.exit_code == 0
    assert 'params: topk=10, eps=1e-06; aliases: sim' in result.output
    assert "params: prob=0.5" in result.output
    assert "Traceback of plugin 'raising' (utod-gpu-head 0.0.3)" in result.output
    assert "RuntimeError: head plugin needs a GPU" in result.output
    assert "Traceback" not in invoke().output


def test_json_rows_have_the_schema_and_the_same_content(messy):
    result = invoke("--json")
    assert result.exit_code == 0
    rows = json.loads(result.output)
    assert rows == get_registry().rows()
    assert all(set(row) == ROW_KEYS for row in rows)
    by_name = {(r["provider"], r["name"]): r for r in rows}
    assert by_name[("utod", "simota")]["params"] == {"topk": 10, "eps": 1e-6}
    assert by_name[("utod", "simota")]["aliases"] == ["sim"]
    assert by_name[("utod", "simota")]["status"] == "conflict"
    assert by_name[("utod", "legacy")] == {
        "kind": "assigner", "name": "legacy", "provider": "utod", "version": "0.1.0", "plugin": "assigners",
        "status": "ok", "summary": "Centre cell, best anchor", "params": {"radius": 0}, "aliases": [],
        "error": None}
    error = rows[-1]
    assert error["status"] == "error" and error["provider"] == "utod-gpu-head" and error["kind"] == "-"
    assert error["error"] == "register_heads failed: RuntimeError: head plugin needs a GPU"


@pytest.mark.parametrize("spelling", ["assigner", "assigners", "ASSIGNER"])
def test_kind_filter(clean, spelling):
    rows = json.loads(invoke("--kind", spelling, "--json").output)
    assert [r["name"] for r in rows] == ["legacy", "simota"]


def test_kind_filter_accepts_dashes_and_plurals(clean):
    assert [r["name"] for r in json.loads(invoke("--kind", "iou-losses", "--json").output)] == ["giou"]
    table = invoke("--kind", "augmentations").output
    assert "GridMask" in table and "legacy" not in table


def test_kind_filter_keeps_load_failures(messy):
    rows = json.loads(invoke("--kind", "resize", "--json").output)
    assert [r["status"] for r in rows] == ["error"]
    result = invoke("--kind", "resize")
    assert "No resize components registered." in result.output and "utod-gpu-head" in result.output


def test_unknown_kind_exits_2_with_the_kinds(clean):
    result = invoke("--kind", "asigner")
    assert result.exit_code == 2
    assert "unknown kind 'asigner'. Did you mean 'assigner'?" in result.output
    assert "Kinds: assigner, iou_loss, cls_loss, head, resize, augmentation" in result.output


def test_strict_exit_codes(clean, install_registry):
    assert invoke("--strict").exit_code == 0
    install_registry((Assigners(), "a", "utod", "1"), (SecondSimOTA(), "s", "utod-extra", "2"))
    result = invoke("--strict")
    assert result.exit_code == 1 and "1 name conflict(s)" in result.output
    assert invoke("--strict", "--kind", "iou_loss").exit_code == 0  # the conflict is in another kind
    install_registry((Raising(), "raising", "utod-gpu-head", "0.0.3"))
    result = invoke("--strict", "--json")
    assert result.exit_code == 1 and "1 plugin(s) failed to load" in result.output


def test_check_imports_components_and_marks_broken_ones(clean):
    rows = json.loads(invoke("--check", "--json").output)
    status = {r["name"]: r["status"] for r in rows}
    assert status == {"legacy": "broken", "simota": "broken", "giou": "ok", "GridMask": "ok"}
    broken = next(r for r in rows if r["name"] == "legacy")
    assert "ModuleNotFoundError" in broken["error"] and "utod_test_nowhere" in broken["error"]
    result = invoke("--check", "--strict", "--kind", "assigner")
    assert result.exit_code == 1 and "2 broken component(s)" in result.output
    assert invoke("--check", "--strict", "--kind", "iou_loss").exit_code == 0


def test_disabled_plugins_are_listed_but_not_an_error(fake_distributions, plugin_modules, monkeypatch):
    mod = plugin_modules("utod_test_cli_disabled", "raise ImportError('never imported')\n")
    fake_distributions([("utod-off", "3.0", {"off": mod})])
    monkeypatch.setenv("UTOD_DISABLED_PLUGINS", "utod-off")
    set_registry(None)
    try:
        result = invoke("--strict")
        assert result.exit_code == 0, result.output
        line = next(line for line in result.output.splitlines() if "utod-off" in line)
        assert line.split()[:5] == ["-", "-", "utod-off", "3.0", "disabled"]
        assert "disabled by UTOD_DISABLED_PLUGINS" in line
        (row,) = json.loads(invoke("--json").output)
        assert (row["status"], row["error"], row["plugin"]) == ("disabled", None, "off")
    finally:
        set_registry(None)


def test_empty_registry(install_registry):
    install_registry()
    result = invoke()
    assert result.exit_code == 0 and result.output.startswith("No components registered.")
    assert json.loads(invoke("--json").output) == []


@click.command("select-assigner-for-test")
@click.argument("name")
@click.option("--guarded/--unguarded", default=True)
def _select(name: str, guarded: bool) -> None:
    if guarded:
        with user_errors():
            get_registry().get("assigner", name)
    else:
        get_registry().get("assigner", name)


def test_unknown_name_from_the_cli_exits_2(clean, capsys):
    cli.add_command(_select)
    try:
        result = CliRunner().invoke(cli, ["select-assigner-for-test", "simtoa"])
        assert result.exit_code == 2
        assert "Error: unknown assigner 'simtoa'. Did you mean 'simota'? Available: legacy, simota" in result.output
        # Raised outside user_errors(): utod.cli.main still turns it into exit code 2.
        with pytest.raises(SystemExit) as info:
            main(["select-assigner-for-test", "--unguarded", "simtoa"])
        assert info.value.code == 2
        assert "unknown assigner 'simtoa'" in capsys.readouterr().err
    finally:
        cli.commands.pop("select-assigner-for-test")


def _run(code: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env,
                          timeout=60)


def test_list_plugins_does_not_import_tensorflow():
    proc = _run(
        "import sys\n"
        "from utod.cli import main\n"
        "try:\n"
        "    main(['list-plugins', '--json'])\n"
        "except SystemExit as exc:\n"
        "    assert not exc.code, exc.code\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'tf_keras', 'keras', 'tf2onnx'))\n"
        "print('HEAVY', heavy, file=sys.stderr)\n"
    )
    assert proc.returncode == 0, proc.stderr
    assert "HEAVY []" in proc.stderr, proc.stderr
    rows = json.loads(proc.stdout)
    assert all(set(r) == ROW_KEYS for r in rows)
    assert not [r for r in rows if r["status"] == "error" and r["provider"] == "utod"], rows


def test_console_script_answers(tmp_path):
    exe = Path(sys.executable).with_name("utod")
    if not exe.exists():
        pytest.skip("console script not installed (pip install -e .)")
    proc = subprocess.run([str(exe), "list-plugins"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0].split() == ["KIND", "NAME", "PROVIDER", "VERSION", "STATUS", "SUMMARY"]
