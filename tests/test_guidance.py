"""The help article's guidance in messages (issue 11, part 6): a permission refusal says to
grant the sub-account the 客户服务平台 permission; not integrated says which ERP and scenario
and that only the ERP can fix it; binds of intercept_shipment and modify_address come with
the follow-up settings the platform asks for, as plan notes (saved plans keep them)."""

from __future__ import annotations

import json

from conftest import Agency

JST, WDT = "21345678", "12345679"
GRANT = "the operator's sub-account needs the 客户服务平台 (customer-service platform) permission"


def test_binds_come_with_the_follow_up_settings_as_notes(agency: Agency) -> None:
    agency.shops('shops:\n  - {id: "100001", erp: jushuitan, scenarios: {intercept_shipment: {}, modify_address: {}}}\n'
                 '  - {id: "100002", erp: jushuitan, scenarios: {order_status: {}}}\n')
    agency.world({"100001": {}, "100002": {}})
    data = json.loads(agency.run("plan", "--format", "json").stdout)
    notes = data["notes"]
    assert [n.split(":")[0] for n in notes] == ["After binding intercept_shipment (拦截发货) in shop 100001",
                                                "After binding modify_address (修改地址) in shop 100001"]
    assert "前往设置" in notes[0] and "自助核单" in notes[1]
    text = agency.run("plan").stdout
    assert "Then, on the platform:\n  - After binding intercept_shipment (拦截发货) in shop 100001" in text
    md = agency.run("plan", "--format", "markdown").stdout
    assert "#### Then, on the platform\n\n- After binding intercept\\_shipment" in md
    # a saved plan keeps its notes under the checksum, and applies
    saved = agency.dir / "plan.json"
    assert agency.run("plan", "--out", str(saved)).exit_code == 0
    assert "Then, on the platform:" in agency.run("show", str(saved)).stdout
    assert agency.run("apply", str(saved)).exit_code == 0
    after = json.loads(agency.run("plan", "--format", "json").stdout)
    assert "notes" not in after   # nothing to bind: no notes, and the plan's JSON is as before


def test_a_shop_withheld_by_an_error_gets_no_notes(agency: Agency) -> None:
    agency.shops('shops:\n  - {id: "100001", erp: wangdiantong, scenarios: {intercept_shipment: {}, order_status: {}}}\n')
    agency.world({"100001": {}})
    data = json.loads(agency.run("plan", "--format", "json").stdout)
    assert "notes" not in data
    (p,) = [p for p in data["problems"] if p["severity"] == "error"]
    assert p["message"] == "ERP wangdiantong (12345679) has not integrated order_status through Qimen; only the ERP can fix this"


def test_a_permission_refusal_says_to_grant_the_permission(agency: Agency) -> None:
    agency.shops('shops:\n  - {id: "100001", erp: jushuitan, scenarios: {modify_address: {buyer_self_service: true}}}\n')
    agency.world({"100001": {"cs_permission": False, "bindings": {"modify_address": JST}}})
    r = agency.run("apply", "--auto-approve")
    assert r.exit_code == 1, r.output
    assert GRANT in r.stdout
    assert "grant it in 千牛 > 子账号 > 权限, then run again" in r.stdout


def test_a_shop_that_cannot_be_read_for_lack_of_permission_says_so_in_plan_and_drift(agency: Agency) -> None:
    agency.shops('shops:\n  - {id: "100001", erp: jushuitan, scenarios: {intercept_shipment: {}}}\n')
    agency.world({"100001": {}}, faults=[{"operation": "get", "shop": "100001", "error": "isv.permission-denied",
                                          "times": None}])
    r = agency.run("plan", "--format", "json")
    assert r.exit_code == 1
    (p,) = json.loads(r.stdout)["problems"]
    assert (p["kind"], p["severity"]) == ("read-failed", "error")
    assert p["message"].startswith("cannot read the shop: ") and GRANT in p["message"]
    r = agency.run("drift", "--shop", "100001")
    assert r.exit_code == 1
    assert GRANT in r.stdout
