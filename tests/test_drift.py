"""reconciler drift: each kind of finding from a world built for it, every format, exact exit codes."""

from __future__ import annotations

import io
import json
import xml.etree.ElementTree as ET
from typing import Any

import pytest
from conftest import APPS, ERPS, Agency

from reconciler.cli.common import progress_printer

ERPS_PLUS = ERPS + '  silent:       {name: 静默ERP, appkey: "87654321"}\n'

# 21345678 lost its ERP-detail whitelist; 31415926 no longer integrates intercept_shipment;
# 87654321 is integrated for order_status but never syncs statuses.
DRIFT_APPS: dict[str, Any] = {
    "21345678": {**APPS["21345678"], "detail_whitelisted": False},
    "12345679": APPS["12345679"],
    "31415926": {"name": "自研ERP", "scenarios": ["modify_address", "order_status"]},
    "87654321": {"name": "静默ERP", "scenarios": ["order_status"], "syncs_order_status": False},
}

SHOPS = """\
shops:
  - id: "100001"
    name: 一号店
    erp: jushuitan
    scenarios:
      intercept_shipment: {}
      modify_address: {buyer_self_service: true}
      order_status: {erp_detail_button: true}
  - id: "100002"
    name: 二号店
    erp: wangdiantong
    scenarios:
      intercept_shipment: {}
      order_status: {state: unbound}
  - id: "100003"
    erp: inhouse
    scenarios:
      intercept_shipment: {}
  - id: "100004"
    erp: jushuitan
    scenarios:
      intercept_shipment: {}
      order_status: {erp: silent}
  - id: "100005"
    name: 干净店
    erp: wangdiantong
    scenarios:
      intercept_shipment: {}
      modify_address: {buyer_self_service: false}
"""

WORLD: dict[str, Any] = {
    "100001": {"name": "一号店", "bindings": {"intercept_shipment": "12345679", "modify_address": "21345678",
                                          "order_status": "21345678"}, "buyer_self_service": False},
    "100002": {"bindings": {"intercept_shipment": "12345679", "modify_address": "12345679", "order_status": "21345678"}},
    "100003": {"bindings": {"intercept_shipment": "31415926"}},
    "100004": {"bindings": {"order_status": "87654321"}},
    "100005": {"bindings": {"intercept_shipment": "12345679", "modify_address": "12345679"}},
    "300001": {"name": "没人管的店"},
}

EXPECTED = [
    ("100001", "intercept_shipment", "drift", "differs"),
    ("100001", "modify_address", "broken", "self-service-off"),
    ("100001", "order_status", "broken", "detail-not-whitelisted"),
    ("100002", "modify_address", "unmanaged", "unmanaged"),
    ("100002", "order_status", "drift", "not-unbound"),
    ("100003", "intercept_shipment", "broken", "not-integrated"),
    ("100004", "intercept_shipment", "drift", "missing"),
    ("100004", "order_status", "broken", "status-not-synced"),
    ("300001", None, "unknown-shop", "unknown-shop"),
]


@pytest.fixture
def drifted(agency: Agency) -> Agency:
    agency.write("erps.yaml", ERPS_PLUS)
    agency.shops(SHOPS)
    agency.world(WORLD, apps=DRIFT_APPS)
    return agency


def _findings(stdout: str) -> list[tuple[Any, ...]]:
    return [(f["shop"], f["scenario"], f["category"], f["kind"]) for f in json.loads(stdout)["findings"]]


def test_json_reports_every_kind(drifted: Agency) -> None:
    r = drifted.run("drift", "--format", "json")
    assert r.exit_code == 2, r.output
    assert _findings(r.stdout) == EXPECTED
    data = json.loads(r.stdout)
    assert data["status"] == "drift"
    assert data["summary"] == {"shops": 5, "shops_with_findings": 4, "drift": 3, "unmanaged": 1, "broken": 4,
                               "unknown_shops": 1, "errors": 0, "waived": 0}
    by = {(f["shop"], f["scenario"], f["kind"]): f for f in data["findings"]}
    differs = by[("100001", "intercept_shipment", "differs")]
    assert differs["expected"] == {"appkey": "21345678"} and differs["actual"] == {"appkey": "12345679"}
    assert differs["source"].endswith("shops/a.yaml:4")
    assert by[("100002", "order_status", "not-unbound")]["expected"] == {"appkey": None}
    assert by[("100001", "modify_address", "self-service-off")]["actual"] == {"buyer_self_service": False}
    assert [s["status"] for s in data["shops"]] == ["drift", "drift", "drift", "drift", "clean"]
    assert [s["name"] for s in data["shops"]] == ["一号店", "二号店", None, None, "干净店"]


