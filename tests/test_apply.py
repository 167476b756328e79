"""apply: per-shop all-or-nothing rotation, retries, protect and the safety threshold.

Faults are injected into the sandbox world (``faults:``); the CLI runs for real and the
sandbox is inspected afterwards. Every test runs on both providers (the ``agency``
fixture): the embedded sandbox and the TOP client over HTTP.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml
from conftest import Agency

OLD, NEW = "31415926", "21345678"  # inhouse → jushuitan; both integrate every scenario
ALL = ("intercept_shipment", "modify_address", "order_status")


def rotating_shops(*ids: str, protect: str | None = None) -> str:
    """Config: every listed shop on jushuitan, all three scenarios managed."""
    out = "shops:\n"
    for sid in ids:
        out += f'  - id: "{sid}"\n    erp: jushuitan\n'
        if sid == protect:
            out += "    protect: true\n"
        out += "    scenarios: {intercept_shipment: {}, modify_address: {}, order_status: {}}\n"
    return out


def on_old_erp(*ids: str) -> dict[str, Any]:
    return {sid: {"bindings": dict.fromkeys(ALL, OLD)} for sid in ids}


def everything(agency: Agency, *ids: str) -> dict[str, dict[str, str]]:
    return {sid: agency.bindings(sid) for sid in ids}


@pytest.mark.parametrize("fault", [
    pytest.param({"error": "isv.permission-denied"}, id="non-retryable"),
    pytest.param({"error": "isp.unknown-error", "times": 10}, id="retryable-beyond-retries"),
])
def test_failed_rotation_puts_the_shop_back(agency: Agency, fault: dict[str, Any]) -> None:
    agency.shops(rotating_shops("100001", "100002", "100003"))
    agency.world(on_old_erp("100001", "100002", "100003"),
                 faults=[{"operation": "bind", "shop": "100002", "scenario": "order_status", **fault}])

    r = agency.run("apply", "--auto-approve")

    assert r.exit_code == 3, r.output
    # The failing shop was rotated up to its last scenario, then put back: still on the old ERP.
    assert agency.bindings("100002") == dict.fromkeys(ALL, OLD)
    # The other shops are independent: rotated.
    assert agency.bindings("100001") == dict.fromkeys(ALL, NEW)
    assert agency.bindings("100003") == dict.fromkeys(ALL, NEW)
    summary = r.stdout[r.stdout.index("Applied "):].splitlines()
    assert summary[0] == "Applied 6 change(s) in 2 shop(s)."
    assert summary[1].startswith(f"Shop 100002: FAILED at order_status rotate (inhouse ({OLD}) → jushuitan ({NEW})): ")
    assert fault["error"] in summary[1]
    # issue 11 part 6: a permission refusal says what the help article says to do
    hint = (["  the operator's sub-account needs the 客户服务平台 (customer-service platform) permission: grant it in"
             " 千牛 > 子账号 > 权限, then run again"] if "permission" in fault["error"] else [])
    assert summary[2:] == [
        "  rolled back: modify_address rotate, intercept_shipment rotate (the shop is as it was before this run)",  # undone in reverse
        *hint,
        "Apply partly done: 2 shop(s) applied, 1 failed, 0 withheld.",
    ]
    if "times" in fault:  # retried: 1 try + 3 retries (reconciler.yaml: apply.retries: 3), then given up
        dump = yaml.safe_load(agency.run("sandbox", "dump").stdout)
        assert dump["faults"] == [{"operation": "bind", "shop": "100002", "scenario": "order_status",
                                   "error": "isp.unknown-error", "times": 6}]
    # Nothing left half-done: the next plan rotates exactly the failed shop, all of it.
    r = agency.run("plan", "--format", "json")
    changes = [(c["shop"], c["scenario"], c["action"]) for c in json.loads(r.stdout)["changes"]]
    assert changes == [("100002", sc, "rotate") for sc in ALL]


def test_failed_rotation_of_the_only_shop_is_exit_1(agency: Agency) -> None:
    """Nothing applied anywhere (the one shop was put back): exit 1, not 3."""
    agency.shops(rotating_shops("100001"))
    agency.world(on_old_erp("100001"),
                 faults=[{"operation": "bind", "shop": "100001", "scenario": "order_status", "error": "isv.permission-denied"}])
    r = agency.run("apply", "--auto-approve")
    assert r.exit_code == 1, r.output
    assert agency.bindings("100001") == dict.fromkeys(ALL, OLD)
    assert r.stdout.splitlines()[-1] == "Nothing applied."


def test_transient_fault_is_retried(agency: Agency) -> None:
    agency.shops(rotating_shops("100001"))
    agency.world(on_old_erp("100001"),
                 faults=[{"operation": "bind", "shop": "100001", "scenario": "order_status", "error": "isp.unknown-error",
                          "times": 1}])
    r = agency.run("apply", "--auto-approve")
    assert r.exit_code == 0, r.output
    assert agency.bindings("100001") == dict.fromkeys(ALL, NEW)
    assert r.stdout.splitlines()[-2:] == ["Applied 3 change(s) in 1 shop(s).", "Apply complete."]


def test_protected_shop_is_rotated_only_with_force(agency: Agency) -> None:
    agency.shops(rotating_shops("100001", "100002", protect="100001"))
    agency.world(on_old_erp("100001", "100002"))

    r = agency.run("plan", "--format", "json")
    assert r.exit_code == 1, r.output
    plan = json.loads(r.stdout)
    protected = [p for p in plan["problems"] if p["kind"] == "protected"]
    assert protected == [{
        "shop": "100001", "scenario": None, "severity": "error", "kind": "protected",
        "message": f"shop is protected (protect: true, {agency.dir}/shops/a.yaml:2); it would rotate intercept_shipment,"
                   " rotate modify_address, rotate order_status; use --force",
    }]
    assert {c["shop"] for c in plan["changes"]} == {"100002"}

    r = agency.run("apply", "--auto-approve")
    assert r.exit_code == 3, r.output  # partly applied: the protected shop is withheld
    assert agency.bindings("100001") == dict.fromkeys(ALL, OLD)
    assert agency.bindings("100002") == dict.fromkeys(ALL, NEW)
    assert r.stdout.splitlines()[-3:] == [
        "Applied 3 change(s) in 1 shop(s).",
        "Shop 100001: withheld (see the plan's errors).",
        "Apply partly done: 1 shop(s) applied, 0 failed, 1 withheld.",
    ]

    r = agency.run("apply", "--auto-approve", "--force")
    assert r.exit_code == 0, r.output
    assert agency.bindings("100001") == dict.fromkeys(ALL, NEW)


def test_protected_shop_alone_is_refused_with_exit_1(agency: Agency) -> None:
    agency.shops(rotating_shops("100001", protect="100001"))
    agency.world(on_old_erp("100001"))
    r = agency.run("apply", "--auto-approve")
    assert r.exit_code == 1, r.output
    assert r.stdout.splitlines()[-1] == "Nothing applied: every pending shop has errors."
    assert agency.bindings("100001") == dict.fromkeys(ALL, OLD)


def test_binding_a_protected_shop_needs_no_force(agency: Agency) -> None:
    """protect guards against unbinding and rotating; a first bind is not disruptive."""
    agency.shops(rotating_shops("100001", protect="100001"))
    agency.world({"100001": {}})
    r = agency.run("apply", "--auto-approve")
    assert r.exit_code == 0, r.output
    assert agency.bindings("100001") == dict.fromkeys(ALL, NEW)


SHOPS4 = ("100001", "100002", "100003", "100004")  # 12 managed bindings


def test_safety_threshold_refuses_then_force_applies(agency: Agency) -> None:
    agency.shops(rotating_shops(*SHOPS4))
    # 2 of 4 shops rotate: 6 of 12 managed bindings (50 %) > 30 %.
    agency.world({**on_old_erp("100001", "100002"), **{s: {"bindings": dict.fromkeys(ALL, NEW)} for s in ("100003", "100004")}})

    r = agency.run("plan")
    assert r.exit_code == 1, r.output
    before = everything(agency, *SHOPS4)
    assert ("  error   plan: plan would rotate or unbind 6 of 12 managed bindings (50%, over the 30% safety threshold);"
            " apply refuses without --force") in r.stdout

    r = agency.run("apply", "--auto-approve")
    assert r.exit_code == 1, r.output
    assert r.stderr.splitlines()[-1] == ("Error: refusing to apply: plan would rotate or unbind 6 of 12 managed bindings"
                                         " (50%, over the 30% safety threshold); apply refuses without --force")
    assert everything(agency, *SHOPS4) == before

    r = agency.run("apply", "--auto-approve", "--force")
    assert r.exit_code == 0, r.output
    assert everything(agency, *SHOPS4) == {s: dict.fromkeys(ALL, NEW) for s in SHOPS4}


def test_safety_threshold_counts_managed_bindings_only(agency: Agency) -> None:
    """At the threshold (3 of 10 = 30 %) apply goes ahead; below 10 managed there is no threshold."""
    config = rotating_shops("100001", "100002", "100003") + '  - id: "100004"\n    erp: jushuitan\n' \
        "    scenarios: {intercept_shipment: {}}\n"
    agency.shops(config)  # 3 + 3 + 3 + 1 = 10 managed
    agency.world({**on_old_erp("100001"), "100002": {"bindings": dict.fromkeys(ALL, NEW)},
                  "100003": {"bindings": dict.fromkeys(ALL, NEW)},
                  "100004": {"bindings": {"intercept_shipment": NEW, "order_status": OLD}}})  # order_status unmanaged
    r = agency.run("apply", "--auto-approve")
    assert r.exit_code == 0, r.output
    assert agency.bindings("100001") == dict.fromkeys(ALL, NEW)
    assert agency.bindings("100004") == {"intercept_shipment": NEW, "order_status": OLD}

    agency.shops(rotating_shops("100001", "100002", "100003"))  # 9 managed, all rotating
    agency.world(on_old_erp("100001", "100002", "100003"))
    r = agency.run("apply", "--auto-approve")
    assert r.exit_code == 0, r.output
    assert everything(agency, "100001", "100002", "100003") == {s: dict.fromkeys(ALL, NEW) for s in ("100001", "100002", "100003")}


def test_failed_rollback_is_partly_applied_not_nothing_changed(agency: Agency) -> None:
    """The rollback of a failed shop fails too: the platform was changed, so the run is
    "partly applied" (exit 3), never "nothing changed" (exit 1, "Nothing applied.")."""
    # intercept_shipment is bound to an ERP the platform no longer knows (its integration was
    # revoked): unbinding it works, binding it back cannot.
    agency.shops('shops:\n  - id: "100001"\n    erp: jushuitan\n'
                 '    scenarios: {intercept_shipment: {state: unbound}, order_status: {}}\n')
    agency.world({"100001": {"bindings": {"intercept_shipment": "99999999", "order_status": "31415926"}}},
                 faults=[{"operation": "bind", "shop": "100001", "scenario": "order_status", "error": "isv.permission-denied"}])
    r = agency.run("apply", "--auto-approve")
    assert agency.bindings("100001") == {"order_status": "31415926"}  # intercept_shipment was unbound and stays so
    assert "  ROLLBACK FAILED, the shop needs attention: intercept_shipment: " in r.stdout
    assert "Nothing applied." not in r.stdout
    assert r.exit_code == 3, r.output


def test_a_selection_cannot_slip_under_the_safety_threshold(agency: Agency) -> None:
    """--shop and --shard select fewer than min_managed bindings; the threshold still holds,
    since min_managed is counted over the whole configuration."""
    agency.shops(rotating_shops(*SHOPS4))
    agency.world(on_old_erp(*SHOPS4))  # all 12 managed bindings would rotate
    before = everything(agency, *SHOPS4)
    # a hand-picked --shop selection is measured against the whole config: 6 of 12
    r = agency.run("apply", "--auto-approve", "--shop", "100001", "--shop", "100002")
    assert r.exit_code == 1, r.output
    assert "rotate or unbind 6 of 12 managed bindings (50%" in r.stderr
    # one shop is 3 of 12 (25 %): a targeted rotation goes ahead
    r = agency.run("apply", "--auto-approve", "--shop", "100003")
    assert r.exit_code == 0, r.output
    assert agency.bindings("100003") == dict.fromkeys(ALL, NEW)
    agency.world(on_old_erp(*SHOPS4))
    # a shard is a sample: its own share (100 %) counts, however few shops it holds
    for k in range(1, 5):
        r = agency.run("plan", "--shard", f"{k}/4")
        if "0 of 4 shop(s)" not in r.stderr:
            assert r.exit_code == 1, r.output
            assert "over the 30% safety threshold" in r.stdout
    assert everything(agency, *SHOPS4) == before
