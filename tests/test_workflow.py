"""End to end on the embedded sandbox: plan, apply, plan again; rotation; exit codes. And the
GitHub Actions template (docs/github-actions/reconciler.yml) keeps its hardening rules."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml
from conftest import Agency

SHOPS = """\
shops:
  - id: "100001"
    name: 一号店
    erp: jushuitan
    scenarios:
      intercept_shipment: {}
      modify_address: {buyer_self_service: true}
      order_status: {}
  - id: "100002"
    erp: wangdiantong
    scenarios:
      intercept_shipment: {}
"""


def test_first_plan_apply_then_plan_is_empty(agency: Agency) -> None:
    agency.shops(SHOPS)
    agency.world({"100001": {"name": "一号店"}, "100002": {"bindings": {"intercept_shipment": "12345679"}}})
    r = agency.run("plan", "--detailed-exitcode")
    assert r.exit_code == 2, r.output
    assert "+ intercept_shipment  bind    unbound → jushuitan (21345678)" in r.stdout
    r = agency.run("apply", "--auto-approve")
    assert r.exit_code == 0, r.output
    assert agency.bindings("100001") == {"intercept_shipment": "21345678", "modify_address": "21345678",
                                         "order_status": "21345678"}
    assert agency.self_service("100001") is True
    r = agency.run("plan", "--detailed-exitcode", "--format", "json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["changes"] == []


def test_changing_erp_rotates_every_scenario(agency: Agency) -> None:
    agency.shops(SHOPS)
    agency.world({"100001": {}, "100002": {}})
    assert agency.run("apply", "--auto-approve").exit_code == 0
    agency.shops(SHOPS.replace("erp: jushuitan", "erp: inhouse"))
    r = agency.run("plan", "--format", "json")
    data = json.loads(r.stdout)
    assert [(c["shop"], c["scenario"], c["action"], c["before"], c["after"]) for c in data["changes"]] == [
        ("100001", s, "rotate", {"appkey": "21345678"}, {"appkey": "31415926"})
        for s in ("intercept_shipment", "modify_address", "order_status")
    ]
    assert data["summary"] == {"bind": 0, "rotate": 3, "unbind": 0, "update": 0}
    r = agency.run("apply", "--auto-approve")
    assert r.exit_code == 0, r.output
    assert set(agency.bindings("100001").values()) == {"31415926"}


def test_plan_with_only_withheld_shops_does_not_claim_a_match(agency: Agency) -> None:
    """旺店通 has not integrated order_status: the shop is withheld, plan exits 1 and does not say
    the platform matches the configuration."""
    agency.shops('shops:\n  - id: "100001"\n    erp: wangdiantong\n    scenarios: {intercept_shipment: {}, order_status: {}}\n')
    agency.world({"100001": {}})
    r = agency.run("plan")
    assert r.exit_code == 1
    assert r.stdout.startswith("No changes can be applied; some shops have errors (see Problems).\n")
    assert "  error   100001 order_status: ERP wangdiantong (12345679) has not integrated order_status through Qimen" in r.stdout
    assert ("  info    100001: 2 change(s) of this shop withheld until the errors are fixed: bind intercept_shipment"
            " unbound → wangdiantong (12345679); bind order_status unbound → wangdiantong (12345679)") in r.stdout
    r = agency.run("apply", "--auto-approve")
    assert r.exit_code == 1
    assert agency.bindings("100001") == {}


# --------------------------------------------------------------------------- the GitHub Actions template

WORKFLOW = Path(__file__).resolve().parent.parent / "docs" / "github-actions" / "reconciler.yml"
SHA_PIN = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+(?:/[A-Za-z0-9_./-]+)?@[0-9a-f]{40}$")
SECRET = re.compile(r"\$\{\{\s*secrets\.")


def _workflow() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))
    return data


def _steps() -> list[tuple[str, dict[str, Any]]]:
    return [(name, step) for name, job in _workflow()["jobs"].items() for step in job["steps"]]


def test_the_workflow_parses_and_names_its_jobs() -> None:
    wf = _workflow()
    assert set(wf["jobs"]) == {"plan", "apply", "auth", "drift", "drift-report"}
    assert wf["permissions"] == {"contents": "read"}


def test_no_secret_at_workflow_or_job_level() -> None:
    wf = _workflow()
    outside_steps = {k: v for k, v in wf.items() if k != "jobs"}
    assert not SECRET.search(yaml.safe_dump(outside_steps)), "a secret at workflow level reaches every step"
    for name, job in wf["jobs"].items():
        assert not SECRET.search(yaml.safe_dump({k: v for k, v in job.items() if k != "steps"})), name


def test_secrets_only_in_the_env_of_the_steps_that_need_them() -> None:
    for job, step in _steps():
        text = yaml.safe_dump(step)
        if not SECRET.search(text):
            continue
        where = f"{job}: {step.get('name') or step.get('uses')}"
        assert "uses" not in step, f"{where}: a third-party action is given a secret"
        assert not SECRET.search(str(step.get("run", ""))), f"{where}: a secret inline in the script (use env)"
        assert not SECRET.search(yaml.safe_dump(step.get("with", {}))), where
        run = str(step["run"])
        assert "pip install" not in run, f"{where}: the install step holds a secret"
        assert re.search(r"\breconciler (plan|apply|drift|history|auth (refresh|status))\b", run), \
            f"{where}: a secret where none is needed"
        assert all(SECRET.search(str(v)) is None or k.startswith("RECONCILER_") for k, v in step["env"].items()), where


def test_every_action_is_pinned_to_a_commit_with_its_tag_in_a_comment() -> None:
    uses = [step["uses"] for _, step in _steps() if "uses" in step]
    assert uses and all(SHA_PIN.match(u) for u in uses), [u for u in uses if not SHA_PIN.match(u)]
    for line in WORKFLOW.read_text(encoding="utf-8").splitlines():
        if re.match(r"^\s*-?\s*uses:", line):
            assert re.search(r"@[0-9a-f]{40} # v\d+(\.\d+)*$", line), line


def test_every_job_has_a_time_limit() -> None:
    for name, job in _workflow()["jobs"].items():
        assert isinstance(job.get("timeout-minutes"), int) and 0 < job["timeout-minutes"] <= 60, name


def test_plan_after_merge_and_apply_of_a_shard_share_one_queue() -> None:
    jobs = _workflow()["jobs"]
    plan, apply = jobs["plan"]["concurrency"], jobs["apply"]["concurrency"]
    assert plan["cancel-in-progress"] is False and apply["cancel-in-progress"] is False
    on_push = plan["group"].replace("${{ github.event_name == 'push' && 'main' || github.ref }}", "main")
    assert on_push == apply["group"] == "reconciler-shard-${{ matrix.shard }}-main"
    runs = _workflow()["concurrency"]    # runs on main queue behind each other; never cancelled
    assert "github.event_name == 'pull_request'" in str(runs["cancel-in-progress"])


def test_the_apply_log_starts_with_show_and_the_junit_action_gets_no_secret() -> None:
    steps = _workflow()["jobs"]["apply"]["steps"]
    commands = [str(s["run"]) for s in steps if "run" in s and "reconciler " in str(s["run"])]
    assert commands[0] == "reconciler show plan-${{ matrix.shard }}.json"
    assert "reconciler apply --max-age 24h" in commands[1] and "plan-${{ matrix.shard }}.json" in commands[1]
    show = next(s for s in steps if str(s.get("run", "")).startswith("reconciler show"))
    assert "env" not in show
    report = next(s for s in _workflow()["jobs"]["drift-report"]["steps"] if "action-junit-report" in s.get("uses", ""))
    assert "env" not in report and not SECRET.search(yaml.safe_dump(report)) and "token" not in report.get("with", {})
    for _, step in _steps():
        if str(step.get("uses", "")).startswith("actions/checkout@"):
            assert step["with"]["persist-credentials"] is False


def test_one_secret_holds_every_shops_token_and_a_nightly_job_renews_them() -> None:
    text = WORKFLOW.read_text(encoding="utf-8")
    assert "RECONCILER_SESSIONS" not in text, "no JSON of every session key: the tokens are in the state store"
    jobs = _workflow()["jobs"]
    for job in ("plan", "apply", "drift"):
        [step] = [s for s in jobs[job]["steps"] if re.search(r"\breconciler (plan|apply|drift)\b", str(s.get("run", "")))]
        assert step["env"]["RECONCILER_STATE_KEY"] == "${{ secrets.RECONCILER_STATE_KEY }}", job
    history = next(s for s in jobs["apply"]["steps"] if "reconciler history" in str(s.get("run", "")))
    assert set(history["env"]) == {"RECONCILER_STATE_URL"}, "history opens no token"
    auth = jobs["auth"]
    assert "schedule" in auth["if"] and auth["timeout-minutes"] <= 30
    runs = [str(s.get("run", "")) for s in auth["steps"]]
    refresh = next(s for s in auth["steps"] if "reconciler auth refresh" in str(s.get("run", "")))
    status = next(s for s in auth["steps"] if "reconciler auth status" in str(s.get("run", "")))
    assert runs.index(str(refresh["run"])) < runs.index(str(status["run"])), "renew first, then say what is left"
    assert set(refresh["env"]) == {"RECONCILER_APP_SECRET", "RECONCILER_STATE_KEY", "RECONCILER_STATE_URL"}
    assert set(status["env"]) == {"RECONCILER_STATE_KEY", "RECONCILER_STATE_URL"}, "status calls no platform"
    assert jobs["drift"]["needs"] == "auth" and "always()" in jobs["drift"]["if"]
