"""A warm plan (every shop file unchanged since the last run) through the console script, as a
real process: it builds the bindings of no shop the platform already matches (they are
compared through their binding sets), only those of a shop it has something to say about,
and imports none of the modules only other commands need. Guards the speed of issue 13's
warm row against a change that would quietly build everything again."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from clikit import cli_env

ERPS = {"jushuitan": "21345678", "wangdiantong": "12345679"}
SCENARIOS = ("intercept_shipment", "modify_address", "order_status")

# the command in this process; at exit, how many shops' bindings were built and what was imported
COUNTING = """
import atexit, sys
from reconciler import model
built = []
build = model.BindingSet.build
def counting(self, given):
    built.append(1)
    return build(self, given)
model.BindingSet.build = counting
def report():
    print("built", len(built), file=sys.stderr)
    print("imported", " ".join(sorted(m for m in sys.modules if m in LATER)), file=sys.stderr, flush=True)
LATER = {"pydantic", "logging", "subprocess", "socket", "concurrent.futures", "random", "secrets", "getpass", "html",
         "sqlalchemy", "httpx", "jinja2", "deepdiff", "reconciler.run", "reconciler.specs"}
atexit.register(report)
sys.argv = ["reconciler", *sys.argv[1:]]
from reconciler.cli import run
run()
"""


def _agency(root: Path, shops: int) -> None:
    """``shops`` shops in 4 files, all bound on the sandbox as the configuration says."""
    (root / "shops").mkdir(parents=True)
    (root / "reconciler.yaml").write_text("provider: {kind: sandbox, path: .reconciler/sandbox.db, world: world.yaml}\n"
                                          "safety: {max_change_share: 0.3, min_managed: 10}\n", encoding="utf-8")
    (root / "erps.yaml").write_text("erps:\n" + "".join(f'  {k}: {{name: {k}, appkey: "{a}"}}\n' for k, a in ERPS.items()),
                                    encoding="utf-8")
    world = ['app: {app_key: "30000001", app_secret: "test-secret"}', "apps:"]
    world += [f'  "{a}": {{name: {k}, scenarios: [{", ".join(SCENARIOS)}], detail_whitelisted: true}}' for k, a in ERPS.items()]
    world.append("shops:")
    per = shops // 4
    for f in range(4):
        lines = ["shops:"]
        for i in range(f * per, (f + 1) * per):
            sid, erp = str(100_000 + i), sorted(ERPS)[i % 2]
            lines += [f'  - id: "{sid}"', f"    name: 店铺{i}", f"    erp: {erp}", "    scenarios:",
                      *(f"      {sc}: {{}}" for sc in SCENARIOS)]
            world.append(f'  "{sid}": {{name: 店铺{i}, bindings: {{{", ".join(f"{sc}: {ERPS[erp]!r}" for sc in SCENARIOS)}}}}}')
        (root / "shops" / f"shops-{f}.yaml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (root / "world.yaml").write_text("\n".join(world) + "\n", encoding="utf-8")


def _run(root: Path, *args: str) -> tuple[int, str, int, set[str]]:
    done = subprocess.run([sys.executable, "-c", COUNTING, "-C", str(root), *args], capture_output=True, text=True,
                          env=cli_env(), timeout=120, check=False)
    assert "Traceback" not in done.stderr, done.stderr
    built = next(int(line.split()[1]) for line in done.stderr.splitlines() if line.startswith("built "))
    imported = next(line.split()[1:] for line in done.stderr.splitlines() if line.startswith("imported"))
    return done.returncode, done.stdout, built, set(imported)


@pytest.mark.parametrize("command", ["plan", "validate"])
def test_a_warm_run_builds_no_binding_of_an_unchanged_shop(tmp_path: Path, command: str) -> None:
    _agency(tmp_path, 40)
    code, out, built, _ = _run(tmp_path, command)    # cold: the files are read (and the sandbox loaded)
    assert code == 0, out
    assert built == 0   # (read from the files, not the cache: no binding set)
    code, out, built, imported = _run(tmp_path, command)   # warm: every shop from the parse cache
    assert code == 0, out
    assert ("No changes." in out) if command == "plan" else out.startswith("Configuration valid: 40 shop(s), 120 managed")
    assert built == 0
    assert imported == set(), imported


def test_a_warm_plan_builds_the_bindings_of_a_shop_it_has_to_say_something_about(tmp_path: Path) -> None:
    _agency(tmp_path, 40)
    assert _run(tmp_path, "plan")[0] == 0
    with sqlite3.connect(tmp_path / ".reconciler" / "sandbox.db") as db:   # someone unbinds one scenario by hand
        assert db.execute("UPDATE bindings SET appkey = NULL WHERE shop_id = '100007' AND scenario = 'order_status'"
                          ).rowcount == 1
    code, out, built, _ = _run(tmp_path, "plan", "--detailed-exitcode")
    assert code == 2, out
    assert "100007" in out and "Plan: 1 to bind, 0 to rotate, 0 to unbind, 0 to update" in out
    assert built == 1   # that shop's, only
