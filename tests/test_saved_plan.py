"""Saved plans: `plan --out F` then `apply F` applies exactly that plan, or nothing.

A saved plan is refused (exit 1, nothing written, not even to the shops that are still
as planned) when it was already applied, when its content was edited, or when a binding
it touches changed on the platform since it was made. Formatting is not content: a
re-indented plan file with the same data is still the plan that was reviewed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from conftest import Agency

JUS, WDT, INH = "21345678", "12345679", "31415926"

SHOPS = """\
shops:
  - id: "100001"
    erp: jushuitan
    scenarios: {intercept_shipment: {}, order_status: {}}
  - id: "100002"
    erp: inhouse
    scenarios: {intercept_shipment: {}, modify_address: {buyer_self_service: true}}
"""
WORLD: dict[str, Any] = {"100001": {"bindings": {"intercept_shipment": WDT}}, "100002": {}}


def setup(agency: Agency) -> Path:
    """The agency's config and world, and a saved plan for them."""
    agency.shops(SHOPS)
    agency.world(WORLD)
    out = agency.dir.parent / "plan.json"
    r = agency.run("plan", "--out", str(out), "--detailed-exitcode")
    assert r.exit_code == 2, r.output
    return out


def state(agency: Agency) -> dict[str, Any]:
    return {s: (agency.bindings(s), agency.self_service(s)) for s in ("100001", "100002")}


UNTOUCHED = {"100001": ({"intercept_shipment": WDT}, False), "100002": ({}, False)}
APPLIED = {"100001": ({"intercept_shipment": JUS, "order_status": JUS}, False),
           "100002": ({"intercept_shipment": INH, "modify_address": INH}, True)}


def test_saved_plan_file_content(agency: Agency) -> None:
    out = setup(agency)
    plan = json.loads(out.read_text(encoding="utf-8"))
    assert plan["format_version"] == 1
    assert [(c["shop"], c["scenario"], c["action"], c["before"], c["after"]) for c in plan["changes"]] == [
        ("100001", "intercept_shipment", "rotate", {"appkey": WDT}, {"appkey": JUS}),
        ("100001", "order_status", "bind", {"appkey": None}, {"appkey": JUS}),
        ("100002", "intercept_shipment", "bind", {"appkey": None}, {"appkey": INH}),
        ("100002", "modify_address", "bind", {"appkey": None}, {"appkey": INH}),
        ("100002", "modify_address", "update", {"buyer_self_service": False}, {"buyer_self_service": True}),
    ]
    assert plan["summary"] == {"bind": 3, "rotate": 1, "unbind": 0, "update": 1}
    assert plan["checksum"].startswith("sha256:")
    assert "s3cret" not in out.read_text(encoding="utf-8")


def test_saved_plan_applies_once_then_is_stale(agency: Agency) -> None:
    out = setup(agency)
    # A saved plan was reviewed when it was made: no confirmation, even on a non-interactive stdin.
    r = agency.run("apply", str(out))
    assert r.exit_code == 0, r.output
    assert state(agency) == APPLIED
    assert r.stdout.splitlines()[-2:] == ["Applied 5 change(s) in 2 shop(s).", "Apply complete."]

    r = agency.run("apply", str(out))
    assert r.exit_code == 1, r.output
    assert r.stderr.splitlines() == [
        "Error: the saved plan was already applied: the platform holds what it would write; nothing was applied",
        f"  100001 intercept_shipment rotate: plan expects appkey={WDT}, platform has appkey={JUS}",
        f"  100001 order_status bind: plan expects appkey=unbound, platform has appkey={JUS}",
        f"  100002 intercept_shipment bind: plan expects appkey=unbound, platform has appkey={INH}",
        f"  100002 modify_address bind: plan expects appkey=unbound, platform has appkey={INH}",
        "  100002 modify_address update: plan expects buyer_self_service=false, platform has buyer_self_service=true",
        "make a new plan",
    ]
    assert state(agency) == APPLIED


def test_edited_plan_is_refused(agency: Agency) -> None:
    out = setup(agency)
    plan = json.loads(out.read_text(encoding="utf-8"))
    plan["changes"][0]["after"]["appkey"] = INH  # someone "fixes" the plan by hand
    out.write_text(json.dumps(plan, ensure_ascii=False, indent=2, sort_keys=True) + "\n", encoding="utf-8")

    r = agency.run("apply", str(out))

    assert r.exit_code == 1, r.output
    assert r.stderr == f"Error: {out}: the file was altered after it was written (checksum mismatch); make a new plan\n"
    assert state(agency) == UNTOUCHED


