"""The example agency shipped in ``configs/``: what a new user sees on the embedded sandbox.

A copy of the directory (without any ``.reconciler`` state) is planned, applied, planned
again, audited for drift and validated, with the real CLI. When the example or the
sandbox world changes, this test says what a first-time user will see instead.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from reconciler.cli import main
from reconciler.platform import SandboxPlatform

EXAMPLE = Path(__file__).parents[1] / "configs"
JST, WDT, INHOUSE = "21345678", "12345679", "31415926"


@pytest.fixture
def example(tmp_path: Path) -> Path:
    d = tmp_path / "configs"
    shutil.copytree(EXAMPLE, d, ignore=shutil.ignore_patterns(".reconciler"))
    assert not (d / ".reconciler").exists()
    return d


def run(d: Path, *args: str) -> Result:
    return CliRunner().invoke(main, ["-C", str(d), *args], catch_exceptions=False, env={"RECONCILER_ACTOR": "tester"})


def plan_json(d: Path) -> tuple[int, dict[str, Any]]:
    r = run(d, "plan", "--format", "json")
    return r.exit_code, json.loads(r.stdout)


def bindings(d: Path, shop: str) -> tuple[dict[str, str], bool]:
    p = SandboxPlatform(d / ".reconciler" / "sandbox.db")
    try:
        body = p.get(shop)
    finally:
        p.close()
    return {b["scenario"]: b["appkey"] for b in body["bindings"]}, body["buyer_self_service"]


def problems(data: dict[str, Any]) -> list[tuple[Any, ...]]:
    return [(p["shop"], p["scenario"], p["severity"], p["kind"]) for p in data["problems"]]


EXPECTED_PROBLEMS = [
    ("100004", "order_status", "error", "not-integrated"),   # 旺店通 has not integrated order_status
    ("100004", None, "info", "withheld"),
    ("100005", "order_status", "warning", "detail-not-whitelisted"),  # 自研ERP is not whitelisted
    ("200003", "order_status", "warning", "unmanaged"),     # bound on the platform, not in the config
]


def test_the_example_agency_end_to_end(example: Path) -> None:
    flagship, merchant_b = f"{example}/shops/flagship.yaml", f"{example}/shops/merchant-b.yaml"

    # ---- first plan: binds, one rotation, updates, an unbind; one shop withheld by an error
    code, data = plan_json(example)
    assert code == 1
    assert [(c["shop"], c["scenario"], c["action"], c["before"], c["after"]) for c in data["changes"]] == [
        ("100001", "intercept_shipment", "bind", {"appkey": None}, {"appkey": JST}),
        ("100001", "modify_address", "bind", {"appkey": None}, {"appkey": JST}),
        ("100001", "modify_address", "update", {"buyer_self_service": False}, {"buyer_self_service": True}),
        ("100001", "order_status", "bind", {"appkey": None}, {"appkey": JST}),
        ("100002", "intercept_shipment", "rotate", {"appkey": WDT}, {"appkey": JST}),
        ("100002", "modify_address", "rotate", {"appkey": WDT}, {"appkey": JST}),
        ("100002", "order_status", "rotate", {"appkey": INHOUSE}, {"appkey": JST}),
        ("100003", "modify_address", "update", {"buyer_self_service": False}, {"buyer_self_service": True}),
        ("100005", "intercept_shipment", "bind", {"appkey": None}, {"appkey": INHOUSE}),
        ("100005", "modify_address", "bind", {"appkey": None}, {"appkey": INHOUSE}),
        ("100005", "order_status", "bind", {"appkey": None}, {"appkey": INHOUSE}),
        ("200001", "modify_address", "bind", {"appkey": None}, {"appkey": JST}),
        ("200002", "order_status", "unbind", {"appkey": JST}, {"appkey": None}),
        ("200004", "intercept_shipment", "bind", {"appkey": None}, {"appkey": JST}),
        ("200005", "intercept_shipment", "bind", {"appkey": None}, {"appkey": INHOUSE}),
        ("200005", "order_status", "bind", {"appkey": None}, {"appkey": INHOUSE}),
    ]
    assert data["summary"] == {"bind": 10, "rotate": 3, "unbind": 1, "update": 2}
    assert problems(data) == EXPECTED_PROBLEMS
    assert data["problems"][0]["message"] == \
        f"ERP wangdiantong ({WDT}) has not integrated order_status through Qimen; only the ERP can fix this"
    reasons = {(c["shop"], c["scenario"], c["action"]): c["reason"] for c in data["changes"]}
    assert reasons[("100002", "order_status", "rotate")] == f"config says erp jushuitan, {flagship}:14; the platform has inhouse"
    assert reasons[("200002", "order_status", "unbind")] == f"config says state: unbound, {merchant_b}:15"
    assert reasons[("200004", "intercept_shipment", "bind")] == f"config says appkey {JST}, {merchant_b}:27"
    assert data["managed"] == 26

    r = run(example, "plan")
    assert r.exit_code == 1
    lines = r.stdout.splitlines()
    i = lines.index("  # shop 100002 示例专卖店")
    assert lines[i + 1:i + 7] == [
        "  ~ intercept_shipment  rotate  wangdiantong (12345679) → jushuitan (21345678)",
        f"        why: config says erp jushuitan, {flagship}:14; the platform has wangdiantong",
        "  ~ modify_address      rotate  wangdiantong (12345679) → jushuitan (21345678)",
        f"        why: config says erp jushuitan, {flagship}:14; the platform has wangdiantong",
        "  ~ order_status        rotate  inhouse (31415926) → jushuitan (21345678)",
        f"        why: config says erp jushuitan, {flagship}:14; the platform has inhouse",
    ]
    assert "  # shop 100004 旺店通试点店" not in lines
    assert lines[-1] == "Plan: 10 to bind, 3 to rotate, 1 to unbind, 2 to update; 1 error(s), 2 warning(s)."

    # ---- apply: everything but the withheld shop
    r = run(example, "apply", "--auto-approve")
    assert r.exit_code == 3, r.output
    assert r.stdout.splitlines()[-3:] == [
        "Applied 16 change(s) in 8 shop(s).",
        "Shop 100004: withheld (see the plan's errors).",
        "Apply partly done: 8 shop(s) applied, 0 failed, 1 withheld.",
    ]
    assert bindings(example, "100001") == ({"intercept_shipment": JST, "modify_address": JST, "order_status": JST}, True)
    assert bindings(example, "100002") == ({"intercept_shipment": JST, "modify_address": JST, "order_status": JST}, False)
    assert bindings(example, "100003") == ({"intercept_shipment": WDT, "modify_address": "virtualAppKey"}, True)
    assert bindings(example, "100004") == ({"intercept_shipment": WDT}, False)          # untouched
    assert bindings(example, "200002") == ({"intercept_shipment": JST}, False)
    assert bindings(example, "200003") == ({"intercept_shipment": WDT, "modify_address": WDT, "order_status": INHOUSE},
                                           False)                                        # unmanaged: left alone

    # ---- plan again: nothing left to do; exit 1 only because of 100004's error
    code, data = plan_json(example)
    assert code == 1
    assert data["changes"] == []
    assert data["summary"] == {"bind": 0, "rotate": 0, "unbind": 0, "update": 0}
    assert problems(data) == EXPECTED_PROBLEMS
    assert [p["shop"] for p in data["problems"] if p["severity"] == "error"] == ["100004"]
    r = run(example, "plan")
    assert r.stdout.splitlines()[0] == "No changes can be applied; some shops have errors (see Problems)."

    # ---- drift: the platform's shop 200007 is in no config file
    r = run(example, "drift", "--format", "json")
    assert r.exit_code == 2, r.output
    report = json.loads(r.stdout)
    assert [(f["shop"], f["scenario"], f["category"], f["kind"]) for f in report["findings"]] == [
        ("100004", "order_status", "drift", "missing"),
        ("100004", "order_status", "broken", "cannot-apply"),  # 旺店通 has not integrated order_status
        ("100005", "order_status", "broken", "detail-not-whitelisted"),
        ("200003", "order_status", "unmanaged", "unmanaged"),
        ("200007", None, "unknown-shop", "unknown-shop"),
    ]
    assert report["summary"] == {"broken": 2, "drift": 1, "errors": 0, "shops": 12, "shops_with_findings": 3,
                                 "unknown_shops": 1, "unmanaged": 1, "waived": 0}  # waived: issue 11
    r = run(example, "drift")
    assert r.exit_code == 2
    assert "  ? 200007" in r.stdout.splitlines()

    # ---- validate: offline, the example is valid
    r = run(example, "validate")
    assert r.exit_code == 0, r.output
    assert r.stdout == "Configuration valid: 12 shop(s), 26 managed binding(s), 4 ERP(s).\n"