def test_drift_writes_nothing(drifted: Agency) -> None:
    before = drifted.run("sandbox", "dump").stdout
    assert drifted.run("drift").exit_code == 2
    assert drifted.run("sandbox", "dump").stdout == before
    assert not (drifted.dir / ".reconciler" / "state.db").exists()


@pytest.mark.parametrize("fmt", ["text", "json", "markdown", "junit"])
def test_exit_codes_per_format(drifted: Agency, fmt: str) -> None:
    assert drifted.run("drift", "--format", fmt).exit_code == 2
    assert drifted.run("drift", "--format", fmt, "--shop", "100005").exit_code == 0
    assert drifted.run("drift", "--format", fmt, "--shop", "100004").exit_code == 2
    assert drifted.run("drift", "--format", fmt, "--shop", "999999").exit_code == 1   # not in the config


@pytest.mark.parametrize("fmt", ["text", "json", "markdown", "junit"])
def test_unreadable_shop_is_exit_1_in_every_format(drifted: Agency, fmt: str) -> None:
    drifted.world({**WORLD, "100005": {**WORLD["100005"], "cs_permission": False}}, apps=DRIFT_APPS)
    r = drifted.run("drift", "--format", fmt, "--shop", "100005")
    assert r.exit_code == 1, r.output
    assert "permission" in r.stdout


def test_clean_world_text(drifted: Agency) -> None:
    r = drifted.run("drift", "--shop", "100005")
    assert r.exit_code == 0
    assert r.stdout == "No drift: the platform matches the configuration for 1 shop.\n"


def test_text_names_each_finding(drifted: Agency) -> None:
    r = drifted.run("drift")
    assert r.exit_code == 2
    out = r.stdout
    assert "  # shop 100001 一号店\n" in out
    assert "~ intercept_shipment  differs" in out and "bound to wangdiantong (12345679); the config wants jushuitan (21345678)" in out
    assert "? modify_address      unmanaged" in out
    assert "! intercept_shipment  not-integrated" in out
    assert "! order_status        status-not-synced" in out
    assert "  ? 300001\n" in out
    assert out.endswith("Drift: 4 of 5 shops with findings; 3 differ, 1 unmanaged, 4 cannot work, 1 unknown shop(s), 0 errors.\n")


def test_ignore_categories(drifted: Agency) -> None:
    r = drifted.run("drift", "--format", "json", "--ignore", "unmanaged", "--ignore", "unknown-shop", "--ignore", "broken")
    assert r.exit_code == 2
    assert [k for *_, k in _findings(r.stdout)] == ["differs", "not-unbound", "missing"]
    r = drifted.run("drift", "--shop", "100002", "--ignore", "unmanaged", "--ignore", "drift")
    assert r.exit_code == 0, r.output


def test_shop_option_skips_unknown_shops(drifted: Agency) -> None:
    r = drifted.run("drift", "--format", "json", "--shop", "100003")
    assert _findings(r.stdout) == [("100003", "intercept_shipment", "broken", "not-integrated")]


