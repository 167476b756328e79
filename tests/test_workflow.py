"""End to end on the embedded sandbox: plan, apply, plan again; rotation; exit codes."""

from __future__ import annotations

import json

from conftest import Agency

SHOPS = """\
shops:
  - id: "100001"
    name: 一号店
    erp: jushuitan
    scenarios:
      intercept_shipment: {}
      modify_address: {buyer_self_service: true}
      order_status: {}
  - id: "100002"
    erp: wangdiantong
    scenarios:
      intercept_shipment: {}
"""


def test_first_plan_apply_then_plan_is_empty(agency: Agency) -> None:
    agency.shops(SHOPS)
    agency.world({"100001": {"name": "一号店"}, "100002": {"bindings": {"intercept_shipment": "12345679"}}})
    r = agency.run("plan", "--detailed-exitcode")
    assert r.exit_code == 2, r.output
    assert "+ intercept_shipment  bind    unbound → jushuitan (21345678)" in r.stdout
    r = agency.run("apply", "--auto-approve")
    assert r.exit_code == 0, r.output
    assert agency.bindings("100001") == {"intercept_shipment": "21345678", "modify_address": "21345678",
                                         "order_status": "21345678"}
    assert agency.self_service("100001") is True
    r = agency.run("plan", "--detailed-exitcode", "--format", "json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["changes"] == []


def test_changing_erp_rotates_every_scenario(agency: Agency) -> None:
    agency.shops(SHOPS)
    agency.world({"100001": {}, "100002": {}})
    assert agency.run("apply", "--auto-approve").exit_code == 0
    agency.shops(SHOPS.replace("erp: jushuitan", "erp: inhouse"))
    r = agency.run("plan", "--format", "json")
    data = json.loads(r.stdout)
    assert [(c["shop"], c["scenario"], c["action"], c["before"], c["after"]) for c in data["changes"]] == [
        ("100001", s, "rotate", {"appkey": "21345678"}, {"appkey": "31415926"})
        for s in ("intercept_shipment", "modify_address", "order_status")
    ]
    assert data["summary"] == {"bind": 0, "rotate": 3, "unbind": 0, "update": 0}
    r = agency.run("apply", "--auto-approve")
    assert r.exit_code == 0, r.output
    assert set(agency.bindings("100001").values()) == {"31415926"}


def test_plan_with_only_withheld_shops_does_not_claim_a_match(agency: Agency) -> None:
    """旺店通 has not integrated order_status: the shop is withheld, plan exits 1 and does not say
    the platform matches the configuration."""
    agency.shops('shops:\n  - id: "100001"\n    erp: wangdiantong\n    scenarios: {intercept_shipment: {}, order_status: {}}\n')
    agency.world({"100001": {}})
    r = agency.run("plan")
    assert r.exit_code == 1
    assert r.stdout.startswith("No changes can be applied; some shops have errors (see Problems).\n")
    assert "  error   100001 order_status: ERP wangdiantong (12345679) has not integrated order_status through Qimen" in r.stdout
    assert ("  info    100001: 2 change(s) of this shop withheld until the errors are fixed: bind intercept_shipment"
            " unbound → wangdiantong (12345679); bind order_status unbound → wangdiantong (12345679)") in r.stdout
    r = agency.run("apply", "--auto-approve")
    assert r.exit_code == 1
    assert agency.bindings("100001") == {}
