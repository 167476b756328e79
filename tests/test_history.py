"""The history: what apply records (applied, failed, rolled back, refused, crashed), who, and
``reconciler history`` with its filters."""

from __future__ import annotations

import getpass
import json
import sqlite3
from datetime import datetime, timedelta
from typing import Any

import pytest
from conftest import Agency

from reconciler.history import CI_ACTOR_VARS, format_time, parse_since
from reconciler.state import Store, open_store

SHOPS = """\
shops:
  - id: "100001"
    erp: jushuitan
    scenarios:
      intercept_shipment: {}
      modify_address: {}
  - id: "100002"
    erp: jushuitan
    scenarios:
      intercept_shipment: {}
      modify_address: {}
      order_status: {}
  - id: "100003"
    erp: inhouse
    scenarios:
      intercept_shipment: {}
"""

# 100002 moves from 旺店通 to 聚水潭: a rotation whose last step can be made to fail
WORLD: dict[str, Any] = {
    "100001": {},
    "100002": {"bindings": {"intercept_shipment": "12345679", "modify_address": "12345679", "order_status": "31415926"}},
    "100003": {},
}


def _entries(agency: Agency, *args: str) -> list[dict[str, Any]]:
    r = agency.run("history", "--format", "json", *args)
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert data["format_version"] == 1
    entries: list[dict[str, Any]] = data["entries"]
    return entries


