"""Waivers (issue 11, part 4): a waived problem is shown everywhere but fails neither plan
nor drift; its date is inclusive in China time; after it the problem is an error again and
names the waiver; a waiver that matches nothing is a warning; a reason and a date are
required. Dates are injected (``RECONCILER_TODAY``, ``today=``), never the wall clock."""

from __future__ import annotations

import json
import textwrap
import xml.etree.ElementTree as ET
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from conftest import Agency

from reconciler import clock
from reconciler.config import load_config
from reconciler.errors import ConfigError
from reconciler.model import DesiredBinding, DesiredShop, Scenario, Source, Waiver
from reconciler.plan import Plan, Problem
from reconciler.vocab import ProblemKind, Severity
from reconciler.waivers import waive_plan

JST, WDT = "21345678", "12345679"
SHOPS = """\
shops:
  - {id: "100001", erp: jushuitan, scenarios: {intercept_shipment: {}, order_status: {}}}
  - {id: "100004", erp: wangdiantong, scenarios: {intercept_shipment: {}, order_status: {}}}
"""
WAIVERS = """\
waivers:
  - {shop: "100004", scenario: order_status, kind: not-integrated, until: 2027-01-31,
     reason: "旺店通 integrates order_status in January (ticket 4411)"}
"""
ON, AFTER = "2027-01-31", "2027-02-01"
PLAN_FORMATS = ("text", "json", "markdown", "html")
DRIFT_FORMATS = ("text", "json", "markdown", "junit", "html")


@pytest.fixture
def waived(agency: Agency) -> Agency:
    agency.shops(SHOPS)
    agency.write("waivers.yaml", WAIVERS)
    agency.world({"100001": {}, "100004": {}})
    return agency


def on(day: str) -> dict[str, str]:
    return {"RECONCILER_TODAY": day}


def test_an_active_waiver_shows_the_problem_as_waived_and_plan_does_not_fail(waived: Agency) -> None:
    r = waived.run("plan", "--format", "json", env=on(ON))
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    (p,) = [p for p in data["problems"] if p["kind"] == "not-integrated"]
    assert (p["shop"], p["scenario"], p["severity"]) == ("100004", "order_status", "waived")
    assert p["message"].endswith(f"(waived until 2027-01-31 by {waived.dir}/waivers.yaml:2:"
                                 " 旺店通 integrates order_status in January (ticket 4411))")
    assert {c["shop"] for c in data["changes"]} == {"100001"}   # 100004's changes stay withheld
    assert any(p["kind"] == "withheld" and p["shop"] == "100004" for p in data["problems"])
    text = waived.run("plan", env=on(ON)).stdout
    assert "  waived  100004 order_status: ERP wangdiantong (12345679) has not integrated order_status" in text
    assert text.rstrip().endswith("0 error(s), 0 warning(s), 1 waived.")


def test_the_date_is_inclusive_and_after_it_the_problem_is_an_error_naming_the_waiver(waived: Agency) -> None:
    assert waived.run("plan", env=on(ON)).exit_code == 0
    r = waived.run("plan", "--format", "json", env=on(AFTER))
    assert r.exit_code == 1
    (p,) = [p for p in json.loads(r.stdout)["problems"] if p["kind"] == "not-integrated"]
    assert p["severity"] == "error"
    assert p["message"].endswith(f"(the waiver {waived.dir}/waivers.yaml:2 for it ended on 2027-01-31:"
                                 " fix the cause or extend the waiver)")
    v = waived.run("validate", env=on(AFTER))
    assert v.exit_code == 0
    assert "waivers.yaml:2:75: warning: waivers[0].until: ended on 2027-01-31 (China time)" in v.stderr


@pytest.mark.parametrize("fmt", PLAN_FORMATS)
def test_plan_exit_codes_in_every_format(waived: Agency, fmt: str) -> None:
    assert waived.run("plan", "--format", fmt, env=on(ON)).exit_code == 0
    assert waived.run("plan", "--format", fmt, "--detailed-exitcode", env=on(ON)).exit_code == 2  # 100001 changes
    assert waived.run("plan", "--format", fmt, env=on(AFTER)).exit_code == 1
    out = waived.run("plan", "--format", fmt, env=on(ON)).stdout
    assert "waived" in out


def test_markdown_and_html_show_the_waived_problem(waived: Agency) -> None:
    md = waived.run("plan", "--format", "markdown", env=on(ON)).stdout
    assert "- **waived** `order_status`: ERP wangdiantong" in md
    assert "#### Errors" not in md
    page = waived.run("plan", "--format", "html", env=on(ON)).stdout
    assert "waived not-integrated:" in page


def test_apply_with_a_waived_shop_applies_the_others_and_exits_0(waived: Agency) -> None:
    r = waived.run("apply", "--auto-approve", env=on(ON))
    assert r.exit_code == 0, r.output
    assert waived.bindings("100001") == {"intercept_shipment": JST, "order_status": JST}
    assert waived.bindings("100004") == {}   # withheld: a waiver acknowledges, it does not make the change safe
    waived.world({"100001": {}, "100004": {}})
    assert waived.run("apply", "--auto-approve", env=on(AFTER)).exit_code == 3


