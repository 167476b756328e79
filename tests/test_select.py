"""Labels and --select (issue 11, part 3): every term must hold; a selection that matches no
shop exits 1 saying so (never "No changes"); apply touches only the selected shops; import
writes --label on the shops it imports."""

from __future__ import annotations

import json

import pytest
import yaml
from conftest import Agency

from reconciler.shard import Shard

JST, WDT = "21345678", "12345679"
SHOPS = """\
shops:
  - {id: "100001", erp: jushuitan, labels: {client: acme, tier: gold}, scenarios: {intercept_shipment: {}}}
  - {id: "100002", erp: jushuitan, labels: {client: acme, tier: silver}, scenarios: {intercept_shipment: {}}}
  - {id: "100003", erp: jushuitan, labels: {client: beta, tier: gold}, scenarios: {intercept_shipment: {}}}
  - {id: "100004", erp: jushuitan, scenarios: {intercept_shipment: {}}}
"""
PROFILES = "profiles:\n  gold-jst: {erp: jushuitan, labels: {tier: gold}, scenarios: {intercept_shipment: {}}}\n"


@pytest.fixture
def labelled(agency: Agency) -> Agency:
    agency.write("profiles.yaml", PROFILES)
    agency.shops(SHOPS)
    agency.shops('shops:\n  - {id: "100005", profile: gold-jst, labels: {client: acme}}\n', name="acme/b.yaml")
    agency.world({s: {} for s in ("100001", "100002", "100003", "100004", "100005", "900001")})
    return agency


def planned(agency: Agency, *args: str) -> tuple[int, list[str], str]:
    r = agency.run("plan", "--format", "json", *args)
    shops = json.loads(r.stdout)["shops"] if r.exit_code == 0 else []
    return r.exit_code, shops, r.stderr


def test_select_is_the_and_of_its_terms_and_profile_labels_count(labelled: Agency) -> None:
    assert planned(labelled, "--select", "client=acme")[:2] == (0, ["100001", "100002", "100005"])
    assert planned(labelled, "--select", "tier=gold")[:2] == (0, ["100001", "100003", "100005"])   # 100005: its profile's
    code, shops, err = planned(labelled, "--select", "client=acme", "--select", "tier=gold")
    assert (code, shops) == (0, ["100001", "100005"])
    assert "--select client=acme tier=gold: 2 of 5 shop(s)" in err


@pytest.mark.parametrize("command", ["plan", "apply", "drift"])
def test_a_selection_that_matches_no_shop_exits_1_saying_so(labelled: Agency, command: str) -> None:
    extra = ["--auto-approve"] if command == "apply" else []
    r = labelled.run(command, "--select", "client=acme", "--select", "tier=bronze", *extra)
    assert r.exit_code == 1, r.output
    assert r.stderr.splitlines() == [
        "Error: --select client=acme tier=bronze: no shop of the configuration matches (5 shop(s) considered);"
        " nothing to do",
        "  tier takes: gold (3), silver (1)",
    ]
    assert "No changes" not in r.output
    r = labelled.run(command, "--select", "region=north", *extra)
    assert r.exit_code == 1 and "  no shop has the label 'region'" in r.stderr
    assert all(labelled.bindings(s) == {} for s in ("100001", "100002", "100003", "100004", "100005"))


@pytest.mark.parametrize("command", ["plan", "apply", "drift"])
def test_shop_outside_the_shard_exits_1_not_no_changes(labelled: Agency, command: str) -> None:
    outside = next(k for k in range(1, 5) if not Shard(k, 4).holds("100001"))
    extra = ["--auto-approve"] if command == "apply" else []
    r = labelled.run(command, "--shop", "100001", "--shard", f"{outside}/4", *extra)
    assert r.exit_code == 1, r.output
    assert f"--shop 100001: not in shard {outside}/4; nothing to do" in r.stderr
    assert "No changes" not in r.output
    inside = next(k for k in range(1, 5) if Shard(k, 4).holds("100001"))
    assert labelled.run("plan", "--shop", "100001", "--shard", f"{inside}/4").exit_code == 0


def test_apply_touches_only_the_selected_shops(labelled: Agency) -> None:
    r = labelled.run("apply", "--auto-approve", "--select", "client=acme", "--select", "tier=gold")
    assert r.exit_code == 0, r.output
    assert {s: labelled.bindings(s) for s in ("100001", "100002", "100003", "100004", "100005")} == {
        "100001": {"intercept_shipment": JST}, "100002": {}, "100003": {}, "100004": {},
        "100005": {"intercept_shipment": JST}}


def test_drift_with_a_selection_audits_only_it_and_reports_no_unknown_shops(labelled: Agency) -> None:
    r = labelled.run("drift", "--format", "json", "--select", "client=beta")
    assert r.exit_code == 2, r.output
    data = json.loads(r.stdout)
    assert [s["id"] for s in data["shops"]] == ["100003"]
    assert all(f["shop"] == "100003" for f in data["findings"])  # 900001 is not reported as unknown


@pytest.mark.parametrize(("args", "said"), [
    (["--select", "client"], "--select: expected KEY=VALUE such as client=acme"),
    (["--select", "=acme"], "--select: expected KEY=VALUE such as client=acme"),
    (["--select", "client="], "--select client=: the value must be 1 to 200 printable characters"),
    (["--select", "client=a", "--select", "client=b"], "--select client=a and --select client=b: a shop has one value"),
])
def test_malformed_selections_are_errors_exit_1(labelled: Agency, args: list[str], said: str) -> None:
    r = labelled.run("plan", *args)
    assert r.exit_code == 1
    assert said in r.stderr


def test_a_saved_plan_cannot_be_selected(labelled: Agency) -> None:
    plan = labelled.dir / "plan.json"
    assert labelled.run("plan", "--out", str(plan)).exit_code == 0
    r = labelled.run("apply", str(plan), "--select", "client=acme")
    assert r.exit_code == 1
    assert "--select cannot be combined with a saved plan" in r.stderr


def test_labels_are_validated(agency: Agency) -> None:
    agency.shops('shops:\n  - {id: "1", erp: jushuitan, labels: {tier: 1}}\n')
    r = agency.run("validate")
    assert r.exit_code == 1
    assert "shops[0].labels.tier: must be a quoted string (YAML read 1 as a number); write \"1\"" in r.stderr
    agency.shops('shops:\n  - {id: "1", erp: jushuitan, labels: {"bad key": x, ok: ""}}\n')
    r = agency.run("validate")
    assert r.exit_code == 1
    assert "label key 'bad key' must be letters, digits" in r.stderr
    assert "label ok: the value must be one line of 1 to 200 printable characters" in r.stderr


def test_import_writes_labels(labelled: Agency) -> None:
    labelled.world({"900001": {"bindings": {"intercept_shipment": WDT}}})
    r = labelled.run("import", "--shop", "900001", "--label", "client=gamma", "--label", "onboarded=2026-11")
    assert r.exit_code == 0, r.output
    text = (labelled.dir / "shops" / "imported.yaml").read_text(encoding="utf-8")
    assert yaml.safe_load(text)["shops"][0]["labels"] == {"client": "gamma", "onboarded": "2026-11"}
    code, shops, _ = planned(labelled, "--select", "client=gamma")
    assert (code, shops) == (0, ["900001"])
    assert labelled.run("import", "--shop", "900001", "--label", "client").exit_code == 1
