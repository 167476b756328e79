"""The top provider against ``sandbox serve``: faults, stale plans, dropped connections during
rotations, rate limits, timeouts, missing session keys, renamed methods.

Tests taking the ``agency`` fixture run on both providers (same behaviour); the others
build a top-only Agency, whose ``server`` is the gateway (network faults, counters).
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import APP_KEY, APP_SECRET, SECRET_ENV, SETTINGS, Agency

from reconciler.errors import ProviderError
from reconciler.providers.base import RetryPolicy
from reconciler.providers.top import TopProvider
from reconciler.sandbox_server import NetworkFaults

OLD, NEW = "21345678", "31415926"
SCENARIOS = ("intercept_shipment", "modify_address", "order_status")

TWO_SHOPS = """\
shops:
  - id: "100001"
    erp: jushuitan
    scenarios: {intercept_shipment: {}, modify_address: {}, order_status: {}}
  - id: "100002"
    erp: wangdiantong
    scenarios: {intercept_shipment: {}}
"""


def rotation_shops(ids: list[str]) -> str:
    return "shops:\n" + "".join(
        f'  - id: "{i}"\n    erp: inhouse\n    scenarios: {{intercept_shipment: {{}}, modify_address: {{}}, order_status: {{}}}}\n'
        for i in ids)


def on_old(ids: list[str]) -> dict[str, Any]:
    return {i: {"bindings": dict.fromkeys(SCENARIOS, OLD)} for i in ids}


@pytest.fixture
def top(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Agency]:
    monkeypatch.setenv(SECRET_ENV, APP_SECRET)
    a = Agency(tmp_path / "configs", "top")
    try:
        yield a
    finally:
        a.close()


def plan_json(agency: Agency, *args: str) -> dict[str, Any]:
    r = agency.run("plan", "--format", "json", *args)
    assert r.exit_code in (0, 1, 2), r.output
    data: dict[str, Any] = json.loads(r.stdout)
    return data


# --------------------------------------------------------------------------- faults, both providers


def test_transient_faults_are_retried_and_succeed(agency: Agency) -> None:
    agency.shops(TWO_SHOPS)
    agency.world({"100001": {}, "100002": {}}, faults=[
        {"operation": "bind", "shop": "100001", "scenario": "modify_address", "error": "isp.remote-service-unavailable",
         "times": 2},
        {"operation": "get", "shop": "100002", "error": "isp.unknown-error", "times": 1},
    ])
    r = agency.run("apply", "--auto-approve")
    assert r.exit_code == 0, r.output
    assert agency.bindings("100001") == dict.fromkeys(SCENARIOS, OLD)
    assert agency.bindings("100002") == {"intercept_shipment": "12345679"}
    p = agency.platform()
    try:
        assert [f["times"] for f in p.dump_world()["faults"]] == [0, 0]  # every injected failure was met, and retried
    finally:
        p.close()


def test_a_permanent_write_fault_fails_that_shop_only(agency: Agency) -> None:
    agency.shops(TWO_SHOPS)
    agency.world({"100001": {}, "100002": {}}, faults=[
        {"operation": "bind", "shop": "100001", "scenario": "order_status", "error": "isv.scenario-not-integrated",
         "times": None}])
    r = agency.run("apply", "--auto-approve")
    assert r.exit_code == 3, r.output
    assert "Shop 100001: FAILED at order_status bind" in r.stdout
    assert "rolled back: modify_address bind, intercept_shipment bind" in r.stdout
    assert agency.bindings("100001") == {}
    assert agency.bindings("100002") == {"intercept_shipment": "12345679"}


def test_a_shop_that_cannot_be_read_is_withheld_alone(agency: Agency) -> None:
    agency.shops(TWO_SHOPS)
    agency.world({"100001": {}, "100002": {}}, faults=[
        {"operation": "get", "shop": "100001", "error": "isv.permission-denied", "times": None}])
    data = plan_json(agency)
    assert [(p["shop"], p["kind"]) for p in data["problems"]] == [("100001", "read-failed")]
    assert {c["shop"] for c in data["changes"]} == {"100002"}
    r = agency.run("apply", "--auto-approve")
    assert r.exit_code == 3, r.output
    p = agency.platform()  # (the platform's own get would meet the injected fault)
    try:
        assert p.dump_world()["shops"]["100001"]["bindings"] == {}
    finally:
        p.close()


def test_a_stale_saved_plan_is_refused_and_changes_nothing(agency: Agency) -> None:
    agency.shops(TWO_SHOPS)
    agency.world({"100001": {}, "100002": {}})
    plan_file = agency.dir / "plan.json"
    assert agency.run("plan", "--out", str(plan_file)).exit_code == 0
    p = agency.platform()  # someone binds 100002 in Qianniu meanwhile
    try:
        p.bind("100002", "intercept_shipment", NEW, None)
    finally:
        p.close()
    r = agency.run("apply", str(plan_file))
    assert r.exit_code == 1, r.output
    assert "stale" in r.stderr
    assert agency.bindings("100001") == {}
    assert agency.bindings("100002") == {"intercept_shipment": NEW}


def test_a_fresh_saved_plan_is_applied_exactly(agency: Agency) -> None:
    agency.shops(TWO_SHOPS)
    agency.world({"100001": {}, "100002": {}})
    plan_file = agency.dir / "plan.json"
    assert agency.run("plan", "--out", str(plan_file)).exit_code == 0
    r = agency.run("apply", str(plan_file))
    assert r.exit_code == 0, r.output
    assert agency.bindings("100001") == dict.fromkeys(SCENARIOS, OLD)
    assert plan_json(agency, "--detailed-exitcode")["changes"] == []


# --------------------------------------------------------------------------- dropped connections during a rotation


def test_write_dropped_after_it_took_effect_counts_as_done(top: Agency) -> None:
    top.shops(rotation_shops(["100001"]))
    top.world(on_old(["100001"]))
    top.server.faults.drop(method="erp.binding.bind", shop="100001", scenario="modify_address", phase="after")  # type: ignore[union-attr]
    r = top.run("apply", "--auto-approve")
    assert r.exit_code == 0, r.output
    assert top.bindings("100001") == dict.fromkeys(SCENARIOS, NEW)
    c = top.server.counters()  # type: ignore[union-attr]
    assert (c.dropped_after["erp.binding.bind"], c.handled["erp.binding.bind"]) == (1, 3)  # no second bind was sent
    assert plan_json(top, "--detailed-exitcode")["changes"] == []


def test_write_dropped_before_it_took_effect_rolls_the_shop_back(top: Agency) -> None:
    top.shops(rotation_shops(["100001"]))
    top.world(on_old(["100001"]))
    top.server.faults.drop(method="erp.binding.bind", shop="100001", scenario="modify_address", times=None)  # type: ignore[union-attr]
    r = top.run("apply", "--auto-approve")
    assert r.exit_code == 1, r.output
    assert "Shop 100001: FAILED at modify_address rotate" in r.stdout
    assert "rolled back: intercept_shipment rotate" in r.stdout
    assert top.bindings("100001") == dict.fromkeys(SCENARIOS, OLD)
    assert top.server.counters().handled["erp.binding.bind"] == 2  # type: ignore[union-attr]  # forward and back
    assert [(c["scenario"], c["action"]) for c in plan_json(top)["changes"]] == [(s, "rotate") for s in SCENARIOS]


def test_conflict_on_the_retry_of_a_write_that_landed_is_success(top: Agency) -> None:
    """The write lands, its answer is lost, the read that would tell is lost too; the retry
    then meets its own write as a compare-and-set conflict — which must count as done."""
    top.shops(rotation_shops(["100001"]))
    top.world(on_old(["100001"]))
    faults = top.server.faults  # type: ignore[union-attr]
    faults.drop(method="erp.binding.bind", shop="100001", scenario="modify_address", phase="after", times=None)
    faults.drop(method="erp.binding.get", shop="100001", skip=1)  # the plan's read passes, the settling read drops
    r = top.run("apply", "--auto-approve")
    assert r.exit_code == 0, r.output
    assert top.bindings("100001") == dict.fromkeys(SCENARIOS, NEW)
    c = top.server.counters()  # type: ignore[union-attr]
    assert (c.handled["erp.binding.bind"], c.failed["erp.binding.bind"]) == (4, 1)  # the retry: a conflict
    assert plan_json(top, "--detailed-exitcode")["changes"] == []


def test_random_drops_never_leave_a_shop_split(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SECRET_ENV, APP_SECRET)
    faults = NetworkFaults(drop_rate=0.15, drop_after_rate=0.15, seed=20260301)
    a = Agency(tmp_path / "configs", "top", top_options={"parallelism": 1}, server_options={"faults": faults})
    try:
        ids = [str(100001 + i) for i in range(12)]
        a.write("reconciler.yaml", "provider: {kind: sandbox, world: world.yaml}\napply: {retries: 6, backoff_s: 0, max_backoff_s: 0}\n")
        a.shops(rotation_shops(ids))
        a.world(on_old(ids))
        r = a.run("apply", "--auto-approve", "--force")
        assert r.exit_code in (0, 3), r.output
        failed = {line.split()[1].rstrip(":") for line in r.stdout.splitlines() if "FAILED" in line}
        faults.drop_rate = faults.drop_after_rate = 0.0
        pending = plan_json(a)
        for shop in ids:
            held = a.bindings(shop)
            assert held in (dict.fromkeys(SCENARIOS, OLD), dict.fromkeys(SCENARIOS, NEW)), (shop, held)
            rotations = [c for c in pending["changes"] if c["shop"] == shop]
            assert len(rotations) == (3 if held[SCENARIOS[0]] == OLD else 0)
            assert (shop in failed) == (held[SCENARIOS[0]] == OLD)
        c = a.server.counters()  # type: ignore[union-attr]
        assert sum(c.dropped_before.values()) > 0 and c.dropped_after["erp.binding.bind"] > 0
    finally:
        a.close()


# --------------------------------------------------------------------------- rate limit, timeouts


def test_over_the_rate_limit_the_client_waits_and_no_request_is_refused_twice(tmp_path: Path,
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SECRET_ENV, APP_SECRET)
    a = Agency(tmp_path / "configs", "top", top_options={"qps": 50, "parallelism": 4},
               server_options={"qps": 20, "burst": 5})
    try:
        ids = [str(200001 + i) for i in range(20)]
        a.shops("shops:\n" + "".join(f'  - id: "{i}"\n    erp: jushuitan\n    scenarios: {{intercept_shipment: {{}}}}\n'
                                     for i in ids))
        a.world({i: {"bindings": {"intercept_shipment": OLD}} for i in ids})
        r = a.run("plan", "--detailed-exitcode", "--format", "json")
        assert r.exit_code == 0, r.output
        assert json.loads(r.stdout)["problems"] == []
        c = a.server.counters()  # type: ignore[union-attr]
        assert c.refused[7] > 0  # the limit was reached…
        assert c.refused_again == 0  # …and each refused request was sent again only after its ban, successfully
        assert c.handled["erp.binding.get"] == c.ok["erp.binding.get"] == 20  # every shop read once: none lost, none twice
    finally:
        a.close()


def test_a_stuck_call_times_out_and_is_retried(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SECRET_ENV, APP_SECRET)
    a = Agency(tmp_path / "configs", "top", top_options={"timeout_s": 0.3})
    try:
        a.shops(TWO_SHOPS)
        a.world({"100001": {}, "100002": {}})
        a.server.faults.stall(60, method="erp.binding.get", shop="100001")  # type: ignore[union-attr]
        data = plan_json(a)
        assert data["problems"] == []
        assert {c["shop"] for c in data["changes"]} == {"100001", "100002"}
        # Without retries the timeout is reported, as a retryable error.
        a.server.faults.stall(60, method="erp.binding.get", shop="100001")  # type: ignore[union-attr]
        assert a.url is not None
        p = TopProvider(url=a.url, app_key=APP_KEY, secret=APP_SECRET, sessions={"100001": "sess-100001"},
                        timeout_s=0.3, retry=RetryPolicy(retries=0))
        try:
            state = p.read(["100001"])["100001"]
            assert p.counters()["errors"] == {"timeout": 1}
        finally:
            p.close()
        assert isinstance(state, ProviderError) and state.retryable
        assert "no answer within 0.3 s" in str(state)
    finally:
        a.close()


# --------------------------------------------------------------------------- session keys, method names


def test_a_shop_without_a_session_key_fails_alone(top: Agency) -> None:
    top.shops(TWO_SHOPS)
    top.world({"100001": {}, "100002": {}})
    top.write("sessions.yaml", yaml.safe_dump({"100001": "sess-100001"}))
    data = plan_json(top)
    assert [(p["shop"], p["kind"]) for p in data["problems"]] == [("100002", "read-failed")]
    assert "no session key for shop 100002" in data["problems"][0]["message"]
    r = top.run("apply", "--auto-approve")
    assert r.exit_code == 3, r.output
    assert top.bindings("100001") == dict.fromkeys(SCENARIOS, OLD)
    assert top.bindings("100002") == {}
    assert top.server.counters().handled["erp.binding.get"] == 2  # type: ignore[union-attr]  # only 100001, twice


def test_a_session_key_of_another_shop_is_refused_by_the_platform(top: Agency) -> None:
    top.shops(TWO_SHOPS)
    top.world({"100001": {}, "100002": {"bindings": {"intercept_shipment": NEW}}})
    top.write("sessions.yaml", yaml.safe_dump({"100001": "sess-100001", "100002": "sess-100001"}))
    r = top.run("apply", "--auto-approve")
    assert r.exit_code == 3, r.output
    assert top.bindings("100001") == dict.fromkeys(SCENARIOS, OLD)
    assert top.bindings("100002") == {"intercept_shipment": NEW}
    assert top.server.counters().refused[13] >= 1  # type: ignore[union-attr]


def test_renamed_methods_go_on_the_wire(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SECRET_ENV, APP_SECRET)
    a = Agency(tmp_path / "configs", "top", top_options={"methods": {"erp.binding.get": "erp.binding.fetch"}})
    try:
        a.shops(TWO_SHOPS)
        a.world({"100001": {}, "100002": {}})
        data = plan_json(a)
        assert {p["kind"] for p in data["problems"]} == {"read-failed"}
        assert "unknown method 'erp.binding.fetch'" in data["problems"][0]["message"]
        a.top_options["methods"] = {"erp.binding.list": "x.y"}
        a.write("reconciler.yaml", "provider: {kind: sandbox}\n")
        r = a.run("plan")
        assert r.exit_code == 1
        assert "provider.methods: unknown method 'erp.binding.list'; rename one of: get, bind" in r.stderr
    finally:
        a.close()


def many_shops(n: int) -> tuple[str, dict[str, Any]]:
    """n shops already as the config wants them (plan: no changes)."""
    ids = [str(100001 + i) for i in range(n)]
    return rotation_shops(ids), {i: {"bindings": dict.fromkeys(SCENARIOS, NEW)} for i in ids}


def test_a_wrong_secret_stops_the_run_with_one_message(top: Agency, monkeypatch: pytest.MonkeyPatch) -> None:
    """A refused signature concerns the app, not a shop: one error, a handful of requests,
    instead of the same error for each of 40 shops."""
    config, world = many_shops(40)
    top.shops(config)
    top.world(world)
    assert top.run("plan").exit_code == 0  # the world is loaded, the secret is right
    before = top.server.counters().received  # type: ignore[union-attr]
    r = top.run("plan", env={SECRET_ENV: "not-the-secret"})
    assert r.exit_code == 1
    assert r.stdout == ""
    [line] = r.stderr.splitlines()
    assert line.startswith("Error: isv.invalid-signature: ") and "code 25) — the signature was refused: check the app secret" in line
    assert "not-the-secret" not in r.output
    assert top.server.counters().received - before <= 8 + 1  # type: ignore[union-attr]  # at most one per worker


def test_an_unreachable_platform_stops_the_run_after_one_shops_retries(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SECRET_ENV, APP_SECRET)
    a = Agency(tmp_path / "configs", "top", top_options={"parallelism": 1})
    try:
        config, world = many_shops(30)
        a.shops(config)
        a.world(world)
        assert a.run("plan").exit_code == 0
        with socket.socket() as s:  # a port nothing listens on
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        a.top_options["url"] = f"http://127.0.0.1:{port}/router/rest"
        a.write("reconciler.yaml", SETTINGS)
        r = a.run("plan")
        assert r.exit_code == 1
        [line] = r.stderr.splitlines()
        assert "cannot reach the platform" in line and "(after 4 attempts)" in line, line
    finally:
        a.close()


def test_parallelism_option_overrides_the_setting(top: Agency, monkeypatch: pytest.MonkeyPatch) -> None:
    import click

    from reconciler.cli import main
    from reconciler.cli.common import State, provider_for
    from reconciler.config import load_config

    top.shops(TWO_SHOPS)
    top.world({"100001": {}, "100002": {}})
    monkeypatch.setenv(SECRET_ENV, APP_SECRET)
    config = load_config(top.dir)
    configured = getattr(config.settings.provider, "parallelism", None)
    assert configured not in (None, 3)
    for given, expected in ((None, configured), (3, 3)):
        with click.Context(main, obj=State(config_dir=str(top.dir), debug=False, colour=None, parallelism=given)) as ctx:
            provider = provider_for(ctx, config.settings, config.dir)
            try:
                assert getattr(provider, "parallelism", None) == expected
            finally:
                provider.close()
    serial = top.run("--parallelism", "1", "plan", "--format", "json")
    parallel = top.run("--parallelism", "16", "plan", "--format", "json")
    assert serial.exit_code == parallel.exit_code == 0, serial.output
    assert serial.stdout == parallel.stdout  # the same plan, byte for byte
    assert top.run("--parallelism", "0", "plan").exit_code == 1


def _lose_answers(top: Agency, reads_lost: int | None) -> None:
    """modify_address binds of 100001 land but their answers are lost; so are the next
    ``reads_lost`` reads of the shop after the plan's (None: all of them)."""
    top.shops(rotation_shops(["100001"]))
    top.world(on_old(["100001"]))
    faults = top.server.faults  # type: ignore[union-attr]
    faults.drop(method="erp.binding.bind", shop="100001", scenario="modify_address", phase="after", times=None)
    faults.drop(method="erp.binding.get", shop="100001", skip=1, times=reads_lost)


