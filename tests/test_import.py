"""reconciler import: platform state → YAML that validates and plans to no changes."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml
from conftest import APPS, Agency

APPS_PLUS: dict[str, Any] = {**APPS, "01234567": {"name": "老ERP", "scenarios": ["intercept_shipment", "order_status"]}}

MANAGED = """\
shops:
  - id: "100001"
    name: 已管理
    erp: jushuitan
    scenarios:
      intercept_shipment: {}
"""

WORLD: dict[str, Any] = {
    "100001": {"bindings": {"intercept_shipment": "21345678"}},
    # all on 聚水潭 but Cainiao for modify_address; 聚水潭 is whitelisted for the ERP-detail button
    "400001": {"name": "进口: 旗舰店 #1", "bindings": {"intercept_shipment": "21345678", "modify_address": "virtualAppKey",
                                                   "order_status": "21345678"}, "buyer_self_service": True},
    # mostly 旺店通, order_status on 自研ERP
    "400002": {"bindings": {"intercept_shipment": "12345679", "modify_address": "12345679", "order_status": "31415926"}},
    # an appkey the catalog does not know (with a leading zero), and 自研ERP
    "400003": {"bindings": {"intercept_shipment": "01234567", "modify_address": "31415926", "order_status": "31415926"}},
    # nothing bound
    "400004": {},
    # a tie: the first scenario's ERP wins
    "400005": {"bindings": {"intercept_shipment": "12345679", "order_status": "31415926"}},
    # only Cainiao: the shop gets no erp of its own
    "400006": {"bindings": {"modify_address": "virtualAppKey"}},
}


@pytest.fixture
def onboarding(agency: Agency) -> Agency:
    agency.shops(MANAGED)
    agency.world(WORLD, apps=APPS_PLUS)
    return agency


def _imported(agency: Agency, rel: str = "shops/imported.yaml") -> dict[str, Any]:
    data = yaml.safe_load((agency.dir / rel).read_text(encoding="utf-8"))
    return {s["id"]: s for s in data["shops"]}


def test_import_all_then_validate_then_plan_is_empty(onboarding: Agency) -> None:
    r = onboarding.run("import", "--all")
    assert r.exit_code == 0, r.output
    assert "Imported 6 shop(s) into" in r.stdout
    assert "1 shop(s) skipped: already declared in the configuration" in r.stderr
    r = onboarding.run("validate")
    assert r.exit_code == 0, r.output
    assert r.stdout.startswith("Configuration valid: 7 shop(s)")
    r = onboarding.run("plan", "--detailed-exitcode", "--format", "json")
    assert r.exit_code == 0, r.output
    plan = json.loads(r.stdout)
    assert plan["changes"] == [] and plan["problems"] == []
    r = onboarding.run("drift", "--format", "json")
    assert r.exit_code == 0, r.output


def test_imported_yaml_groups_scenarios_under_the_shops_erp(onboarding: Agency) -> None:
    assert onboarding.run("import", "--all").exit_code == 0
    shops = _imported(onboarding)
    assert "100001" not in shops
    assert shops["400001"] == {"id": "400001", "name": "进口: 旗舰店 #1", "erp": "jushuitan", "scenarios": {
        "intercept_shipment": {}, "modify_address": {"erp": "cainiao", "buyer_self_service": True},
        "order_status": {"erp_detail_button": True}}}
    assert shops["400002"] == {"id": "400002", "erp": "wangdiantong", "scenarios": {
        "intercept_shipment": {}, "modify_address": {"buyer_self_service": False}, "order_status": {"erp": "inhouse"}}}
    assert shops["400003"] == {"id": "400003", "erp": "inhouse", "scenarios": {
        "intercept_shipment": {"appkey": "01234567"}, "modify_address": {"buyer_self_service": False},
        "order_status": {}}}
    assert shops["400004"] == {"id": "400004", "scenarios": {}}
    assert shops["400005"]["erp"] == "wangdiantong"
    assert shops["400005"]["scenarios"] == {"intercept_shipment": {}, "order_status": {"erp": "inhouse"}}
    assert shops["400006"] == {"id": "400006", "scenarios": {"modify_address": {"erp": "cainiao",
                                                                                  "buyer_self_service": False}}}


def test_unknown_appkey_is_a_quoted_literal_with_a_comment(onboarding: Agency) -> None:
    r = onboarding.run("import", "--shop", "400003")
    assert r.exit_code == 0, r.output
    text = (onboarding.dir / "shops" / "imported.yaml").read_text(encoding="utf-8")
    assert ('      intercept_shipment: {appkey: "01234567"}   # appkey 01234567 is not in erps.yaml:'
            " add its ERP to the catalog and write erp: NAME\n") in text
    assert "appkeys not in erps.yaml, written as literal appkey: 01234567" in r.stderr
    assert "    # not bound on the platform" not in text.split('id: "400003"')[1]
    r = onboarding.run("plan", "--shop", "400003", "--detailed-exitcode")
    assert r.exit_code == 0, r.output


def test_shop_already_in_the_config_is_refused_and_named(onboarding: Agency) -> None:
    r = onboarding.run("import", "--shop", "100001")
    assert r.exit_code == 1
    assert "shop 100001: skipped, already declared at" in r.stderr and "shops/a.yaml:2" in r.stderr
    assert not (onboarding.dir / "shops" / "imported.yaml").exists()
    r = onboarding.run("import", "--shop", "100001", "--shop", "400004")
    assert r.exit_code == 0
    assert list(_imported(onboarding)) == ["400004"]
    assert onboarding.run("validate").exit_code == 0


def test_never_overwrites_without_force(onboarding: Agency) -> None:
    assert onboarding.run("import", "--shop", "400002").exit_code == 0
    target = onboarding.dir / "shops" / "imported.yaml"
    before = target.read_bytes()
    r = onboarding.run("import", "--shop", "400004")
    assert r.exit_code == 1
    assert "exists; choose another --out, or --force to overwrite it" in r.stderr
    assert target.read_bytes() == before
    # --force replaces the file; the shops it declared are not duplicates of themselves
    r = onboarding.run("import", "--shop", "400002", "--shop", "400004", "--force")
    assert r.exit_code == 0, r.output
    assert list(_imported(onboarding)) == ["400002", "400004"]
    r = onboarding.run("import", "--shop", "400004", "--force")
    assert r.exit_code == 0
    assert "no longer declares 1 shop(s) it declared before: 400002" in r.stderr
    assert onboarding.run("validate").exit_code == 0
    assert sorted(p.name for p in (onboarding.dir / "shops").iterdir()) == ["a.yaml", "imported.yaml"]  # no temp files


def test_out_elsewhere_and_nothing_left_to_import(onboarding: Agency) -> None:
    out = onboarding.dir.parent / "onboarding" / "new.yaml"
    r = onboarding.run("import", "--all", "--out", str(out))
    assert r.exit_code == 0, r.output
    assert "Move it into shops/ to manage them" in r.stdout
    (onboarding.dir / "shops" / "b.yaml").write_bytes(out.read_bytes())
    assert onboarding.run("plan", "--detailed-exitcode").exit_code == 0
    r = onboarding.run("import", "--all", "--out", str(out.with_name("again.yaml")))
    assert r.exit_code == 0
    assert r.stdout == "Nothing to import: the configuration declares every shop the platform knows.\n"
    assert not out.with_name("again.yaml").exists()


def test_usage_errors_exit_1(onboarding: Agency) -> None:
    for args in ((), ("--all", "--shop", "400001")):
        r = onboarding.run("import", *args)
        assert r.exit_code == 1
        assert "give either --shop ID (repeatable) or --all" in r.stderr
    r = onboarding.run("import", "--shop", "400001", "--out", str(onboarding.dir / "shops" / "x.txt"))
    assert r.exit_code == 1 and "must end in .yaml or .yml" in r.stderr


def test_unreadable_shop_is_reported_and_the_rest_written(onboarding: Agency) -> None:
    onboarding.world({**WORLD, "400004": {"cs_permission": False}}, apps=APPS_PLUS)
    r = onboarding.run("import", "--shop", "400002", "--shop", "400004")
    assert r.exit_code == 1
    assert "shop 400004: cannot read it, not imported:" in r.stderr
    assert list(_imported(onboarding)) == ["400002"]
    r = onboarding.run("import", "--shop", "400004", "--out", str(onboarding.dir / "shops" / "b.yaml"))
    assert r.exit_code == 1
    assert not (onboarding.dir / "shops" / "b.yaml").exists()


def test_shop_names_come_from_the_platform_and_read_back_exactly(onboarding: Agency) -> None:
    assert onboarding.run("import", "--all").exit_code == 0
    shops = _imported(onboarding)
    assert shops["400001"]["name"] == "进口: 旗舰店 #1"  # quoted: a colon and a hash would not read back
    assert "name" not in shops["400002"]                  # the platform gave none
    assert '    name: "进口: 旗舰店 #1"' in (onboarding.dir / "shops" / "imported.yaml").read_text(encoding="utf-8")