@pytest.fixture
def audited(waived: Agency) -> Agency:
    waived.world({"100001": {"bindings": {"intercept_shipment": JST, "order_status": JST}},
                  "100004": {"bindings": {"intercept_shipment": WDT}}})
    return waived


@pytest.mark.parametrize("fmt", DRIFT_FORMATS)
def test_drift_exit_codes_in_every_format(audited: Agency, fmt: str) -> None:
    assert audited.run("drift", "--format", fmt, env=on(ON)).exit_code == 0
    assert audited.run("drift", "--format", fmt, env=on(AFTER)).exit_code == 2


def test_drift_shows_waived_findings_and_the_difference_that_follows_from_them(audited: Agency) -> None:
    data = json.loads(audited.run("drift", "--format", "json", env=on(ON)).stdout)
    found = [(f["shop"], f["scenario"], f["kind"], f["waived"]) for f in data["findings"]]
    assert found == [("100004", "order_status", "missing", True), ("100004", "order_status", "cannot-apply", True)]
    assert data["findings"][1]["waiver"] == {"file": f"{audited.dir}/waivers.yaml", "line": 2, "until": "2027-01-31",
                                             "kind": "not-integrated",
                                             "reason": "旺店通 integrates order_status in January (ticket 4411)"}
    assert data["findings"][0]["message"].endswith("; it cannot be applied until then)")
    assert data["status"] == "clean" and data["summary"]["waived"] == 2 and data["summary"]["shops_with_findings"] == 0
    text = audited.run("drift", env=on(ON)).stdout
    assert "  - order_status        cannot-apply (waived)" in text
    assert text.rstrip().endswith("No drift: the platform matches the configuration for 2 shops (2 waived).")


def test_junit_counts_waived_findings_as_skipped(audited: Agency) -> None:
    root = ET.fromstring(audited.run("drift", "--format", "junit", env=on(ON)).stdout)
    suite = root.find("testsuite")
    assert suite is not None
    assert (suite.get("failures"), suite.get("errors"), suite.get("skipped")) == ("0", "0", "1")
    (case,) = [c for c in suite.iter("testcase") if c.find("skipped") is not None]
    assert (case.get("classname"), case.get("name")) == ("shop.100004", "order_status")
    root = ET.fromstring(audited.run("drift", "--format", "junit", env=on(AFTER)).stdout)
    assert root.get("failures") == "1" and root.get("skipped") == "0"


def test_a_waiver_that_matches_nothing_is_a_warning(audited: Agency) -> None:
    audited.write("waivers.yaml", WAIVERS + '  - {shop: "100001", kind: unmanaged, until: 2027-01-31, reason: "moving"}\n')
    r = audited.run("plan", "--format", "json", env=on(ON))
    assert r.exit_code == 0
    (p,) = [p for p in json.loads(r.stdout)["problems"] if p["kind"] == "unused-waiver"]
    assert (p["shop"], p["severity"]) == ("100001", "warning")
    assert p["message"] == (f"waiver {audited.dir}/waivers.yaml:4 (unmanaged until 2027-01-31) matches no unmanaged problem"
                            " of shop 100001: the problem is gone or the waiver is mistyped; remove it")
    r = audited.run("drift", "--format", "json", env=on(ON))
    assert r.exit_code == 0
    assert json.loads(r.stdout)["warnings"] == [p["message"]]
    assert p["message"] in audited.run("drift", env=on(ON)).stdout


