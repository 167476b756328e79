"""Saved plans say when, by which version and for which platform they were made, and
``reconciler show`` renders them; ``apply`` refuses a plan made for another platform, one
from before plans carried their target, and (``--max-age``) one that is too old.

Every refusal is exit 1 with nothing changed, and is recorded in the history as refused.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from conftest import APP_KEY, SETTINGS, Agency

from reconciler import __version__
from reconciler.cli import main
from reconciler.errors import StalePlan
from reconciler.model import Scenario
from reconciler.plan import Change, Plan, checksum
from reconciler.platform import SandboxPlatform, World
from reconciler.saved import check_target, say_age
from reconciler.target import gateway_url
from reconciler.vocab import Action

JUS, WDT = "21345678", "12345679"
SHOPS = """\
shops:
  - id: "100001"
    name: 一号店
    erp: jushuitan
    scenarios: {intercept_shipment: {}, order_status: {}}
"""
UNTOUCHED = {"intercept_shipment": WDT}


def saved_plan(agency: Agency) -> Path:
    agency.shops(SHOPS)
    agency.world({"100001": {"name": "一号店", "bindings": {"intercept_shipment": WDT}}})
    out = agency.dir.parent / "plan.json"
    r = agency.run("plan", "--out", str(out))
    assert r.exit_code == 0, r.output
    return out


def rewrite(path: Path, **fields: Any) -> dict[str, Any]:
    """Change a saved plan's fields and re-seal it (the checksum catches damage, it is not a
    signature: whoever can write the file can do this, which is why the target is checked)."""
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    for k, v in fields.items():
        if v is None:
            data.pop(k, None)
        else:
            data[k] = v
    data["checksum"] = checksum({k: v for k, v in data.items() if k != "checksum"})
    path.write_text(json.dumps(data, ensure_ascii=False, indent=2), encoding="utf-8")
    return data


def refused(agency: Agency) -> list[dict[str, Any]]:
    r = agency.run("history", "--format", "json")
    assert r.exit_code == 0, r.output
    return [e for e in json.loads(r.stdout)["entries"] if e["outcome"] == "refused"]


# --------------------------------------------------------------------------- what a saved plan carries


def test_a_saved_plan_carries_when_which_version_and_which_platform(agency: Agency) -> None:
    before = datetime.now(UTC).replace(microsecond=0)
    out = saved_plan(agency)
    data = json.loads(out.read_text(encoding="utf-8"))
    assert data["tool_version"] == __version__
    assert before <= datetime.fromisoformat(data["created_at"]) <= datetime.now(UTC)
    if agency.provider == "top":
        assert agency.url is not None
        assert data["target"] == {"kind": "top", "url": agency.url, "app_key": APP_KEY}
    else:
        p = SandboxPlatform(agency.db)
        try:
            assert data["target"] == {"kind": "sandbox", "id": p.identity()}
        finally:
            p.close()
    assert "s3cret" not in out.read_text(encoding="utf-8")   # the app secret is never part of a target
    # the stamp is under the checksum: a plan only printed carries none and stays byte-identical
    printed = json.loads(agency.run("plan", "--format", "json").stdout)
    assert not {"created_at", "tool_version", "target"} & set(printed)
    assert agency.run("plan", "--format", "json").stdout == agency.run("plan", "--format", "json").stdout


def test_the_sandbox_identity_is_kept_by_sandbox_load_and_differs_between_sandboxes(tmp_path: Path) -> None:
    a, b = SandboxPlatform(tmp_path / "a.db"), SandboxPlatform(tmp_path / "b.db")
    try:
        first = a.identity()
        assert first == a.identity() and first.startswith("sandbox-")
        a.load_world(World.model_validate({"shops": {"1": {"name": "x"}}}))
        assert a.identity() == first                       # new content, the same platform
        assert "sandbox_id" not in json.dumps(a.dump_world(include_secrets=True))
        assert b.identity() != first
    finally:
        a.close()
        b.close()
    again = SandboxPlatform(tmp_path / "a.db")
    try:
        assert again.identity() == first
    finally:
        again.close()


def test_gateway_urls_are_named_without_credentials_query_or_default_port() -> None:
    assert gateway_url("HTTPS://user:pw@GW.Example.com:443/router/rest/?session=x#f") == "https://gw.example.com/router/rest"
    assert gateway_url("http://127.0.0.1:8765/router/rest") == "http://127.0.0.1:8765/router/rest"
    assert gateway_url("http://[::1]:80/r") == "http://[::1]/r"


# --------------------------------------------------------------------------- show


def test_show_renders_a_saved_plan_in_every_format(agency: Agency) -> None:
    out = saved_plan(agency)
    data = json.loads(out.read_text(encoding="utf-8"))
    r = agency.run("show", str(out))
    assert r.exit_code == 0, r.output
    first = r.stdout.splitlines()[0]
    assert first.startswith(f"Saved plan made {data['created_at']} by reconciler {__version__} for {data['target']['kind']} ")
    assert first.endswith(f"; checksum {data['checksum']}")
    assert f"  ~ intercept_shipment  rotate  wangdiantong ({WDT}) → jushuitan ({JUS})" in r.stdout
    assert r.stdout.rstrip().endswith("Plan: 1 to bind, 1 to rotate, 0 to unbind, 0 to update; 0 error(s), 0 warning(s).")

    r = agency.run("show", str(out), "--format", "json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout) == data

    r = agency.run("show", str(out), "--format", "markdown")
    assert r.exit_code == 0, r.output
    assert f"Plan checksum `{data['checksum']}`" in r.stdout
    assert f"Saved plan made {data['created_at']} by reconciler {__version__} for " in r.stdout.replace("\\", "")

    r = agency.run("show", str(out), "--format", "html")
    assert r.exit_code == 0, r.output
    assert r.stdout.startswith("<!DOCTYPE html>") and data["checksum"] in r.stdout and "一号店" in r.stdout


def test_show_needs_no_configuration_or_platform(agency: Agency, tmp_path: Path) -> None:
    out = saved_plan(agency)
    r = CliRunner().invoke(main, ["-C", str(tmp_path / "nowhere"), "show", str(out)], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert r.stdout.startswith("Saved plan made ")


def test_show_refuses_a_tampered_plan(agency: Agency) -> None:
    out = saved_plan(agency)
    data = json.loads(out.read_text(encoding="utf-8"))
    data["changes"][0]["after"]["appkey"] = WDT
    out.write_text(json.dumps(data), encoding="utf-8")
    r = agency.run("show", str(out))
    assert r.exit_code == 1
    assert r.stdout == ""
    assert r.stderr == f"Error: {out}: the file was altered after it was written (checksum mismatch); make a new plan\n"
    r = agency.run("show", str(out.with_name("missing.json")))
    assert r.exit_code == 1 and r.stderr.startswith("Error: ")


# --------------------------------------------------------------------------- apply: the target


def point_elsewhere(agency: Agency) -> None:
    """The configuration now names another platform: another sandbox database, or the same
    gateway under another URL (to the tool, another platform)."""
    if agency.provider == "top":
        assert agency.url is not None
        agency.url = agency.url.replace("127.0.0.1", "localhost")
        agency.write("reconciler.yaml", SETTINGS)
    else:
        agency.write("reconciler.yaml", SETTINGS.replace(".reconciler/sandbox.db", ".reconciler/other.db"))


def test_apply_refuses_a_plan_made_for_another_platform(agency: Agency) -> None:
    out = saved_plan(agency)
    made_for = json.loads(out.read_text(encoding="utf-8"))["target"]
    point_elsewhere(agency)
    r = agency.run("apply", str(out))
    assert r.exit_code == 1, r.output
    kind = made_for["kind"]
    detail = f"{made_for['url']} (app key {APP_KEY})" if kind == "top" else made_for["id"]
    assert r.stderr.startswith(f"Error: the saved plan was made for {kind} {detail}, not for {kind} ")
    assert "nothing was applied. Make a new plan against this platform" in r.stderr
    assert agency.bindings("100001") == UNTOUCHED
    if agency.provider == "sandbox":   # the other sandbox (loaded from the same world) is untouched too
        other = SandboxPlatform(agency.dir / ".reconciler" / "other.db")
        try:
            assert {b["scenario"]: b["appkey"] for b in other.get("100001")["bindings"]} == UNTOUCHED
        finally:
            other.close()
    assert [(e["scenario"], e["action"]) for e in refused(agency)] == [("intercept_shipment", "rotate"),
                                                                       ("order_status", "bind")]
    assert all(e["error"].startswith("the saved plan was made for ") for e in refused(agency))


def test_apply_refuses_a_plan_saved_before_plans_carried_their_target(agency: Agency) -> None:
    out = saved_plan(agency)
    rewrite(out, created_at=None, tool_version=None, target=None)   # as the previous version saved them
    r = agency.run("show", str(out))
    assert r.exit_code == 0, r.output
    assert r.stderr == (f"Warning: {out} was saved before plans carried their target (by an earlier reconciler);"
                        " apply refuses it: make a new plan\n")
    assert not r.stdout.startswith("Saved plan made")
    r = agency.run("apply", str(out))
    assert r.exit_code == 1, r.output
    assert r.stderr == ("Error: the saved plan was made before plans carried their target (by an earlier reconciler),"
                        " so which platform it was reviewed against is unknown; make a new plan\n")
    assert agency.bindings("100001") == UNTOUCHED
    assert len(refused(agency)) == 2


def test_a_plan_resealed_for_another_target_is_still_checked_against_the_platform(agency: Agency) -> None:
    """Re-sealing a plan with this platform's target makes it applicable here, but only
    exactly: every binding it touches must still hold its before."""
    out = saved_plan(agency)
    point_elsewhere(agency)
    r = agency.run("plan", "--out", str(out.with_name("fresh.json")))
    assert r.exit_code == 0
    here = json.loads(out.with_name("fresh.json").read_text(encoding="utf-8"))["target"]
    rewrite(out, target=here)
    assert agency.run("apply", str(out)).exit_code == 0


# --------------------------------------------------------------------------- apply --max-age


def test_max_age_refuses_an_old_plan_and_accepts_a_recent_one(agency: Agency) -> None:
    out = saved_plan(agency)
    day_ago = (datetime.now(UTC) - timedelta(hours=25)).replace(microsecond=0).isoformat()
    rewrite(out, created_at=day_ago)
    r = agency.run("apply", "--max-age", "24h", str(out))
    assert r.exit_code == 1, r.output
    assert r.stderr.startswith("Error: the saved plan is 25h")
    assert f"old (made {day_ago}), older than --max-age 24h; make a new plan" in r.stderr
    assert agency.bindings("100001") == UNTOUCHED
    assert len(refused(agency)) == 2
    r = agency.run("apply", "--max-age", "2d", str(out))
    assert r.exit_code == 0, r.output
    assert agency.bindings("100001") == {"intercept_shipment": JUS, "order_status": JUS}


@pytest.mark.parametrize("args", [["--max-age", "24h"], ["--max-age", "yesterday", "plan.json"],
                                  ["--max-age", "0h", "plan.json"]])
def test_max_age_usage(agency: Agency, args: list[str]) -> None:
    agency.shops(SHOPS)
    agency.world({"100001": {}})
    r = agency.run("apply", *args)
    assert r.exit_code == 1
    assert "--max-age" in r.stderr
    assert agency.bindings("100001") == {}


# --------------------------------------------------------------------------- the rule itself, on a fixed clock


MADE = datetime(2026, 5, 1, 3, 4, 5, tzinfo=UTC)
HERE = {"kind": "sandbox", "id": "sandbox-a"}


def _plan(**stamp: Any) -> Plan:
    plan = Plan(changes=(Change("1", Scenario.intercept_shipment, Action.bind, {"appkey": None}, {"appkey": JUS}),))
    return plan.stamped(**{"created_at": MADE.isoformat(), "tool_version": "9.9.9", "target": HERE, **stamp})


def test_check_target_on_an_injected_clock() -> None:
    plan = _plan()
    check_target(plan, HERE)                                                    # no age limit: any age
    check_target(plan, HERE, max_age=timedelta(hours=24), now=MADE + timedelta(hours=24))
    with pytest.raises(StalePlan, match=r"^the saved plan is 24h old"):
        check_target(plan, HERE, max_age=timedelta(hours=24), now=MADE + timedelta(hours=24, seconds=1))
    with pytest.raises(StalePlan, match=r"^the saved plan is 3d 4h old \(made 2026-05-01T03:04:05\+00:00\), older than"
                                        r" --max-age 2d; make a new plan$"):
        check_target(plan, HERE, max_age=timedelta(days=2), now=MADE + timedelta(days=3, hours=4))
    check_target(plan, HERE, max_age=timedelta(minutes=1), now=MADE - timedelta(hours=1))  # a clock behind: not old
    with pytest.raises(StalePlan, match="made for sandbox sandbox-a, not for sandbox sandbox-b"):
        check_target(plan, {"kind": "sandbox", "id": "sandbox-b"})
    with pytest.raises(StalePlan, match="made for sandbox sandbox-a, not for top http://gw/r"):
        check_target(plan, {"kind": "top", "url": "http://gw/r", "app_key": "1"})
    with pytest.raises(StalePlan, match="before plans carried their target"):
        check_target(Plan(changes=()), HERE)
    with pytest.raises(StalePlan, match="does not say when it was made"):
        check_target(_plan(created_at="last tuesday"), HERE, max_age=timedelta(hours=1), now=MADE)
    with pytest.raises(ValueError, match="needs now"):
        check_target(plan, HERE, max_age=timedelta(hours=1))


def test_ages_for_people() -> None:
    assert [say_age(timedelta(seconds=s)) for s in (0, 30, 300, 725, 86_400, 90_180, 259_200, 273_600)] == [
        "0s", "30s", "5m", "12m 5s", "24h", "25h 3m", "3d", "3d 4h"]