def _rows(entries: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [(e["shop"], e["scenario"], e["action"], e["before"], e["after"], e["outcome"]) for e in entries]


@pytest.fixture
def ci_free(monkeypatch: pytest.MonkeyPatch) -> None:
    """No CI actor variables from the machine running the tests."""
    for var in CI_ACTOR_VARS:
        monkeypatch.delenv(var, raising=False)


def test_apply_with_one_failing_shop(agency: Agency, ci_free: None) -> None:
    agency.shops(SHOPS)
    agency.world(WORLD, faults=[{"operation": "bind", "shop": "100002", "scenario": "order_status",
                                 "error": "isv.appkey-not-found", "times": None}])
    checksum = json.loads(agency.run("plan", "--format", "json").stdout)["checksum"]
    r = agency.run("apply", "--auto-approve", "--actor", "alice")
    assert r.exit_code == 3, r.output
    entries = _entries(agency)
    j, w, i = {"appkey": "21345678"}, {"appkey": "12345679"}, {"appkey": "31415926"}
    none = {"appkey": None}
    if agency.provider == "sandbox":   # one shop after the other; the top provider runs shops in parallel
        assert _rows(entries) == [
            ("100001", "intercept_shipment", "bind", none, j, "applied"),
            ("100001", "modify_address", "bind", none, j, "applied"),
            ("100002", "intercept_shipment", "rotate", w, j, "applied"),
            ("100002", "modify_address", "rotate", w, j, "applied"),
            ("100002", "order_status", "rotate", i, j, "failed"),
            ("100002", "modify_address", "rotate", j, w, "rolled-back"),
            ("100002", "intercept_shipment", "rotate", j, w, "rolled-back"),
            ("100003", "intercept_shipment", "bind", none, i, "applied"),
        ]
    by_shop: dict[str, list[tuple[Any, ...]]] = {}
    for row in _rows(entries):
        by_shop.setdefault(row[0], []).append(row[1:])
    assert by_shop["100002"] == [
        ("intercept_shipment", "rotate", w, j, "applied"), ("modify_address", "rotate", w, j, "applied"),
        ("order_status", "rotate", i, j, "failed"),
        ("modify_address", "rotate", j, w, "rolled-back"), ("intercept_shipment", "rotate", j, w, "rolled-back")]
    assert len(by_shop["100001"]) == 2 and len(by_shop["100003"]) == 1
    failed = next(e for e in entries if e["outcome"] == "failed")
    assert "isv.appkey-not-found" in failed["error"]
    assert {e["actor"] for e in entries} == {"alice"}
    assert {e["checksum"] for e in entries} == {checksum}
    assert {e["run"] for e in entries} == {1}
    assert {(e["git_commit"], e["git_branch"]) for e in entries} == {(None, None)}   # tmp dir: not in git
    # the platform agrees with the history: 100002 is back on 旺店通, the others applied
    assert agency.bindings("100002") == {"intercept_shipment": "12345679", "modify_address": "12345679",
                                         "order_status": "31415926"}
    assert agency.bindings("100003") == {"intercept_shipment": "31415926"}


def test_refused_stale_saved_plan_is_recorded(agency: Agency, ci_free: None) -> None:
    agency.shops(SHOPS)
    agency.world(WORLD)
    plan = agency.dir / "plan.json"
    assert agency.run("plan", "--out", str(plan)).exit_code == 0
    p = agency.platform()
    try:
        p.bind("100003", "intercept_shipment", "12345679", None)   # someone clicked meanwhile
    finally:
        p.close()
    r = agency.run("apply", str(plan), env={"GITHUB_ACTOR": "ci-bot"})
    assert r.exit_code == 1
    entries = _entries(agency)
    assert len(entries) == 6
    assert {e["outcome"] for e in entries} == {"refused"}
    assert {e["actor"] for e in entries} == {"ci-bot"}
    assert all(e["error"].startswith("the saved plan is stale") for e in entries)
    assert agency.bindings("100001") == {}


def test_refused_unsafe_plan_is_recorded(agency: Agency, ci_free: None) -> None:
    ids = [f"2000{i:02d}" for i in range(4)]
    agency.shops("shops:\n" + "".join(
        f'  - id: "{s}"\n    erp: jushuitan\n    scenarios: {{intercept_shipment: {{}}, modify_address: {{}}, order_status: {{}}}}\n'
        for s in ids))
    on_wdt = {"intercept_shipment": "12345679", "modify_address": "12345679"}
    agency.world({s: {"bindings": {**on_wdt, "order_status": "21345678"}} for s in ids})
    r = agency.run("apply", "--auto-approve")
    assert r.exit_code == 1
    assert "refusing to apply" in r.stderr
    entries = _entries(agency)
    assert len(entries) == 8 and {e["outcome"] for e in entries} == {"refused"}
    assert all("safety threshold" in e["error"] for e in entries)
    assert {e["actor"] for e in entries} == {getpass.getuser()}   # no --actor, no CI variable: the OS user


def test_refused_non_interactive_apply_is_recorded(agency: Agency, ci_free: None) -> None:
    agency.shops(SHOPS)
    agency.world(WORLD)
    r = agency.run("apply", env={"RECONCILER_ACTOR": "ops", "GITHUB_ACTOR": "ci-bot"})
    assert r.exit_code == 1
    entries = _entries(agency)
    assert {e["outcome"] for e in entries} == {"refused"} and len(entries) == 6
    assert all("stdin is not a terminal" in e["error"] for e in entries)
    assert {e["actor"] for e in entries} == {"ops"}
    assert agency.bindings("100001") == {}


def test_actor_flag_beats_ci_variables(agency: Agency, ci_free: None) -> None:
    agency.shops(SHOPS)
    agency.world(WORLD)
    r = agency.run("apply", "--auto-approve", "--actor", "alice", env={"GITHUB_ACTOR": "ci-bot"})
    assert r.exit_code == 0
    assert {e["actor"] for e in _entries(agency)} == {"alice"}


def test_crash_mid_apply_keeps_completed_changes_and_invents_none(agency: Agency, ci_free: None) -> None:
    agency.shops(SHOPS)
    agency.world(WORLD)
    assert agency.run("plan").exit_code == 0   # the sandbox loads the world on first use
    # The platform's storage fails on any write to shop 100002 — not a platform refusal:
    # in-process it is an sqlite3 error that apply did not expect; behind the HTTP gateway
    # it becomes a transient server error. Either way that shop fails (and is rolled back)
    # and the others are applied.
    db = sqlite3.connect(agency.db)
    try:
        for op in ("INSERT", "UPDATE"):
            db.execute(f"CREATE TRIGGER boom_{op} BEFORE {op} ON bindings WHEN NEW.shop_id = '100002'"
                       " BEGIN SELECT RAISE(ABORT, 'disk on fire'); END")
        db.commit()
    finally:
        db.close()
    r = agency.run("apply", "--auto-approve")
    assert r.exit_code == 3, r.output
    assert "Shop 100002: FAILED" in r.stdout
    entries = _entries(agency)
    # none invented: every write the history says is applied is on the platform
    applied = [e for e in entries if e["outcome"] == "applied"]
    for e in applied:
        assert agency.bindings(e["shop"]).get(e["scenario"]) == e["after"]["appkey"], e
    assert not any(e["shop"] == "100002" and e["outcome"] == "applied" for e in entries)
    # every completed change recorded: whatever the platform now holds beyond the world was applied
    for shop in ("100001", "100003"):
        held = agency.bindings(shop)
        assert {(e["scenario"], e["after"]["appkey"]) for e in applied if e["shop"] == shop} == set(held.items())
    assert agency.bindings("100001") == {"intercept_shipment": "21345678", "modify_address": "21345678"}
    assert [(e["shop"], e["outcome"]) for e in entries if e["shop"] == "100002"][:1] == [("100002", "failed")]


def test_filters_shop_limit_since(agency: Agency, ci_free: None) -> None:
    agency.shops(SHOPS)
    agency.world(WORLD)
    assert agency.run("apply", "--auto-approve", "--actor", "alice").exit_code == 0
    recent = _entries(agency)
    assert len(recent) == 6
    t = datetime.fromisoformat(recent[0]["time"])
    # an older run, two days before the recorded one (relative to recorded times, not the clock)
    db = _store(agency)
    try:
        run = db.start_run(actor="bob", git_commit="abc", git_branch="main", checksum="sha256:old", host="elsewhere",
                           pid=1, lease_s=60, time=format_time(t - timedelta(days=2)))
        db.record(run, shop="100001", scenario="order_status", action="bind", before={"appkey": None},
                  after={"appkey": "21345678"}, outcome="applied", time=format_time(t - timedelta(days=2)))
        db.finish_run(run, exit_code=0)
    finally:
        db.close()
    everything = _entries(agency)
    assert len(everything) == 7 and everything[-1]["actor"] == "bob"   # ordered by record, not by time
    assert _entries(agency, "--since", format_time(t - timedelta(days=1))) == recent
    assert _entries(agency, "--since", recent[0]["time"]) == recent
    assert _entries(agency, "--since", (t - timedelta(days=3)).date().isoformat()) == everything
    assert _entries(agency, "--since", format_time(t + timedelta(seconds=1))) == []
    assert _entries(agency, "--limit", "2") == everything[-2:]
    assert [e["shop"] for e in _entries(agency, "--shop", "100003")] == ["100003"]
    assert [e["actor"] for e in _entries(agency, "--shop", "100001", "--limit", "1")] == ["bob"]
    r = agency.run("history", "--shop", "100003")
    assert r.exit_code == 0
    assert r.stdout == (f"{recent[-1]['time']}  run 1  alice  100003 intercept_shipment  bind    unbound → 31415926"
                        "  applied\n")


def test_empty_history_and_bad_since(agency: Agency) -> None:
    agency.shops(SHOPS)
    r = agency.run("history")
    assert (r.exit_code, r.stdout) == (0, "No recorded changes.\n")
    assert not (agency.dir / ".reconciler" / "state.db").exists()   # reading never creates one
    r = agency.run("history", "--since", "last tuesday")
    assert r.exit_code == 1
    assert "--since: expected a date" in r.stderr


def test_parse_since() -> None:
    assert parse_since("2024-05-01") == "2024-05-01T00:00:00+00:00"
    assert parse_since("2024-05-01T08:00:00+08:00") == "2024-05-01T00:00:00+00:00"
    assert parse_since("2024-05-01T08:00:00Z") == "2024-05-01T08:00:00+00:00"
    assert parse_since("2024-05-01 08:00") == "2024-05-01T08:00:00+00:00"      # naive: UTC
    assert parse_since("2024-05-01T08:00:00.2") == "2024-05-01T08:00:01+00:00"  # rounded up: times are whole seconds
    base = datetime.fromisoformat("2024-05-08T12:00:00+00:00")
    assert parse_since("7d", now_=base) == "2024-05-01T12:00:00+00:00"
    assert parse_since("36h", now_=base) == "2024-05-07T00:00:00+00:00"
    for bad in ("yesterday", "2024-13-01", "7y"):
        with pytest.raises(ValueError):
            parse_since(bad)


def test_runs_record_their_end_and_exit_code(agency: Agency, ci_free: None) -> None:
    """A finished run has its exit code; a refused one too (exit 1)."""
    agency.shops(SHOPS)
    agency.world(WORLD)
    assert agency.run("apply").exit_code == 1               # refused: stdin is not a terminal
    assert agency.run("apply", "--auto-approve").exit_code == 0
    h = _store(agency)
    try:
        runs = h.runs()
    finally:
        h.close()
    assert [r.exit_code for r in runs] == [1, 0]
    assert all(r.finished for r in runs) and {r.status for r in runs} == {"finished"}


def test_an_apply_with_nothing_to_do_records_no_run(agency: Agency, ci_free: None) -> None:
    agency.shops(SHOPS)
    agency.world(WORLD)
    assert agency.run("apply", "--auto-approve").exit_code == 0
    r = agency.run("apply", "--auto-approve")
    assert r.exit_code == 0 and r.stdout.rstrip().endswith("Nothing to apply."), r.output
    h = _store(agency)
    try:
        assert [run.exit_code for run in h.runs()] == [0]
    finally:
        h.close()


def _store(agency: Agency) -> Store:
    """The config dir's state store (the embedded default)."""
    store = open_store("sqlite:///.reconciler/state.db", config_dir=agency.dir)
    assert store is not None
    return store
