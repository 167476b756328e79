"""plan: preflight problems (errors withhold a shop, warnings do not), the reasons given
for each change, ``--shop`` selection and colour. Through the CLI, on both providers."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from click.testing import Result
from conftest import APPS, Agency

JST, WDT, INHOUSE = "21345678", "12345679", "31415926"
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def plan(agency: Agency, *args: str) -> tuple[int, dict[str, Any]]:
    r = agency.run("plan", "--format", "json", *args)
    assert r.stderr == "", r.stderr
    return r.exit_code, json.loads(r.stdout)


def changes(data: dict[str, Any]) -> list[tuple[str, str, str, Any, Any]]:
    return [(c["shop"], c["scenario"], c["action"], c["before"], c["after"]) for c in data["changes"]]


def problems(data: dict[str, Any]) -> list[tuple[Any, ...]]:
    return [(p["shop"], p["scenario"], p["severity"], p["kind"], p["message"]) for p in data["problems"]]


def text(r: Result) -> list[str]:
    return r.stdout.splitlines()


# --------------------------------------------------------------------------- errors: the shop is withheld


def test_a_pinned_appkey_that_does_not_exist_is_an_error(agency: Agency) -> None:
    agency.shops("""\
        shops:
          - id: "100001"
            erp: jushuitan
            scenarios:
              intercept_shipment: {appkey: "99999999"}
              modify_address: {}
          - id: "100002"
            erp: jushuitan
            scenarios:
              intercept_shipment: {}
        """)
    agency.world({"100001": {}, "100002": {}})
    code, data = plan(agency)
    assert code == 1
    assert problems(data) == [
        ("100001", "intercept_shipment", "error", "appkey-not-found",
         "appkey 99999999 does not exist on the platform; ask the ERP for its appkey"),
        ("100001", None, "info", "withheld", "2 change(s) of this shop withheld until the errors are fixed:"
         " bind intercept_shipment unbound → 99999999; bind modify_address unbound → jushuitan (21345678)"),
    ]
    # the shop is withheld as a whole (its valid modify_address bind too); the other shop is planned
    assert changes(data) == [("100002", "intercept_shipment", "bind", {"appkey": None}, {"appkey": JST})]
    assert data["summary"] == {"bind": 1, "rotate": 0, "unbind": 0, "update": 0}

    r = agency.run("plan", "--detailed-exitcode")
    assert r.exit_code == 1  # an error wins over "changes pending"
    assert text(r)[-5:] == [
        "Problems:",
        "  error   100001 intercept_shipment: appkey 99999999 does not exist on the platform; ask the ERP for its appkey",
        "  info    100001: 2 change(s) of this shop withheld until the errors are fixed:"
        " bind intercept_shipment unbound → 99999999; bind modify_address unbound → jushuitan (21345678)",
        "",
        "Plan: 1 to bind, 0 to rotate, 0 to unbind, 0 to update; 1 error(s), 0 warning(s).",
    ]
    assert "# shop 100001" not in r.stdout


def test_an_erp_that_has_not_integrated_the_scenario_is_an_error(agency: Agency) -> None:
    agency.shops("""\
        shops:
          - id: "100001"
            erp: wangdiantong
            scenarios:
              intercept_shipment: {}
              order_status: {}
        """)
    agency.world({"100001": {}})
    code, data = plan(agency)
    assert code == 1
    assert problems(data) == [
        ("100001", "order_status", "error", "not-integrated",
         f"ERP wangdiantong ({WDT}) has not integrated order_status through Qimen; only the ERP can fix this"),
        ("100001", None, "info", "withheld", "2 change(s) of this shop withheld until the errors are fixed:"
         f" bind intercept_shipment unbound → wangdiantong ({WDT}); bind order_status unbound → wangdiantong ({WDT})"),
    ]
    assert data["changes"] == []
    assert agency.run("apply", "--auto-approve").exit_code == 1
    assert agency.bindings("100001") == {}


def test_the_same_problems_on_a_binding_already_in_place_are_warnings(agency: Agency) -> None:
    """Nothing to change: the preflight reports, but withholds nothing and fails nothing."""
    agency.shops("""\
        shops:
          - id: "100001"
            erp: wangdiantong
            scenarios:
              intercept_shipment: {appkey: "99999999"}
              order_status: {}
        """)
    agency.world({"100001": {"bindings": {"intercept_shipment": "99999999", "order_status": WDT}}})
    code, data = plan(agency)
    assert code == 0
    assert data["changes"] == []
    assert problems(data) == [
        ("100001", "intercept_shipment", "warning", "appkey-not-found",
         "appkey 99999999 does not exist on the platform; ask the ERP for its appkey"),
        ("100001", "order_status", "warning", "not-integrated",
         f"ERP wangdiantong ({WDT}) has not integrated order_status through Qimen; only the ERP can fix this"),
    ]


# --------------------------------------------------------------------------- warnings: planned anyway


def test_detail_button_on_a_non_whitelisted_erp_is_a_warning(agency: Agency) -> None:
    agency.shops("""\
        shops:
          - id: "100001"
            erp: inhouse
            scenarios:
              order_status: {erp_detail_button: true}
          - id: "100002"
            erp: jushuitan
            scenarios:
              order_status: {erp_detail_button: true}
        """)
    agency.world({"100001": {}, "100002": {}})
    code, data = plan(agency)
    assert code == 0
    assert problems(data) == [
        ("100001", "order_status", "warning", "detail-not-whitelisted",
         f"the ERP详情 (ERP detail) button is whitelist-only and ERP inhouse ({INHOUSE}) is not whitelisted;"
         " the ERP must apply to the platform"),
    ]
    assert changes(data) == [
        ("100001", "order_status", "bind", {"appkey": None}, {"appkey": INHOUSE}),
        ("100002", "order_status", "bind", {"appkey": None}, {"appkey": JST}),
    ]
    r = agency.run("plan")
    assert r.exit_code == 0
    assert "Plan: 2 to bind, 0 to rotate, 0 to unbind, 0 to update; 0 error(s), 1 warning(s)." in text(r)


def test_an_erp_that_does_not_sync_order_statuses_is_a_warning(agency: Agency) -> None:
    agency.shops("""\
        shops:
          - id: "100001"
            erp: inhouse
            scenarios:
              intercept_shipment: {}
              order_status: {}
        """)
    apps = {**APPS, INHOUSE: {"name": "自研ERP", "scenarios": ["intercept_shipment", "modify_address", "order_status"],
                              "syncs_order_status": False}}
    agency.world({"100001": {"bindings": {"order_status": INHOUSE}}}, apps=apps)
    code, data = plan(agency)
    assert code == 0
    assert problems(data) == [
        ("100001", "order_status", "warning", "status-not-synced",
         f"ERP inhouse ({INHOUSE}) does not sync order statuses: the binding will show no status"),
    ]
    assert changes(data) == [("100001", "intercept_shipment", "bind", {"appkey": None}, {"appkey": INHOUSE})]


def test_an_unmanaged_binding_is_a_warning_and_left_alone(agency: Agency) -> None:
    agency.shops("""\
        shops:
          - id: "100001"
            erp: jushuitan
            scenarios:
              intercept_shipment: {}
        """)
    agency.world({"100001": {"bindings": {"modify_address": WDT, "order_status": "55555555"}}})
    code, data = plan(agency)
    assert code == 0
    assert problems(data) == [
        ("100001", "modify_address", "warning", "unmanaged",
         f"modify_address is bound to wangdiantong ({WDT}) but not in the config; left alone"),
        ("100001", "order_status", "warning", "unmanaged",
         "order_status is bound to 55555555 but not in the config; left alone"),
    ]
    assert changes(data) == [("100001", "intercept_shipment", "bind", {"appkey": None}, {"appkey": JST})]
    assert agency.run("apply", "--auto-approve").exit_code == 0
    assert agency.bindings("100001") == {"intercept_shipment": JST, "modify_address": WDT, "order_status": "55555555"}


# --------------------------------------------------------------------------- why each change


REASONS = """\
shops:
  - id: "100001"
    erp: jushuitan
    scenarios:
      intercept_shipment: {}
      modify_address: {erp: cainiao, buyer_self_service: true}
      order_status: {state: unbound}
  - id: "100002"
    erp: jushuitan
    scenarios:
      intercept_shipment: {}
      modify_address: {appkey: "31415926", buyer_self_service: false}
      order_status: {}
