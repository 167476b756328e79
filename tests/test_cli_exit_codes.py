"""Every exit code of the README's command table for validate, plan, apply and sandbox load/dump.

| command  | exit codes |
|----------|------------|
| validate | 0 valid · 1 invalid |
| plan     | 0 · 1 error · with --detailed-exitcode: 2 changes pending |
| apply    | 0 applied (or nothing to do) · 1 refused/error, nothing changed · 3 partly applied |
| sandbox  | 0 · 1 |

Run on both providers through the ``agency`` fixture, except the interactive
confirmation, which needs a real terminal: a subprocess on a pseudo-terminal.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import Agency

JUS, WDT = "21345678", "12345679"

ONE_SHOP = """\
shops:
  - id: "100001"
    erp: jushuitan
    scenarios: {intercept_shipment: {}, modify_address: {}}
"""
BOUND = {"intercept_shipment": JUS, "modify_address": JUS}


def plan_codes(agency: Agency) -> tuple[int, int]:
    """(plan, plan --detailed-exitcode)."""
    return agency.run("plan").exit_code, agency.run("plan", "--detailed-exitcode").exit_code


# --------------------------------------------------------------------------- validate


def test_validate_0_valid_1_invalid(agency: Agency) -> None:
    agency.shops(ONE_SHOP)
    r = agency.run("validate")
    assert (r.exit_code, r.stdout) == (0, "Configuration valid: 1 shop(s), 2 managed binding(s), 4 ERP(s).\n")
    agency.shops(ONE_SHOP.replace("jushuitan", "jushuitn"))
    r = agency.run("validate")
    assert r.exit_code == 1
    assert r.stderr == (f"Error: {agency.dir}/shops/a.yaml:3:10: shops[0].erp: unknown ERP 'jushuitn'; did you mean 'jushuitan'?\n"
                        "1 error(s) in the configuration\n")


# --------------------------------------------------------------------------- plan


def test_plan_0_or_2_with_changes_pending(agency: Agency) -> None:
    agency.shops(ONE_SHOP)
    agency.world({"100001": {}})
    assert plan_codes(agency) == (0, 2)
    assert agency.bindings("100001") == {}  # plan never writes


def test_plan_0_without_changes(agency: Agency) -> None:
    agency.shops(ONE_SHOP)
    agency.world({"100001": {"bindings": BOUND}})
    assert plan_codes(agency) == (0, 0)
    assert agency.run("plan").stdout == "No changes. The platform matches the configuration.\n" \
                                        "Plan: 0 to bind, 0 to rotate, 0 to unbind, 0 to update; 0 error(s), 0 warning(s).\n"


def test_plan_1_on_a_preflight_error_even_with_changes_pending(agency: Agency) -> None:
    agency.shops(ONE_SHOP + '  - id: "100002"\n    erp: wangdiantong\n    scenarios: {order_status: {}}\n')
    agency.world({"100001": {}, "100002": {}})  # 旺店通 has not integrated order_status
    assert plan_codes(agency) == (1, 1)


def test_plan_1_when_a_shop_cannot_be_read(agency: Agency) -> None:
    agency.shops(ONE_SHOP)
    agency.world({"100002": {}})  # the configured shop does not exist on the platform
    assert plan_codes(agency) == (1, 1)


def test_plan_1_on_an_invalid_config(agency: Agency) -> None:
    agency.shops(ONE_SHOP.replace('"100001"', "100001"))
    agency.world({"100001": {}})
    r = agency.run("plan", "--detailed-exitcode")
    assert r.exit_code == 1
    assert r.stderr.startswith(f"Error: {agency.dir}/shops/a.yaml:2:9: shops[0].id: must be a quoted string of digits")


# --------------------------------------------------------------------------- apply


def test_apply_0_applied_then_0_nothing_to_do(agency: Agency) -> None:
    agency.shops(ONE_SHOP)
    agency.world({"100001": {}})
    r = agency.run("apply", "--auto-approve")
    assert r.exit_code == 0, r.output
    assert agency.bindings("100001") == BOUND
    r = agency.run("apply", "--auto-approve")
    assert r.exit_code == 0, r.output
    assert r.stdout.splitlines()[-1] == "Nothing to apply."


def test_apply_1_on_a_non_interactive_stdin_without_auto_approve(agency: Agency) -> None:
    agency.shops(ONE_SHOP)
    agency.world({"100001": {}})
    r = agency.run("apply", input="y\n")  # not a terminal: "y" on a pipe is not a review
    assert r.exit_code == 1, r.output
    assert r.stderr == ("Error: refusing to apply: stdin is not a terminal; review the plan and pass --auto-approve,"
                        " or apply a saved plan (plan --out FILE, then apply FILE)\n")
    assert agency.bindings("100001") == {}


def test_apply_1_when_every_pending_shop_has_errors(agency: Agency) -> None:
    agency.shops('shops:\n  - id: "100001"\n    erp: wangdiantong\n    scenarios: {intercept_shipment: {}, order_status: {}}\n')
    agency.world({"100001": {}})
    r = agency.run("apply", "--auto-approve")
    assert r.exit_code == 1, r.output
    assert r.stdout.splitlines()[-1] == "Nothing applied: every pending shop has errors."
    assert agency.bindings("100001") == {}


def test_apply_1_on_an_invalid_config(agency: Agency) -> None:
    agency.shops(ONE_SHOP)
    agency.world({"100001": {}})
    agency.write("reconciler.yaml", "safety: {max_change_share: 2}\n")
    r = agency.run("apply", "--auto-approve")
    assert r.exit_code == 1, r.output
    assert r.stderr == (f"Error: {agency.dir}/reconciler.yaml:1:28: safety.max_change_share: must be at most 1, got 2\n"
                        "1 error(s) in the configuration\n")


def test_apply_3_partly_applied(agency: Agency) -> None:
    agency.shops(ONE_SHOP + '  - id: "100002"\n    erp: jushuitan\n    scenarios: {intercept_shipment: {}}\n')
    agency.world({"100001": {}, "100002": {}},
                 faults=[{"operation": "bind", "shop": "100002", "error": "isv.permission-denied"}])
    r = agency.run("apply", "--auto-approve")
    assert r.exit_code == 3, r.output
    assert agency.bindings("100001") == BOUND
    assert agency.bindings("100002") == {}
    assert r.stdout.splitlines()[-1] == "Apply partly done: 1 shop(s) applied, 1 failed, 0 withheld."


# --------------------------------------------------------------------------- apply on a terminal


def sandbox_dir(tmp_path: Path) -> Path:
    root = tmp_path / "configs"
    (root / "shops").mkdir(parents=True)
    (root / "erps.yaml").write_text('erps:\n  jushuitan: {name: 聚水潭, appkey: "21345678"}\n', encoding="utf-8")
    (root / "shops" / "a.yaml").write_text(ONE_SHOP, encoding="utf-8")
    (root / "reconciler.yaml").write_text("provider: {kind: sandbox, world: world.yaml}\n", encoding="utf-8")
    world = {"apps": {JUS: {"scenarios": ["intercept_shipment", "modify_address"]}}, "shops": {"100001": {}}}
    (root / "world.yaml").write_text(yaml.safe_dump(world), encoding="utf-8")
    return root


def apply_on_a_terminal(root: Path, answer: str) -> tuple[int, str]:
    """`reconciler apply` with stdin on a pseudo-terminal, answering the confirmation."""
    leader, follower = os.openpty()
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith("RECONCILER_")}
        proc = subprocess.Popen([sys.executable, "-m", "reconciler", "-C", str(root), "apply"], stdin=follower,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
        os.close(follower)
        os.write(leader, answer.encode() + b"\n")
        out, _ = proc.communicate(timeout=120)
    finally:
        os.close(leader)
    return proc.returncode, out.decode()


def bindings_of(root: Path) -> dict[str, Any]:
    from reconciler.platform import SandboxPlatform
    p = SandboxPlatform(root / ".reconciler" / "sandbox.db")
    try:
        return {b["scenario"]: b["appkey"] for b in p.get("100001")["bindings"]}
    finally:
        p.close()


@pytest.mark.parametrize(("answer", "code", "after"), [("n", 1, {}), ("y", 0, BOUND)])
def test_apply_asks_on_a_terminal(tmp_path: Path, answer: str, code: int, after: dict[str, str]) -> None:
    root = sandbox_dir(tmp_path)
    rc, out = apply_on_a_terminal(root, answer)
    assert "Apply 2 change(s)? [y/N]: " in out
    assert rc == code, out
    if answer == "n":
        assert "Error: apply cancelled; nothing changed" in out
    assert bindings_of(root) == after


# --------------------------------------------------------------------------- sandbox load / dump


def test_sandbox_load_and_dump_0(agency: Agency) -> None:
    agency.shops(ONE_SHOP)
    world = agency.dir.parent / "other-world.yaml"
    world.write_text(textwrap.dedent(f"""\
        app: {{app_key: "30000001", app_secret: "s3cret-for-tests"}}
        apps:
          "{JUS}": {{name: 聚水潭, scenarios: [intercept_shipment, modify_address], detail_whitelisted: true}}
        shops:
          "100001": {{name: 一号店, session: sess-100001, bindings: {{intercept_shipment: "{JUS}"}}}}
        """), encoding="utf-8")
    r = agency.run("sandbox", "load", str(world))
    assert r.exit_code == 0, r.output
    assert r.stdout.startswith(f"Loaded {world}: 1 shop(s), 1 ERP app(s), 0 fault(s) into ")
    assert agency.bindings("100001") == {"intercept_shipment": JUS}

    r = agency.run("sandbox", "dump")
    assert r.exit_code == 0, r.output
    assert yaml.safe_load(r.stdout) == {
        "app": {"app_key": "30000001"},  # no secret without --include-secrets
        "apps": {JUS: {"name": "聚水潭", "scenarios": ["intercept_shipment", "modify_address"],
                       "detail_whitelisted": True, "syncs_order_status": True}},
        "shops": {"100001": {"name": "一号店", "bindings": {"intercept_shipment": JUS}, "buyer_self_service": False}},
    }
    assert "s3cret" not in r.stdout and "sess-" not in r.stdout

    # A dump with secrets loads back into the same content.
    full = agency.run("sandbox", "dump", "--include-secrets").stdout
    assert "s3cret-for-tests" in full and "sess-100001" in full
    world.write_text(full, encoding="utf-8")
    assert agency.run("sandbox", "load", str(world)).exit_code == 0
    assert agency.run("sandbox", "dump", "--include-secrets").stdout == full


def test_sandbox_load_1_for_a_bad_world_file(agency: Agency) -> None:
    agency.shops(ONE_SHOP)
    agency.world({"100001": {"bindings": {"intercept_shipment": JUS}}})
    before = agency.run("sandbox", "dump", "--include-secrets").stdout
    world = agency.dir.parent / "bad-world.yaml"
    world.write_text(textwrap.dedent("""\
        apps:
          21345678: {name: x, scenarios: [intercept_shipment, refund]}
        shops:
          "100001": {bindings: {intercept_shipment: 21345678}, foo: 1}
        faults:
          - {operation: bnd, times: 0}
        """), encoding="utf-8")
    r = agency.run("sandbox", "load", str(world))
    assert r.exit_code == 1
    w = str(world)
    assert r.stderr.splitlines() == [
        f'Error: {w}:2:3: apps.21345678: a key must be a quoted string (YAML read 21345678 as a number); write "21345678"',
        f"{w}:2:55: apps.21345678.scenarios[1]: expected one of 'intercept_shipment', 'modify_address' or 'order_status',"
        " got the string 'refund'",
        f"{w}:4:45: shops.100001.bindings.intercept_shipment: must be a quoted string (YAML read 21345678 as a number);"
        ' write "21345678"',
        f"{w}:4:56: shops.100001.foo: unknown key 'foo'; expected one of: bindings, buyer_self_service, cs_permission, name, session",
        f"{w}:6:17: faults[0].operation: expected 'get', 'bind', 'unbind', 'selfservice', 'check', 'refresh' or 'create',"
        " got the string 'bnd'",
        f"{w}:6:29: faults[0].times: must be at least 1, got 0",
        "6 error(s) in the world file",
    ]
    assert agency.run("sandbox", "dump", "--include-secrets").stdout == before  # nothing loaded

    r = agency.run("sandbox", "load", str(world.with_name("missing.yaml")))
    assert r.exit_code == 1
    assert r.stderr == f"Error: {world.with_name('missing.yaml')}: file does not exist\n1 error(s) in the world file\n"


def test_sandbox_commands_1_on_a_bad_settings_file(agency: Agency) -> None:
    agency.world({"100001": {}})
    agency.write("reconciler.yaml", "safety: {max_change_shar: 0.3}\n")
    for args in (("sandbox", "dump"), ("sandbox", "load", str(agency.dir / "world.yaml"))):
        r = agency.run(*args)
        assert r.exit_code == 1
        assert r.stderr == (f"Error: {agency.dir}/reconciler.yaml:1:10: safety.max_change_shar: unknown key 'max_change_shar';"
                            " did you mean 'max_change_share'?\n1 error(s) in the configuration\n")


def test_usage_error_is_not_the_changes_pending_code(agency: Agency) -> None:
    """plan --detailed-exitcode: 2 means changes pending; a mistyped option must not look like it."""
    agency.shops('shops:\n  - id: "100001"\n    erp: jushuitan\n    scenarios: {intercept_shipment: {}}\n')
    agency.world({"100001": {"bindings": {"intercept_shipment": "21345678"}}})
    assert agency.run("plan", "--detailed-exitcode").exit_code == 0
    r = agency.run("plan", "--detailed-exitcode", "--fromat", "json")
    assert "No such option '--fromat'" in r.stderr
    assert r.exit_code == 1
    r = agency.run("--no-such-global", "plan")
    assert r.exit_code == 1
    r = agency.run("drift", "--no-color")
    assert r.exit_code == 1, r.output
    r = agency.run("sandbox", "dump", "--bogus")
    assert r.exit_code == 1, r.output


@pytest.mark.parametrize("broken", ["sandbox.db", "state.db", "history.db"])
def test_a_corrupt_database_is_an_error_naming_it_not_a_traceback(tmp_path: Path, broken: str) -> None:
    from click.testing import CliRunner

    from reconciler.cli import main

    cfg = tmp_path / "configs"
    (cfg / "shops").mkdir(parents=True)
    (cfg / "erps.yaml").write_text('erps: {jushuitan: {appkey: "21345678"}}\n', encoding="utf-8")
    (cfg / "shops" / "a.yaml").write_text('shops: [{id: "100001", erp: jushuitan, scenarios: {intercept_shipment: {}}}]\n',
                                          encoding="utf-8")
    (cfg / ".reconciler").mkdir()
    (cfg / ".reconciler" / broken).write_bytes(b"garbage, not SQLite")
    r = CliRunner().invoke(main, ["-C", str(cfg), "apply", "--auto-approve"])
    assert r.exit_code == 1
    if broken == "sandbox.db":
        assert r.stderr == (f"Error: {cfg / '.reconciler' / broken}: the sandbox database is unreadable"
                            " (file is not a database); move it away to start a new one\n")
    else:  # the state store (history.db: a store written before the state store, used when state.db is absent)
        assert r.stderr == (f"Error: state store sqlite:///.reconciler/{broken}: not a database file"
                            " (move it away to start a new store)\n")
    assert (cfg / ".reconciler" / broken).read_bytes() == b"garbage, not SQLite"


def test_sandbox_serve_on_a_taken_port_is_exit_1_without_traceback(tmp_path: Path) -> None:
    import socket

    from click.testing import CliRunner

    from reconciler.cli import main

    (tmp_path / "erps.yaml").write_text("erps: {}\n", encoding="utf-8")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        r = CliRunner().invoke(main, ["-C", str(tmp_path), "sandbox", "serve", "--port", str(port)])
    assert r.exit_code == 1
    assert r.stderr == f"Error: cannot serve on 127.0.0.1:{port}: Address already in use\n"


def test_a_world_whose_shops_share_a_session_key_is_refused_with_its_location(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from reconciler.cli import main

    world = tmp_path / "w.yaml"
    world.write_text('shops:\n  "100001": {session: sess-x}\n  "100002": {session: sess-x}\n', encoding="utf-8")
    r = CliRunner().invoke(main, ["-C", str(tmp_path), "sandbox", "load", str(world)])
    assert r.exit_code == 1
    assert r.stderr == (f"Error: {world}:2:3: shops: shops 100001 and 100002 have the same session key;"
                        " a session key authorizes exactly one shop\n1 error(s) in the world file\n")
    assert not (tmp_path / ".reconciler" / "sandbox.db").exists()


def test_help_lists_every_command_and_loads_none() -> None:
    """--help names every command a module registers, from the table, without importing them."""
    import importlib
    import subprocess
    import sys

    from reconciler.cli import COMMANDS

    found = {}
    for module in {m for m, _ in COMMANDS.values()}:
        for cmd in getattr(importlib.import_module(f"reconciler.cli.{module}"), "COMMANDS", ()):
            found[cmd.name] = module
    assert found == {name: module for name, (module, _) in COMMANDS.items()}
    code = ("import sys; from reconciler.cli import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in sys.modules if m.startswith('reconciler.cli.') or m in"
            " ('pydantic', 'yaml', 'httpx', 'sqlalchemy')))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == "['reconciler.cli.context']"
    for name in COMMANDS:
        assert f"  {name} " in r.stdout


def test_shell_completion_of_a_command_name_loads_no_command_module() -> None:
    """Completing ``reconciler pl`` answers from the command table, as --help does (start-up time)."""
    import subprocess
    import sys

    code = ("import sys; from reconciler.cli import main\n"
            "try:\n    main(prog_name='reconciler')\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in sys.modules if m.startswith('reconciler.cli.') or m in ('pydantic', 'yaml')))")
    env = {**os.environ, "_RECONCILER_COMPLETE": "bash_complete", "COMP_WORDS": "reconciler pl", "COMP_CWORD": "1"}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["plain,plan", "['reconciler.cli.context']"]
