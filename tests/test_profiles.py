"""Profiles (issue 11, part 2): named bundles of what shops say. A shop's own erp, protect
and each scenario it lists replace the profile's; errors in a profile are reported once,
in profiles.yaml, with the shops that use it; the plan's why names both places."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import Agency

from reconciler.cli import main
from reconciler.config import load_config
from reconciler.errors import ConfigError
from reconciler.model import Scenario

JST, WDT, INH = "21345678", "12345679", "31415926"
ERPS = """\
erps:
  jushuitan:    {name: 聚水潭, appkey: "21345678"}
  wangdiantong: {name: 旺店通, appkey: "12345679"}
  inhouse:      {name: 自研ERP, appkey: "31415926"}
  cainiao:      {name: 菜鸟仓, appkey: virtualAppKey}
"""
PROFILES = """\
profiles:
  std-jst:
    erp: jushuitan
    protect: true
    labels: {tier: gold, region: east}
    scenarios:
      intercept_shipment: {}
      modify_address: {buyer_self_service: true}
      order_status: {erp_detail_button: true}
  warehouse:
    erp: wangdiantong
    scenarios:
      intercept_shipment: {}
      modify_address: {erp: cainiao}
"""


def write(root: Path, rel: str, text: str) -> None:
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(textwrap.dedent(text), encoding="utf-8")


@pytest.fixture
def root(tmp_path: Path) -> Path:
    write(tmp_path, "erps.yaml", ERPS)
    write(tmp_path, "profiles.yaml", PROFILES)
    return tmp_path


def test_a_shop_takes_its_profile(root: Path) -> None:
    write(root, "shops/acme/a.yaml", 'shops:\n  - {id: "100001", profile: std-jst, labels: {client: acme}}\n')
    (shop,) = load_config(root).shops
    assert (shop.erp, shop.protect, shop.profile) == ("jushuitan", True, "std-jst")
    assert dict(shop.labels) == {"tier": "gold", "region": "east", "client": "acme"}
    assert {sc: b.appkey for sc, b in shop.bindings.items()} == {
        Scenario.intercept_shipment: JST, Scenario.modify_address: JST, Scenario.order_status: JST}
    assert shop.bindings[Scenario.modify_address].buyer_self_service is True
    assert shop.bindings[Scenario.order_status].erp_detail_button is True
    src = shop.bindings[Scenario.intercept_shipment].source
    assert (str(src), src.describe(shop.source)) == (
        f"{root}/profiles.yaml:3", f"profile std-jst, {root}/profiles.yaml:3, used by {root}/shops/acme/a.yaml:2")
    assert shop.protect_source is not None and shop.protect_source.describe().startswith("profile std-jst, ")


def test_the_shops_own_keys_replace_the_profiles_scenario_by_scenario(root: Path) -> None:
    write(root, "shops/a.yaml", """\
        shops:
          - id: "100001"
            profile: std-jst
            erp: inhouse                      # every scenario of the profile now resolves to inhouse
            protect: false
            labels: {tier: silver}
            scenarios:
              order_status: {state: unbound}  # replaces the profile's order_status whole
          - id: "100002"
            profile: warehouse
            scenarios:
              modify_address: {buyer_self_service: false}   # replaces {erp: cainiao}: the shop's ERP again
              order_status: {erp: jushuitan}                # one the profile does not list
        """)
    one, two = load_config(root).shops
    assert (one.erp, one.protect, dict(one.labels)) == ("inhouse", False, {"tier": "silver", "region": "east"})
    assert {sc: b.appkey for sc, b in one.bindings.items()} == {
        Scenario.intercept_shipment: INH, Scenario.modify_address: INH, Scenario.order_status: None}
    assert one.bindings[Scenario.modify_address].buyer_self_service is True   # from the profile's modify_address
    assert one.bindings[Scenario.intercept_shipment].source.describe(one.source) == (
        f"{root}/shops/a.yaml:4 (the shop's own, for the scenario profile std-jst lists at {root}/profiles.yaml:7)")
    assert {sc: b.appkey for sc, b in two.bindings.items()} == {
        Scenario.intercept_shipment: WDT, Scenario.modify_address: WDT, Scenario.order_status: JST}
    assert two.bindings[Scenario.modify_address].buyer_self_service is False
    assert two.protect is False


def test_an_unknown_profile_is_an_error_with_a_suggestion(root: Path) -> None:
    write(root, "shops/a.yaml", 'shops:\n  - {id: "100001", profile: std-jts}\n  - {id: "100002", profile: nope}\n')
    with pytest.raises(ConfigError) as e:
        load_config(root)
    assert [str(i) for i in e.value.issues if i.severity == "error"] == [
        f"{root}/shops/a.yaml:2:29: shops[0].profile: unknown profile 'std-jts'; did you mean 'std-jst'?",
        f"{root}/shops/a.yaml:3:29: shops[1].profile: unknown profile 'nope'; profiles.yaml defines: std-jst, warehouse",
    ]


def test_a_profile_without_profiles_yaml(tmp_path: Path) -> None:
    write(tmp_path, "erps.yaml", ERPS)
    write(tmp_path, "shops/a.yaml", 'shops:\n  - {id: "100001", profile: std}\n')
    with pytest.raises(ConfigError) as e:
        load_config(tmp_path)
    assert "shops[0].profile: unknown profile 'std': there is no profiles.yaml" in str(e.value)


def test_an_error_in_a_profile_is_reported_once_with_its_users(root: Path) -> None:
    write(root, "profiles.yaml", PROFILES.replace("order_status: {erp_detail_button: true}", "order_staus: {}")
          .replace("erp: wangdiantong", "erp: wangdiantog"))
    write(root, "shops/acme/a.yaml", "shops:\n" + "".join(f'  - {{id: "1000{i:02d}", profile: std-jst}}\n' for i in range(12)))
    write(root, "shops/b.yaml", 'shops:\n  - {id: "200001", profile: warehouse}\n  - {id: "200002", profile: warehouse,'
                                ' erp: jushuitan}\n')
    with pytest.raises(ConfigError) as e:
        load_config(root)
    users = ", ".join(f"1000{i:02d} at {root}/shops/acme/a.yaml:{i + 2}" for i in range(10))
    assert [str(i) for i in e.value.issues] == [
        f"{root}/profiles.yaml:9:7: profiles.std-jst.scenarios.order_staus: unknown key 'order_staus';"
        f" did you mean 'order_status'? (used by 12 shops: {users} and 2 more)",
        f"{root}/profiles.yaml:11:10: profiles.warehouse.erp: unknown ERP 'wangdiantog'; did you mean 'wangdiantong'?"
        f" (used by 2 shops: 200001 at {root}/shops/b.yaml:2, 200002 at {root}/shops/b.yaml:3)",
        "2 error(s) in the configuration",
    ][:len(e.value.issues)]
    assert len(e.value.issues) == 2  # once each, not once per shop


def test_an_unused_profile_is_a_warning_and_a_profile_cannot_name_a_profile(root: Path) -> None:
    write(root, "shops/a.yaml", 'shops:\n  - {id: "100001", profile: std-jst}\n')
    config = load_config(root)
    assert [str(w) for w in config.warnings] == [f"{root}/profiles.yaml:10:3: warning: profiles.warehouse:"
                                                 " profile 'warehouse' is used by no shop"]
    write(root, "profiles.yaml", "profiles:\n  a: {profile: b, erp: jushuitan}\n")
    with pytest.raises(ConfigError) as e:
        load_config(root)
    assert "profiles.a.profile: unknown key 'profile'" in str(e.value)


def test_what_only_the_combination_gets_wrong_is_said_at_the_shop(root: Path) -> None:
    write(root, "profiles.yaml", "profiles:\n  cn: {erp: cainiao, scenarios: {modify_address: {}}}\n"
                                 "  bare: {scenarios: {order_status: {}}}\n")
    write(root, "shops/a.yaml", """\
        shops:
          - id: "100001"
            profile: cn
            scenarios: {intercept_shipment: {}}
          - id: "100002"
            profile: bare
        """)
    with pytest.raises(ConfigError) as e:
        load_config(root)
    assert [str(i) for i in e.value.issues if i.severity == "error"] == [
        f"{root}/shops/a.yaml:4:17: shops[0].scenarios.intercept_shipment: the shop's ERP 'cainiao' (from profile cn,"
        f" {root}/profiles.yaml:2) is virtualAppKey (Cainiao warehouses), valid for modify_address only:"
        " set erp or appkey on intercept_shipment",
        f"{root}/shops/a.yaml:6:14: shops[1].profile: profile 'bare' lists order_status ({root}/profiles.yaml:3) with no"
        " ERP to bind: set erp on the shop or on the profile",
    ]


# --------------------------------------------------------------------------- through the CLI, on both providers


SHOPS = """\
shops:
  - id: "100001"
    profile: std-jst
  - id: "100002"
    profile: std-jst
    erp: wangdiantong
    protect: false
    scenarios:
      order_status: {state: unbound}