def test_a_write_whose_answer_and_read_back_are_lost_is_put_back(top: Agency) -> None:
    """The rotation of modify_address lands, its answer and the reads that would tell are lost,
    so apply cannot know; it puts that write back with a compare-and-set as well (the read after
    the put-back works) — the shop ends whole on the old ERP and says so."""
    _lose_answers(top, reads_lost=2)
    r = top.run("apply", "--auto-approve")
    assert r.exit_code == 1, r.output
    assert top.bindings("100001") == dict.fromkeys(SCENARIOS, OLD)
    assert "Shop 100001: FAILED at modify_address rotate" in r.stdout
    assert "  the answer to that write was lost or could not be believed: it had taken effect and was put back\n" in r.stdout
    assert "  rolled back: intercept_shipment rotate (the shop is as it was before this run)\n" in r.stdout


def test_when_nothing_can_be_known_the_shop_is_flagged_not_claimed_whole(top: Agency) -> None:
    """Every answer about modify_address is lost, the put-back's too: apply must not claim the
    shop is as before (it may not be) nor that nothing changed (exit 1): exit 3, needs attention."""
    _lose_answers(top, reads_lost=None)
    r = top.run("apply", "--auto-approve")
    assert r.exit_code == 3, r.output
    assert "  ROLLBACK FAILED, the shop needs attention: modify_address: may have been changed" in r.stdout
    assert "as it was before this run" not in r.stdout and "Nothing applied." not in r.stdout
    top.server.faults.clear()  # type: ignore[union-attr]
    assert top.bindings("100001") == dict.fromkeys(SCENARIOS, OLD)  # (in fact the put-back had landed)