def test_since_when_the_platform_changed_after_an_apply(agency: Agency) -> None:
    agency.shops(SHOPS.split('  - id: "100002"')[0])
    agency.world({"100001": {}})
    assert agency.run("apply", "--auto-approve", "--actor", "alice").exit_code == 0
    applied = {(e["scenario"], e["action"]): e for e in json.loads(agency.run("history", "--format", "json").stdout)["entries"]}
    # someone clicks in Qianniu: intercept_shipment moves to another ERP
    p = agency.platform()
    try:
        p.bind("100001", "intercept_shipment", "12345679", "21345678")
    finally:
        p.close()
    r = agency.run("drift", "--format", "json")
    assert r.exit_code == 2
    [f] = json.loads(r.stdout)["findings"]
    assert (f["kind"], f["since"]) == ("differs", applied[("intercept_shipment", "bind")]["time"])
    assert f["last_written"] == {"time": f["since"], "actor": "alice", "after": {"appkey": "21345678"}, "outcome": "applied"}
    assert f"changed outside reconciler since {f['since']} (last set by alice)" in f["message"]


def test_no_since_when_the_config_changed_after_an_apply(agency: Agency) -> None:
    shops = SHOPS.split('  - id: "100002"')[0]
    agency.shops(shops)
    agency.world({"100001": {}})
    assert agency.run("apply", "--auto-approve").exit_code == 0
    agency.shops(shops.replace("erp: jushuitan", "erp: inhouse"))
    r = agency.run("drift", "--format", "json", "--ignore", "broken")
    kinds = {(f["scenario"], f["kind"]): f for f in json.loads(r.stdout)["findings"]}
    f = kinds[("intercept_shipment", "differs")]
    assert f["since"] is None and f["last_written"]["after"] == {"appkey": "21345678"}
    assert "the platform still holds what reconciler set at" in f["message"]


def test_junit_one_case_per_shop_and_scenario(drifted: Agency) -> None:
    r = drifted.run("drift", "--format", "junit")
    assert r.exit_code == 2
    root = ET.fromstring(r.stdout)
    cases = root.findall("./testsuite/testcase")
    assert len(cases) == 5 * 3 + 1
    failed = {(c.get("classname"), c.get("name")) for c in cases if c.find("failure") is not None}
    assert failed == {
        ("shop.100001 一号店", "intercept_shipment"), ("shop.100001 一号店", "modify_address"),
        ("shop.100001 一号店", "order_status"), ("shop.100002 二号店", "modify_address"),
        ("shop.100002 二号店", "order_status"), ("shop.100003", "intercept_shipment"),
        ("shop.100004", "intercept_shipment"), ("shop.100004", "order_status"),
        ("shop.300001", "declared in the configuration"),
    }
    assert (root.get("tests"), root.get("failures"), root.get("errors")) == ("16", "9", "0")


def test_junit_read_failure_is_an_error_case(drifted: Agency) -> None:
    drifted.world({**WORLD, "100005": {**WORLD["100005"], "cs_permission": False}}, apps=DRIFT_APPS)
    r = drifted.run("drift", "--format", "junit", "--shop", "100005")
    assert r.exit_code == 1
    root = ET.fromstring(r.stdout)
    assert [c.find("error").get("type") for c in root.iter("testcase")] == ["read-failed"] * 3  # type: ignore[union-attr]
    assert root.get("errors") == "3"


def test_junit_xml_file_alongside_another_format(drifted: Agency) -> None:
    out = drifted.dir / "reports" / "drift.xml"
    r = drifted.run("drift", "--format", "markdown", "--junit-xml", str(out))
    assert r.exit_code == 2
    assert r.stdout.startswith("### reconciler drift\n")
    assert ET.fromstring(out.read_text(encoding="utf-8")).get("failures") == "9"


def test_markdown_table_per_shop_escaped(drifted: Agency) -> None:
    drifted.shops(SHOPS.replace("name: 一号店", 'name: "<img src=x onerror=alert(1)> | *一号店*"'))
    r = drifted.run("drift", "--format", "markdown")
    assert r.exit_code == 2
    md = r.stdout
    assert "#### `100001` \\<img src=x onerror=alert(1)\\> \\| \\*一号店\\*\n" in md
    assert "<img" not in md.replace("\\<img", "")
    assert md.count("| scenario | finding | config | platform | details |") == 4
    assert "| `intercept_shipment` | differs | jushuitan (`21345678`) | wangdiantong (`12345679`) |" in md
    assert "#### Not in the configuration (1)" in md and "- `300001`" in md