"""


def test_the_plans_why_names_the_profile_and_the_shop(agency: Agency) -> None:
    agency.write("profiles.yaml", PROFILES)
    agency.shops(SHOPS, name="acme/a.yaml")
    agency.world({"100001": {}, "100002": {"bindings": {"order_status": WDT}}})
    r = agency.run("plan", "--format", "json")
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    why = {(c["shop"], c["scenario"], c["action"]): (c["reason"], c["source"]) for c in data["changes"]}
    d = agency.dir
    assert why[("100001", "intercept_shipment", "bind")] == (
        f"config says erp jushuitan, profile std-jst, {d}/profiles.yaml:3, used by {d}/shops/acme/a.yaml:2",
        f"{d}/profiles.yaml:3")
    assert why[("100002", "intercept_shipment", "bind")][0] == (
        f"config says erp wangdiantong, {d}/shops/acme/a.yaml:6 (the shop's own, for the scenario profile std-jst lists"
        f" at {d}/profiles.yaml:7)")
    assert why[("100002", "order_status", "unbind")][0] == f"config says state: unbound, {d}/shops/acme/a.yaml:9"
    assert why[("100002", "modify_address", "update")][0].startswith(
        f"config says buyer_self_service: true, profile std-jst, {d}/profiles.yaml:8, used by {d}/shops/acme/a.yaml:4")
    text = agency.run("plan").stdout
    assert f"why: config says erp jushuitan, profile std-jst, {d}/profiles.yaml:3, used by {d}/shops/acme/a.yaml:2" in text


def test_protect_from_a_profile_protects_and_says_where(agency: Agency) -> None:
    agency.write("profiles.yaml", PROFILES)
    agency.shops('shops:\n  - {id: "100001", profile: std-jst}\n')
    agency.world({"100001": {"bindings": {"intercept_shipment": WDT}}})
    r = agency.run("plan")
    assert r.exit_code == 1
    assert f"shop is protected (protect: true, profile std-jst, {agency.dir}/profiles.yaml:4, used by" in r.stdout


def test_import_then_plan_is_empty_in_a_config_with_profiles(agency: Agency) -> None:
    agency.write("profiles.yaml", PROFILES)
    agency.shops('shops:\n  - {id: "100001", profile: std-jst}\n')
    agency.world({"100001": {"bindings": {"intercept_shipment": JST, "modify_address": JST, "order_status": JST},
                             "buyer_self_service": True},
                  "300001": {"bindings": {"intercept_shipment": WDT, "modify_address": "virtualAppKey"}}},
                 apps={JST: {"name": "聚水潭", "scenarios": ["intercept_shipment", "modify_address", "order_status"],
                             "detail_whitelisted": True},
                       WDT: {"name": "旺店通", "scenarios": ["intercept_shipment", "modify_address"]}})
    r = agency.run("import", "--shop", "300001")
    assert r.exit_code == 0, r.output
    r = agency.run("plan", "--detailed-exitcode", "--format", "json")
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert data["changes"] == [] and [p for p in data["problems"] if p["severity"] != "info"] == []


def test_validate_reports_a_bad_profile_once_through_the_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, "erps.yaml", ERPS)
    write(tmp_path, "profiles.yaml", "profiles:\n  std: {erp: jushuitan, scenarios: {intercept_shipment: {appkey: '0123'}},"
                                     " protect: maybe}\n")
    write(tmp_path, "shops/a.yaml", 'shops:\n  - {id: "1", profile: std}\n  - {id: "2", profile: std}\n')
    monkeypatch.chdir(tmp_path)
    r = CliRunner().invoke(main, ["-C", ".", "validate"])
    assert r.exit_code == 1
    assert r.stderr.splitlines() == [
        "Error: profiles.yaml:2:66: warning: profiles.std.scenarios.intercept_shipment.appkey: appkey '0123' has 4 digits;"
        " ERP appkeys are usually 8 (used by 2 shops: 1 at shops/a.yaml:2, 2 at shops/a.yaml:3)",
        "profiles.yaml:2:85: profiles.std.protect: expected true or false, got the string 'maybe'"
        " (used by 2 shops: 1 at shops/a.yaml:2, 2 at shops/a.yaml:3)",
        "1 error(s) in the configuration",
    ]
