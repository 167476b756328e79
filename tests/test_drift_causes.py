"""drift groups findings by cause before listing shops (issue 11, part 4): "ERP 旺店通 no
longer integrates modify_address: 10 shops" reads at once where 10 shop sections do not."""

from __future__ import annotations

import json

from conftest import Agency

JST, WDT = "21345678", "12345679"
IDS = [str(100001 + i) for i in range(10)]


def test_findings_are_grouped_by_cause_most_widespread_first(agency: Agency) -> None:
    agency.shops("shops:\n" + "".join(f'  - {{id: "{s}", erp: wangdiantong, scenarios: {{intercept_shipment: {{}},'
                                      f' modify_address: {{}}}}}}\n' for s in IDS)
                 + '  - {id: "200001", erp: jushuitan, scenarios: {intercept_shipment: {}}}\n')
    world = {s: {"bindings": {"intercept_shipment": WDT, "modify_address": WDT}} for s in IDS}
    world["200001"] = {"bindings": {"intercept_shipment": WDT}}
    world[IDS[0]]["bindings"]["order_status"] = JST           # one unmanaged binding
    # 旺店通 withdrew its modify_address integration: every shop bound to it is broken
    agency.world(world, apps={JST: {"name": "聚水潭", "scenarios": ["intercept_shipment", "modify_address", "order_status"]},
                              WDT: {"name": "旺店通", "scenarios": ["intercept_shipment"]}})
    r = agency.run("drift", "--format", "json")
    assert r.exit_code == 2, r.output
    causes = json.loads(r.stdout)["causes"]
    assert [(c["cause"], c["count"]) for c in causes] == [
        ("ERP wangdiantong (12345679) no longer integrates modify_address through Qimen", 10),
        ("intercept_shipment bound to wangdiantong (12345679); the config wants jushuitan (21345678)", 1),
        ("order_status bound to jushuitan (21345678), not in the config", 1),
    ]
    assert causes[0]["shops"] == IDS and (causes[0]["category"], causes[0]["kind"]) == ("broken", "not-integrated")
    text = agency.run("drift").stdout
    assert text.startswith("By cause:\n  ! ERP wangdiantong (12345679) no longer integrates modify_address through Qimen:"
                           " 10 shops (100001, 100002, 100003, 100004, 100005, … 5 more)\n")
    assert text.index("By cause:") < text.index("  # shop 100001")
    md = agency.run("drift", "--format", "markdown").stdout
    assert "#### By cause\n\n| cause | shops |\n|---|---|\n| ERP wangdiantong (12345679) no longer integrates" in md


def test_no_cause_section_when_every_cause_is_one_shop(agency: Agency) -> None:
    agency.shops('shops:\n  - {id: "100001", erp: jushuitan, scenarios: {intercept_shipment: {}}}\n')
    agency.world({"100001": {}})
    r = agency.run("drift")
    assert r.exit_code == 2
    assert "By cause" not in r.stdout
    assert json.loads(agency.run("drift", "--format", "json").stdout)["causes"] == [
        {"category": "drift", "kind": "missing", "scenario": "intercept_shipment", "count": 1, "shops": ["100001"],
         "cause": "intercept_shipment not bound; the config wants jushuitan (21345678)"}]