def test_dropping_a_change_is_an_edit_too(agency: Agency) -> None:
    out = setup(agency)
    plan = json.loads(out.read_text(encoding="utf-8"))
    del plan["changes"][0]
    out.write_text(json.dumps(plan), encoding="utf-8")
    r = agency.run("apply", str(out))
    assert r.exit_code == 1, r.output
    assert "checksum mismatch" in r.stderr
    assert state(agency) == UNTOUCHED


def test_reformatted_plan_with_the_same_content_applies(agency: Agency) -> None:
    """The checksum covers the content, not the bytes: re-indenting or re-ordering keys
    (an editor, jq, a review tool) does not make it another plan."""
    out = setup(agency)
    plan = json.loads(out.read_text(encoding="utf-8"))
    out.write_text(json.dumps(dict(reversed(list(plan.items()))), indent=4, ensure_ascii=True), encoding="utf-8")
    r = agency.run("apply", str(out))
    assert r.exit_code == 0, r.output
    assert state(agency) == APPLIED


def test_plan_is_stale_when_a_binding_changed_in_between(agency: Agency) -> None:
    out = setup(agency)
    # Someone binds order_status of 100001 in Qianniu after the plan was made.
    p = agency.platform()
    try:
        p.bind("100001", "order_status", INH, None)
    finally:
        p.close()

    r = agency.run("apply", str(out))

    assert r.exit_code == 1, r.output
    assert r.stderr.splitlines() == [
        "Error: the saved plan is stale: the platform changed since it was made; nothing was applied",
        f"  100001 order_status bind: plan expects appkey=unbound, platform has appkey={INH}",
        "make a new plan",
    ]
    # All or nothing: the shop that still matches the plan (100002) is untouched too.
    assert state(agency) == {"100001": ({"intercept_shipment": WDT, "order_status": INH}, False), "100002": ({}, False)}


def test_plan_is_stale_after_the_world_was_reloaded(agency: Agency) -> None:
    out = setup(agency)
    agency.world({**WORLD, "100002": {"buyer_self_service": True}})
    r = agency.run("apply", str(out))
    assert r.exit_code == 1, r.output
    assert r.stderr.splitlines()[1:-1] == [
        "  100002 modify_address update: plan expects buyer_self_service=false, platform has buyer_self_service=true",
    ]
    assert state(agency) == {**UNTOUCHED, "100002": ({}, True)}


def test_unreadable_plan_files_are_refused(agency: Agency) -> None:
    out = setup(agency)
    text = out.read_text(encoding="utf-8")

    out.write_text(text[:40], encoding="utf-8")
    r = agency.run("apply", str(out))
    assert r.exit_code == 1, r.output
    assert r.stderr.startswith(f"Error: {out}:") and "not a saved plan (invalid JSON" in r.stderr

    plan = json.loads(text)
    plan["format_version"] = 2
    out.write_text(json.dumps(plan), encoding="utf-8")
    r = agency.run("apply", str(out))
    assert r.exit_code == 1, r.output
    assert r.stderr == f"Error: {out}: format_version 2 is not supported (expected 1)\n"

    r = agency.run("apply", str(out.with_name("missing.json")))
    assert r.exit_code == 1, r.output
    assert state(agency) == UNTOUCHED


def test_saved_plan_over_the_safety_threshold_needs_force(agency: Agency) -> None:
    shops = "shops:\n" + "".join(
        f'  - id: "10000{i}"\n    erp: jushuitan\n    scenarios: {{intercept_shipment: {{}}, modify_address: {{}}}}\n'
        for i in range(1, 6))
    agency.shops(shops)  # 10 managed bindings
    agency.world({f"10000{i}": {"bindings": {"intercept_shipment": WDT, "modify_address": WDT}} for i in range(1, 6)})
    out = agency.dir.parent / "plan.json"
    assert agency.run("plan", "--out", str(out)).exit_code == 1  # 10 of 10 rotate: over 30 %

    r = agency.run("apply", str(out))
    assert r.exit_code == 1, r.output
    assert r.stderr.startswith("Error: refusing to apply: plan would rotate or unbind 10 of 10 managed bindings")
    assert agency.bindings("100001") == {"intercept_shipment": WDT, "modify_address": WDT}

    r = agency.run("apply", str(out), "--force")
    assert r.exit_code == 0, r.output
    assert agency.bindings("100001") == {"intercept_shipment": JUS, "modify_address": JUS}