"""


def test_each_change_says_why(agency: Agency) -> None:
    agency.shops(REASONS)
    agency.world({
        "100001": {"bindings": {"order_status": JST}},
        "100002": {"bindings": {"intercept_shipment": WDT, "modify_address": JST, "order_status": "55555555"},
                   "buyer_self_service": True},
    })
    f = f"{agency.dir}/shops/a.yaml"
    code, data = plan(agency)
    assert code == 0
    assert [(c["shop"], c["scenario"], c["action"], c["reason"], c["source"]) for c in data["changes"]] == [
        ("100001", "intercept_shipment", "bind", f"config says erp jushuitan, {f}:3", f"{f}:3"),
        ("100001", "modify_address", "bind", f"config says erp cainiao, {f}:6", f"{f}:6"),
        ("100001", "modify_address", "update",
         f"config says buyer_self_service: true, {f}:6 (also configure 自动核单/自助核单 in the automation tasks)", f"{f}:6"),
        ("100001", "order_status", "unbind", f"config says state: unbound, {f}:7", f"{f}:7"),
        ("100002", "intercept_shipment", "rotate", f"config says erp jushuitan, {f}:9; the platform has wangdiantong", f"{f}:9"),
        ("100002", "modify_address", "rotate", f"config says appkey 31415926, {f}:12; the platform has jushuitan", f"{f}:12"),
        ("100002", "modify_address", "update", f"config says buyer_self_service: false, {f}:12", f"{f}:12"),
        ("100002", "order_status", "rotate", f"config says erp jushuitan, {f}:9; the platform has 55555555", f"{f}:9"),
    ]
    assert changes(data)[1] == ("100001", "modify_address", "bind", {"appkey": None}, {"appkey": "virtualAppKey"})

    r = agency.run("plan")
    assert r.exit_code == 0
    assert text(r) == [
        "  # shop 100001",
        "  + intercept_shipment  bind    unbound → jushuitan (21345678)",
        f"        why: config says erp jushuitan, {f}:3",
        "  + modify_address      bind    unbound → cainiao (virtualAppKey)",
        f"        why: config says erp cainiao, {f}:6",
        "  ~ modify_address      update  buyer_self_service=false → buyer_self_service=true",
        f"        why: config says buyer_self_service: true, {f}:6 (also configure 自动核单/自助核单 in the automation tasks)",
        "  - order_status        unbind  jushuitan (21345678) → unbound",
        f"        why: config says state: unbound, {f}:7",
        "",
        "  # shop 100002",
        "  ~ intercept_shipment  rotate  wangdiantong (12345679) → jushuitan (21345678)",
        f"        why: config says erp jushuitan, {f}:9; the platform has wangdiantong",
        "  ~ modify_address      rotate  jushuitan (21345678) → inhouse (31415926)",
        f"        why: config says appkey 31415926, {f}:12; the platform has jushuitan",
        "  ~ modify_address      update  buyer_self_service=true → buyer_self_service=false",
        f"        why: config says buyer_self_service: false, {f}:12",
        "  ~ order_status        rotate  55555555 → jushuitan (21345678)",
        f"        why: config says erp jushuitan, {f}:9; the platform has 55555555",
        "",
        # issue 11 part 6: the help article's follow-up settings after binding, as plan notes
        "Then, on the platform:",
        "  - After binding intercept_shipment (拦截发货) in 2 shops: the platform asks for a follow-up setting before"
        " intercepts work — open 客户服务平台 > 设置 > ERP设置 and follow its 前往设置 link (the operator's sub-account"
        " needs that permission too)",
        "  - After binding modify_address (修改地址) in 2 shops: for buyers to change their address themselves in the 核单"
        " card, configure the automation task 自动化任务 > 自助核单 (自动核单) and say buyer_self_service: true in the config",
        "",
        "Plan: 2 to bind, 3 to rotate, 1 to unbind, 2 to update; 0 error(s), 0 warning(s).",
    ]  # no Problems section: every appkey checks out


# --------------------------------------------------------------------------- --shop


SEVERAL = """\
shops:
  - id: "100001"
    erp: wangdiantong
    scenarios:
      order_status: {}
  - id: "100002"
    erp: jushuitan
    scenarios:
      intercept_shipment: {}
  - id: "100003"
    erp: inhouse
    scenarios:
      intercept_shipment: {}