def test_validate_requires_a_reason_and_a_date_and_a_kind_that_can_be_waived(tmp_path: Path) -> None:
    (tmp_path / "erps.yaml").write_text('erps:\n  jushuitan: {appkey: "21345678"}\n', encoding="utf-8")
    (tmp_path / "shops").mkdir()
    (tmp_path / "shops" / "a.yaml").write_text('shops:\n  - {id: "100001", erp: jushuitan}\n', encoding="utf-8")
    (tmp_path / "waivers.yaml").write_text(textwrap.dedent("""\
        waivers:
          - {shop: "100001", kind: not-integrated, until: 2027-01-31}
          - {shop: "100001", kind: not-integrated, until: 2027-01-31, reason: "  "}
          - {shop: "100001", kind: protected, until: 2027-01-31, reason: "no"}
          - {shop: "100001", kind: unmanaged, reason: "no end"}
          - {shop: "100001", kind: unmanaged, until: 2027-02-30, reason: "x"}
          - {shop: "999999", kind: unmanaged, until: 2027-01-31, reason: "x"}
          - {shop: "100001", kind: missing, until: 2029-01-31, reason: "x"}
        """), encoding="utf-8")
    with pytest.raises(ConfigError) as e:
        load_config(tmp_path, today=date(2027, 1, 1))
    said = [f"{i.line}: {i.severity}: {i.path}: {i.message}" for i in e.value.issues]
    assert said[:5] == [
        "2: error: waivers[0].reason: missing required key 'reason'",
        "3: error: waivers[1].reason: a waiver needs a reason: why the problem is acceptable until its date (who, which ticket)",
        "4: error: waivers[2].kind: 'protected' cannot be waived; a waiver takes one of: appkey-not-found, not-integrated,"
        " detail-not-whitelisted, status-not-synced, unmanaged, auth-expired, auth-expiring, differs, missing, not-unbound,"
        " self-service-off, self-service-on, cannot-apply, unknown-shop",
        "5: error: waivers[3].until: missing required key 'until'",
        "6: error: waivers[4].until: cannot read value '2027-02-30': day is out of range for month",
    ]
    (tmp_path / "waivers.yaml").write_text(textwrap.dedent("""\
        waivers:
          - {shop: "999999", kind: unmanaged, until: 2027-01-31, reason: "x"}
          - {shop: "100001", kind: missing, until: 2029-01-31, reason: "x"}
          - {shop: "100001", kind: missing, until: "2027-01-31", reason: "twice"}
        """), encoding="utf-8")
    with pytest.raises(ConfigError) as e:
        load_config(tmp_path, today=date(2027, 1, 1))
    said = [f"{i.line}: {i.severity}: {i.path}: {i.message}" for i in e.value.issues]
    assert said == [
        "2: warning: waivers[0].shop: shop 999999 is not declared in the configuration: this waiver matches nothing",
        "3: warning: waivers[1].until: ends on 2029-01-31, more than a year from now: a waiver is meant to end;"
        " review it within a year",
        f"4: error: waivers[2]: a second waiver for shop 100001 (any scenario) missing (also at {tmp_path}/waivers.yaml:3):"
        " keep one, with one end date and one reason",
    ]


# --------------------------------------------------------------------------- pure, with the date injected


def _plan(severity: Severity = Severity.error) -> Plan:
    return Plan(changes=(), problems=(Problem("100004", Scenario.order_status, severity, ProblemKind.not_integrated, "x"),),
                shops=("100004",))


def _waiver(until: date, scenario: Scenario | None = Scenario.order_status, kind: str = "not-integrated") -> Waiver:
    return Waiver(shop="100004", scenario=scenario, kind=kind, until=until, reason="r", source=Source(file="w.yaml", line=2))


@pytest.mark.parametrize(("today", "severity"), [(date(2027, 1, 30), Severity.waived), (date(2027, 1, 31), Severity.waived),
                                                 (date(2027, 2, 1), Severity.error)])
def test_waive_plan_until_is_inclusive(today: date, severity: Severity) -> None:
    (p,) = waive_plan(_plan(), [_waiver(date(2027, 1, 31))], today).problems
    assert p.severity == severity


def test_a_waiver_without_scenario_covers_every_scenario_and_a_kind_must_match() -> None:
    assert waive_plan(_plan(), [_waiver(date(2027, 1, 31), scenario=None)], date(2027, 1, 1)).problems[0].severity == "waived"
    out = waive_plan(_plan(), [_waiver(date(2027, 1, 31), kind="appkey-not-found")], date(2027, 1, 1)).problems
    assert [(p.severity, p.kind) for p in out] == [("error", "not-integrated"), ("warning", "unused-waiver")]
    out = waive_plan(_plan(), [_waiver(date(2027, 1, 31), scenario=Scenario.intercept_shipment)], date(2027, 1, 1)).problems
    assert out[0].severity == "error"


def test_a_warning_can_be_waived_and_stays_a_warning_after() -> None:
    assert waive_plan(_plan(Severity.warning), [_waiver(date(2027, 1, 31))], date(2027, 1, 31)).problems[0].severity == "waived"
    assert waive_plan(_plan(Severity.warning), [_waiver(date(2027, 1, 31))], date(2027, 2, 1)).problems[0].severity == "warning"


@pytest.mark.parametrize(("moment", "day"), [
    (datetime(2027, 1, 31, 15, 59, tzinfo=UTC), date(2027, 1, 31)),   # 23:59 in China: the last minute of the 31st
    (datetime(2027, 1, 31, 16, 0, tzinfo=UTC), date(2027, 2, 1)),     # 00:00 on the 1st in China, still the 31st in UTC
])
def test_today_is_the_date_in_china(moment: datetime, day: date) -> None:
    assert clock.today({}, now=moment) == day
    assert clock.today({"RECONCILER_TODAY": "2030-05-06"}, now=moment) == date(2030, 5, 6)


def test_desired_shops_unchanged_by_waivers() -> None:
    # a waiver changes what a plan says, never what it wants
    shop = DesiredShop(id="1", source=Source(file="a", line=1),
                       bindings={Scenario.order_status: DesiredBinding(scenario=Scenario.order_status, appkey=WDT,
                                                                       source=Source(file="a", line=2))})
    assert shop.bindings[Scenario.order_status].appkey == WDT