def test_json_contract_keys(drifted: Agency) -> None:
    """Users script against these keys: adding one is fine, renaming or removing one is not."""
    data = json.loads(drifted.run("drift", "--format", "json").stdout)
    assert data["format_version"] == 1
    # issue 11 added causes, warnings (waivers that match nothing) and the waived counts and marks
    assert sorted(data) == ["causes", "findings", "format_version", "shard", "shops", "status", "summary", "warnings"]
    assert sorted(data["summary"]) == ["broken", "drift", "errors", "shops", "shops_with_findings", "unknown_shops", "unmanaged",
                                       "waived"]
    assert sorted(data["shops"][0]) == ["findings", "id", "name", "status", "waived"]
    for f in data["findings"]:
        assert sorted(f) == ["actual", "category", "expected", "kind", "last_written", "message", "scenario", "shop",
                             "since", "source", "waived", "waiver"]
        assert f["category"] in ("drift", "unmanaged", "broken", "unknown-shop", "error")
    assert data["status"] in ("clean", "drift", "error")


def test_progress_on_a_terminal_and_in_ci_logs() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    tty = Tty()
    show = progress_printer("drift", stream=tty)
    for i in range(1, 1001):
        show(i, 1000, str(i))
    frames = tty.getvalue().split("\r")[1:]
    assert len(frames) == 101                      # redrawn only when the percentage moves: 0 % … 100 %
    assert frames[-1].startswith("drift [" + "#" * 30 + "] 100% 1000/1000 shops") and frames[-1].endswith("\n")

    log = io.StringIO()
    show = progress_printer("drift", stream=log)
    for i in range(1, 1001):
        show(i, 1000, str(i))
    assert log.getvalue().splitlines() == [f"drift: {n}/1000 shops ({n // 10}%)" for n in range(100, 1001, 100)]

    quiet = io.StringIO()
    show = progress_printer("drift", stream=quiet)
    for i in range(1, 51):
        show(i, 50, str(i))
    assert quiet.getvalue() == ""


def test_after_a_rolled_back_apply_drift_says_so(agency: Agency) -> None:
    shops = SHOPS.split('  - id: "100002"')[0]
    agency.shops(shops)
    agency.world({"100001": {}}, faults=[{"operation": "bind", "shop": "100001", "scenario": "order_status",
                                          "error": "isv.appkey-not-found", "times": None}])
    assert agency.run("apply", "--auto-approve").exit_code == 1
    r = agency.run("drift", "--format", "json", "--ignore", "broken")
    f = {(f["scenario"], f["kind"]): f for f in json.loads(r.stdout)["findings"]}[("intercept_shipment", "missing")]
    assert f["since"] is None and f["last_written"]["outcome"] == "rolled-back"
    assert f"reconciler put it back at {f['last_written']['time']} after a failed apply of its shop" in f["message"]


def test_a_difference_the_platform_would_refuse_is_reported_as_unappliable(agency: Agency) -> None:
    """Drift says not only that a binding is missing, but that applying it cannot work."""
    agency.shops('shops:\n  - id: "100001"\n    scenarios:\n      intercept_shipment: {appkey: "99999999"}\n'
                 '      order_status: {erp: wangdiantong}\n')
    agency.world({"100001": {}})
    r = agency.run("drift", "--format", "json")
    assert r.exit_code == 2, r.output
    assert _findings(r.stdout) == [
        ("100001", "intercept_shipment", "drift", "missing"),
        ("100001", "intercept_shipment", "broken", "cannot-apply"),
        ("100001", "order_status", "drift", "missing"),
        ("100001", "order_status", "broken", "cannot-apply"),
    ]
    messages = [f["message"] for f in json.loads(r.stdout)["findings"] if f["kind"] == "cannot-apply"]
    assert messages == [
        "the config's binding cannot be applied: appkey 99999999 does not exist on the platform; ask the ERP for its appkey",
        "the config's binding cannot be applied: ERP wangdiantong (12345679) has not integrated order_status through Qimen;"
        " only the ERP can fix this",
    ]