"""


def test_plan_shop_limits_the_plan_to_that_shop(agency: Agency) -> None:
    agency.shops(SEVERAL)
    agency.world({"100001": {}, "100002": {}, "100003": {"bindings": {"modify_address": WDT}}})
    code, data = plan(agency)
    assert code == 1  # 100001's error
    assert data["shops"] == ["100001", "100002", "100003"]

    code, data = plan(agency, "--shop", "100002")
    assert code == 0  # the error belongs to a shop not planned
    assert data["shops"] == ["100002"]
    assert changes(data) == [("100002", "intercept_shipment", "bind", {"appkey": None}, {"appkey": JST})]
    assert data["problems"] == []
    assert data["managed"] == 1

    code, data = plan(agency, "--shop", "100003", "--shop", "100002")
    assert code == 0
    assert data["shops"] == ["100002", "100003"]
    assert [(c["shop"], c["scenario"]) for c in data["changes"]] == [("100002", "intercept_shipment"),
                                                                     ("100003", "intercept_shipment")]
    assert [(p["shop"], p["kind"]) for p in data["problems"]] == [("100003", "unmanaged")]

    r = agency.run("plan", "--shop", "100001")
    assert r.exit_code == 1
    assert "# shop 100002" not in r.stdout and "100003" not in r.stdout
    assert text(r)[-1] == "Plan: 0 to bind, 0 to rotate, 0 to unbind, 0 to update; 1 error(s), 0 warning(s)."


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_plan_for_an_unknown_shop_is_an_error(agency: Agency, fmt: str) -> None:
    agency.shops(SEVERAL)
    agency.world({"100001": {}, "100002": {}, "100003": {}})
    r = agency.run("plan", "--format", fmt, "--shop", "100002", "--shop", "999")
    assert r.exit_code == 1
    assert r.stdout == ""
    assert r.stderr == f"Error: {agency.dir}: --shop 999: no such shop in the configuration\n1 error(s) in the configuration\n"


# --------------------------------------------------------------------------- colour


def test_color_marks_each_action_and_no_color_none(agency: Agency) -> None:
    agency.shops("""\
        shops:
          - id: "100001"
            erp: jushuitan
            scenarios:
              intercept_shipment: {}
              modify_address: {buyer_self_service: true}
              order_status: {state: unbound}
          - id: "100002"
            erp: wangdiantong
            scenarios:
              intercept_shipment: {}
        """)
    agency.world({"100001": {"bindings": {"modify_address": WDT, "order_status": JST}}, "100002": {}})
    plain = agency.run("--no-color", "plan")
    assert plain.exit_code == 0
    assert "\x1b" not in plain.stdout
    assert agency.run("plan").stdout == plain.stdout  # not a terminal: no colour by default

    coloured = agency.run("--color", "plan")
    assert coloured.exit_code == 0
    assert ANSI.sub("", coloured.stdout) == plain.stdout  # the same text, only coloured

    def marked(colour: int, symbol: str, action: str) -> list[str]:
        pattern = re.compile(rf"^  \x1b\[{colour}m(?:\x1b\[[0-9;]*m)*{re.escape(symbol)}\x1b\[0m \w+ +{action} ")
        return [line for line in coloured.stdout.splitlines() if pattern.match(line)]

    assert len(marked(32, "+", "bind")) == 2       # green
    assert len(marked(33, "~", "rotate")) == 1     # yellow
    assert len(marked(36, "~", "update")) == 1     # cyan
    assert len(marked(31, "-", "unbind")) == 1     # red
    assert sum(1 for line in plain.stdout.splitlines() if " → " in line) == 5  # every change line is marked
