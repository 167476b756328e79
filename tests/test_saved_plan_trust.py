"""A saved plan is trusted only as far as the configuration and the key say (issue: "Trust
nothing from outside: saved plans"). A forger can rewrite a plan file and recompute its
unkeyed checksum; apply must still refuse every change the configuration would not make,
decide protect and the safety threshold from the configuration (``--force`` only from the
command line), refuse a replayed plan, and — with ``RECONCILER_PLAN_KEY`` — any plan not
signed under that key. Every refusal: exit 1, the platform unchanged."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import Agency

from reconciler.plan import checksum

JUS, WDT, INH = "21345678", "12345679", "31415926"
KEY = "a-long-random-plan-signing-key-0123456789"

SHOPS = """\
shops:
  - id: "100001"
    erp: jushuitan
    protect: true
    scenarios: {intercept_shipment: {}, order_status: {}}
  - id: "100002"
    erp: inhouse
    scenarios: {intercept_shipment: {}, modify_address: {buyer_self_service: true}}
"""
WORLD: dict[str, Any] = {"100001": {"bindings": {"intercept_shipment": JUS}},
                         "100002": {"bindings": {"order_status": WDT}},
                         "100003": {"bindings": {}}}


def _plan(agency: Agency, *args: str, env: dict[str, str] | None = None) -> Path:
    agency.shops(SHOPS)
    agency.world(WORLD)
    out = agency.dir.parent / "plan.json"
    r = agency.run("plan", "--out", str(out), *args, env=env)
    assert r.exit_code == 0, r.output
    return out


def _forge(path: Path, edit: Callable[[dict[str, Any]], None]) -> None:
    """Edit a saved plan and recompute its checksum, as a forger with write access to artifacts would."""
    data = json.loads(path.read_text(encoding="utf-8"))
    edit(data)
    data["summary"] = {a: sum(1 for c in data["changes"] if c["action"] == a) for a in ("bind", "rotate", "unbind", "update")}
    body = {k: v for k, v in data.items() if k not in ("checksum", "signature")}
    data["checksum"] = checksum(body)
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")


def _change(shop: str, scenario: str, action: str, before: Any, after: Any) -> dict[str, Any]:
    return {"shop": shop, "scenario": scenario, "action": action, "before": before, "after": after, "reason": "x"}


def _state(agency: Agency) -> dict[str, dict[str, str]]:
    return {s: agency.bindings(s) for s in ("100001", "100002", "100003")}


BEFORE = {"100001": {"intercept_shipment": JUS}, "100002": {"order_status": WDT}, "100003": {}}

FORGERIES = [
    pytest.param(lambda d: d["changes"].append(_change("100001", "intercept_shipment", "rotate", {"appkey": JUS},
                                                       {"appkey": "99999999"})),
                 "the configuration asks for", id="rotate-a-protected-shop-to-an-undeclared-appkey"),
    pytest.param(lambda d: d["changes"].append(_change("100003", "intercept_shipment", "bind", {"appkey": None},
                                                       {"appkey": JUS})),
                 "shop 100003 is not in the configuration", id="bind-a-shop-not-in-the-config"),
    pytest.param(lambda d: d["changes"].append(_change("100002", "order_status", "unbind", {"appkey": WDT},
                                                       {"appkey": None})),
                 "does not manage order_status", id="unbind-an-unmanaged-binding"),
    pytest.param(lambda d: d["changes"].__setitem__(0, {**d["changes"][0], "after": {"appkey": WDT}}),
                 "the configuration asks for", id="change-the-target-appkey"),
    pytest.param(lambda d: d["changes"].append(_change("100002", "modify_address", "update", {"buyer_self_service": True},
                                                       {"buyer_self_service": False})),
                 "does not ask for buyer_self_service=false", id="turn-self-service-off"),
    pytest.param(lambda d: d["changes"].append(_change("100002", "intercept_shipment", "rotate", {"appkey": None},
                                                       {"appkey": INH})),
                 "not a rotate of a binding", id="an-action-that-does-not-match-before"),
]


@pytest.mark.parametrize("edit, message", FORGERIES)
def test_a_change_the_configuration_would_not_make_is_refused(agency: Agency, edit: Any, message: str) -> None:
    out = _plan(agency)
    _forge(out, edit)
    r = agency.run("apply", str(out))
    assert r.exit_code == 1, r.output
    assert "the saved plan makes changes the current configuration would not make" in r.stderr
    assert message in r.stderr
    assert _state(agency) == BEFORE


def test_force_in_the_file_is_not_a_permission(agency: Agency) -> None:
    agency.shops(SHOPS.replace("erp: jushuitan\n    protect: true", "erp: inhouse\n    protect: true"))
    agency.world(WORLD)
    out = agency.dir.parent / "plan.json"
    assert agency.run("plan", "--out", str(out), "--force").exit_code == 0   # a forced plan: the rotation is allowed
    data = json.loads(out.read_text(encoding="utf-8"))
    assert data["force"] is True and any(c["action"] == "rotate" for c in data["changes"])
    r = agency.run("apply", str(out))
    assert r.exit_code == 1 and "protected shop(s) 100001" in r.stderr, r.output
    assert agency.bindings("100001") == {"intercept_shipment": JUS}
    r = agency.run("apply", str(out), "--force")
    assert r.exit_code == 0, r.output
    assert agency.bindings("100001")["intercept_shipment"] == INH


def test_the_safety_threshold_is_decided_from_the_configuration(agency: Agency) -> None:
    shops = "shops:\n" + "".join(f'  - {{id: "{200000 + i}", erp: jushuitan, scenarios: {{intercept_shipment: {{}}}}}}\n'
                                 for i in range(10))
    agency.shops(shops)
    agency.world({str(200000 + i): {"bindings": {"intercept_shipment": WDT if i < 4 else JUS}} for i in range(10)})
    out = agency.dir.parent / "plan.json"
    assert agency.run("plan", "--out", str(out), "--force").exit_code == 0   # 4 of 10 rotate: over 30 %
    _forge(out, lambda d: d["problems"].clear())                              # hide the unsafe problem
    r = agency.run("apply", str(out))
    assert r.exit_code == 1 and "over the 30% safety threshold" in r.stderr, r.output
    assert agency.bindings("200000") == {"intercept_shipment": WDT}


def test_a_replayed_plan_is_refused_after_the_state_moved_back(agency: Agency) -> None:
    """A→B applied, then B→A by another plan, then the A→B plan again: refused (the binding's
    revision is pinned, and the history knows that checksum was applied); the later change stays."""
    one = 'shops:\n  - {id: "100001", erp: %s, scenarios: {intercept_shipment: {}}}\n'
    agency.shops(one % "jushuitan")
    agency.world({"100001": {"bindings": {"intercept_shipment": WDT}}})
    ab = agency.dir.parent / "ab.json"
    assert agency.run("plan", "--out", str(ab)).exit_code == 0
    assert agency.run("apply", str(ab)).exit_code == 0
    assert agency.bindings("100001")["intercept_shipment"] == JUS
    agency.shops(one % "wangdiantong")
    assert agency.run("apply", "--auto-approve").exit_code == 0                   # B → A
    assert agency.bindings("100001")["intercept_shipment"] == WDT
    agency.shops(one % "jushuitan")                                                # the config says A→B again
    r = agency.run("apply", str(ab))
    assert r.exit_code == 1, r.output
    assert "the binding was written since the plan was made (revision 1, now 3)" in r.stderr, r.stderr
    assert agency.bindings("100001")["intercept_shipment"] == WDT


def test_a_plan_applied_once_is_refused_again_naming_the_run(agency: Agency) -> None:
    agency.shops(SHOPS.replace("    protect: true\n", ""))
    agency.world({"100001": {}, "100002": {}})
    p = agency.dir.parent / "p.json"
    assert agency.run("plan", "--out", str(p)).exit_code == 0
    assert agency.run("apply", str(p), "--actor", "alice").exit_code == 0
    agency.world({"100001": {}, "100002": {}})                                     # the platform is reset by hand
    r = agency.run("apply", str(p))
    assert r.exit_code == 1 and "already applied by run 1 (alice" in r.stderr, r.output
    assert agency.bindings("100001") == {}


def test_with_a_key_only_plans_signed_under_it_are_applied(agency: Agency) -> None:
    out = _plan(agency, env={"RECONCILER_PLAN_KEY": KEY})
    data = json.loads(out.read_text(encoding="utf-8"))
    assert data["signature"].startswith("hmac-sha256:") and KEY not in out.read_text(encoding="utf-8")
    # forged content with a recomputed checksum: the signature no longer matches
    forged = out.with_name("forged.json")
    forged.write_text(out.read_text(encoding="utf-8"), encoding="utf-8")
    _forge(forged, lambda d: d["changes"].pop())
    r = agency.run("apply", str(forged), env={"RECONCILER_PLAN_KEY": KEY})
    assert r.exit_code == 1 and "signature does not match" in r.stderr, r.output
    # unsigned, or signed under another key
    unsigned = out.with_name("unsigned.json")
    unsigned.write_text(json.dumps({k: v for k, v in data.items() if k != "signature"}), encoding="utf-8")
    r = agency.run("apply", str(unsigned), env={"RECONCILER_PLAN_KEY": KEY})
    assert r.exit_code == 1 and "not signed" in r.stderr
    r = agency.run("apply", str(out), env={"RECONCILER_PLAN_KEY": KEY[::-1]})
    assert r.exit_code == 1 and "signature does not match" in r.stderr
    assert _state(agency) == BEFORE
    assert KEY not in r.output and KEY[::-1] not in r.output
    r = agency.run("apply", str(out), env={"RECONCILER_PLAN_KEY": KEY})
    assert r.exit_code == 0, r.output


def test_a_short_key_is_refused(agency: Agency) -> None:
    agency.shops(SHOPS)
    agency.world(WORLD)
    r = agency.run("plan", "--out", str(agency.dir.parent / "p.json"), env={"RECONCILER_PLAN_KEY": "short"})
    assert r.exit_code == 1 and "RECONCILER_PLAN_KEY is shorter than 16 characters" in r.stderr
