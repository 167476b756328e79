"""Shop authorizations through the CLI: auth import/add/status/refresh, plan/drift over HTTP with
tokens from the state store, on SQLite and PostgreSQL; the key; no token anywhere it should
not be (outputs, --debug logs, plans, history, the database's bytes)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from authkit import KEY_ENV, StoreAgency, database_bytes, refresh, session, to_import, token
from conftest import APP_SECRET

import reconciler.auth
from reconciler.auth import Keyring, keygen
from reconciler.errors import ProviderError
from reconciler.providers.tokens import TokenClient, refused
from reconciler.providers.top import TopProvider

DAY = timedelta(days=1)


@pytest.fixture
def t0(monkeypatch: pytest.MonkeyPatch) -> datetime:
    """The instant the CLI judges and renews tokens by (``reconciler.auth.clock``)."""
    t = datetime.now(UTC).replace(microsecond=0)
    monkeypatch.setattr(reconciler.auth, "clock", lambda: t)
    return t


@pytest.fixture
def key() -> str:
    return keygen()


@pytest.fixture
def store_agency(tmp_path: Path, state_url: str, key: str) -> Iterator[StoreAgency]:
    a = StoreAgency(tmp_path / "configs", state_url, key)
    try:
        yield a
    finally:
        a.close()


def _pg_datadir(request: pytest.FixtureRequest, state_url: str) -> Path | None:
    return None if state_url.startswith("sqlite") else request.getfixturevalue("pg_server").datadir


def _client(a: StoreAgency) -> TopProvider:
    assert a.url is not None
    return TopProvider(url=a.url, app_key="30000001", secret=APP_SECRET, sessions={}, qps=1000)


def _status(a: StoreAgency, *args: str) -> tuple[int, dict[str, dict[str, Any]]]:
    r = a.run("auth", "status", "--format", "json", *args)
    assert r.exit_code in (0, 2), r.output
    data = json.loads(r.stdout)
    assert data["format_version"] == 1
    return r.exit_code, {s["shop"]: s for s in data["shops"]}


# ---------------------------------------------------------------------- every state, both engines


def test_every_state_through_auth_status(store_agency: StoreAgency, t0: datetime, request: pytest.FixtureRequest) -> None:
    a = store_agency
    world = {
        "100001": {"session": session(t0, 1, ends_in=60 * DAY, refresh_ends_in=300 * DAY)},   # valid
        "100002": {"session": session(t0, 2, ends_in=2 * DAY, refresh_ends_in=300 * DAY)},    # expiring, refreshable
        "100003": {"session": session(t0, 3, ends_in=-DAY, refreshable=False)},               # expired, dead
        "100004": {"session": session(t0, 4, ends_in=None)},                                  # not imported: missing
        "100005": {"session": token(5)},                                                      # a string: never expires
    }
    a.load(world)
    a.shops_config(world)
    imported = to_import(world)
    del imported["100004"]
    a.import_tokens(imported)

    code, shops = _status(a)
    assert code == 2
    assert {s: v["state"] for s, v in shops.items()} == {
        "100001": "valid", "100002": "expiring", "100003": "expired", "100004": "missing", "100005": "valid"}
    assert shops["100002"] == {"shop": "100002", "state": "expiring", "expires_at": (t0 + 2 * DAY).isoformat(),
                               "refresh_expires_at": (t0 + 300 * DAY).isoformat(), "refreshable": True, "note": None}
    assert shops["100003"]["refreshable"] is False and shops["100005"]["expires_at"] is None
    assert shops["100004"] == {"shop": "100004", "state": "missing", "expires_at": None, "refresh_expires_at": None,
                               "refreshable": False, "note": None}
    # the window decides what is expiring
    _, narrow = _status(a, "--within", "1d")
    assert narrow["100002"]["state"] == "valid"
    _, wide = _status(a, "--within", "61d")
    assert wide["100001"]["state"] == "expiring"
    # the text says what a person does
    r = a.run("auth", "status")
    assert r.exit_code == 2
    assert "the merchant must re-authorize the app (服务市场 → 我的服务 → 授权)" in r.stdout
    assert "reconciler auth add --shop 100004 --code CODE" in r.stdout
    assert "reconciler auth refresh --shop 100002" in r.stdout
    assert "2 valid, 1 expiring, 1 expired, 1 missing" in r.stdout
    # none of it is in the store's bytes, nor in any output
    secrets = [token(n) for n in range(1, 6)] + [refresh(n) for n in range(1, 6)] + [a.key]
    for blob in database_bytes(a.state_url, _pg_datadir(request, a.state_url)):
        for s in secrets:
            assert s.encode() not in blob, "a token in clear in the database"
    assert not any(s in r.output for s in secrets)


def test_all_valid_is_exit_0(store_agency: StoreAgency, t0: datetime) -> None:
    a = store_agency
    world = {"100001": {"session": session(t0, 1, ends_in=60 * DAY)}, "100002": {"session": token(2)}}
    a.load(world)
    a.shops_config(world)
    a.import_tokens(to_import(world))
    code, shops = _status(a)
    assert code == 0 and {v["state"] for v in shops.values()} == {"valid"}
    assert a.run("auth", "status", "--within", "yesterday").exit_code == 1


# ---------------------------------------------------------------------- refresh


def test_refresh_rotates_both_tokens_and_the_old_refresh_token_is_refused(store_agency: StoreAgency, t0: datetime) -> None:
    a = store_agency
    world = {"100001": {"session": session(t0, 1, ends_in=2 * DAY, refresh_ends_in=300 * DAY)},
             "100002": {"session": session(t0, 2, ends_in=60 * DAY, refresh_ends_in=300 * DAY)}}
    a.load(world)
    a.shops_config(world)
    a.import_tokens(to_import(world))
    before = a.secrets()
    r = a.run("auth", "refresh")
    assert r.exit_code == 0, r.output
    assert "100001: renewed, valid until " + (t0 + 30 * DAY).isoformat() in r.stdout
    assert "Renewed 1 token(s); 0 renewed by another run; 1 not due; 0 could not be renewed (" in r.stdout
    after = a.secrets()
    new_access, new_refresh = after["100001"]
    assert new_access != token(1) and new_refresh not in (None, refresh(1)), "both tokens rotate"
    assert after["100002"] == before["100002"], "a token not due is left alone"
    row = a.rows()["100001"]
    assert (row.expires_at, row.source) == ((t0 + 30 * DAY).isoformat(), "refresh")
    # the new refresh token keeps the old one's end (counted by the platform from its own clock: seconds apart)
    assert row.refresh_expires_at is not None
    assert abs(datetime.fromisoformat(row.refresh_expires_at) - (t0 + 300 * DAY)) < timedelta(seconds=30)
    provider = _client(a)
    try:
        with pytest.raises(ProviderError) as e:
            TokenClient(provider).refresh(refresh(1))   # the old refresh token: spent
        assert refused(e.value) and e.value.sub_code == "isv.invalid-refresh-token"
        assert refresh(1) not in str(e.value)
    finally:
        provider.close()
    p = a.platform()
    try:
        assert p.shop_for_session(new_access) == "100001"
    finally:
        p.close()
    code, shops = _status(a)
    assert shops["100001"]["state"] == "valid" and code == 0
    # once renewed, the window does not reach it: a second refresh renews nothing
    r = a.run("auth", "refresh")
    assert r.exit_code == 0 and "Renewed 0 token(s)" in r.stdout


def test_refresh_of_what_cannot_be_renewed_exits_3(store_agency: StoreAgency, t0: datetime) -> None:
    a = store_agency
    world = {"100001": {"session": session(t0, 1, ends_in=DAY, refresh_ends_in=400 * DAY)},
             "100002": {"session": session(t0, 2, ends_in=DAY, refreshable=False)},
             "100003": {"session": session(t0, 3, ends_in=DAY, refresh_ends_in=-DAY)}}
    a.load(world)
    a.shops_config([*world, "100004"])
    a.import_tokens(to_import(world))
    r = a.run("auth", "refresh")
    assert r.exit_code == 3, r.output
    assert "100001: renewed" in r.stdout
    assert "100002: dead: the token ends at" in r.stdout and "no refresh token is stored" in r.stdout
    assert "100003: dead:" in r.stdout and "its refresh token ended at" in r.stdout
    assert "100004: missing: no token stored" in r.stdout
    assert r.stdout.count("the merchant must") == 3
    # --shop limits it
    r = a.run("auth", "refresh", "--shop", "100001", "--within", "60d")
    assert r.exit_code == 0 and "Renewed 1 token(s)" in r.stdout


def test_a_refresh_token_the_platform_refuses_is_said_and_kept(store_agency: StoreAgency, t0: datetime) -> None:
    a = store_agency
    world = {"100001": {"session": session(t0, 1, ends_in=DAY, refresh_ends_in=300 * DAY)}}
    a.load(world)
    a.shops_config(world)
    data = to_import(world)
    data["100001"]["refresh_token"] = "rt-not-known-to-the-platform-0001"
    a.import_tokens(data)
    r = a.run("auth", "refresh")
    assert r.exit_code == 3
    assert "the platform refused the refresh token" in r.stdout and "the current token works until" in r.stdout
    assert "rt-not-known-to-the-platform-0001" not in r.output
    _, shops = _status(a)
    assert shops["100001"]["note"].startswith("the platform refused the refresh token at")
    assert "re-authorize" in a.run("auth", "status").stdout


# ---------------------------------------------------------------------- plan, drift, apply


def test_plan_renews_an_expired_refreshable_token_withholds_a_dead_one_and_warns_of_an_expiring_one(
        store_agency: StoreAgency, t0: datetime) -> None:
    a = store_agency
    world = {"100001": {"session": session(t0, 1, ends_in=-DAY, refresh_ends_in=300 * DAY)},   # expired, refreshable
             "100002": {"session": session(t0, 2, ends_in=-DAY, refreshable=False)},            # expired, dead
             "100003": {"session": session(t0, 3, ends_in=3 * DAY, refreshable=False)},         # expiring
             "100004": {"session": session(t0, 4, ends_in=90 * DAY)}}                            # valid
    a.load(world)
    a.shops_config(world)
    a.import_tokens(to_import(world))
    r = a.run("plan", "--format", "json")
    assert r.exit_code == 1, r.output   # an error problem
    plan = json.loads(r.stdout)
    assert sorted(c["shop"] for c in plan["changes"]) == ["100001", "100003", "100004"]
    kinds = {(p["shop"], p["kind"], p["severity"]) for p in plan["problems"]}
    assert kinds == {("100002", "auth-expired", "error"), ("100003", "auth-expiring", "warning")}
    [dead] = [p for p in plan["problems"] if p["shop"] == "100002"]
    assert "the merchant must re-authorize the app (服务市场 → 我的服务 → 授权)" in dead["message"]
    assert "withheld" in dead["message"]
    assert "Renewed 1 expired token(s) on the way: 100001" in r.stderr
    assert a.secrets()["100001"][0] != token(1)
    # renewed once: the next plan finds it valid and renews nothing
    r = a.run("plan", "--format", "json")
    assert "Renewed" not in r.stderr
    # apply: every shop but the withheld one
    r = a.run("apply", "--auto-approve")
    assert r.exit_code == 3, r.output
    assert a.bindings("100001") == a.bindings("100003") == a.bindings("100004") == {"intercept_shipment": "21345678"}
    assert a.bindings("100002") == {}
    # drift: the dead shop is an error of the audit (it could not be read)
    r = a.run("drift", "--format", "json")
    assert r.exit_code == 1
    findings = {(f["shop"], f["kind"]) for f in json.loads(r.stdout)["findings"]}
    assert ("100002", "auth-expired") in findings
    assert "Warning: shop 100003: the shop's authorization expires at" in r.stderr


def test_a_missing_token_withholds_the_shop(store_agency: StoreAgency, t0: datetime) -> None:
    a = store_agency
    world = {"100001": {"session": token(1)}, "100002": {"session": token(2)}}
    a.load(world)
    a.shops_config(world)
    a.import_tokens({"100001": token(1)})
    r = a.run("plan", "--format", "json")
    assert r.exit_code == 1
    [p] = json.loads(r.stdout)["problems"]
    assert (p["shop"], p["kind"]) == ("100002", "auth-expired")
    assert "reconciler auth add --shop 100002 --code CODE" in p["message"]


# ---------------------------------------------------------------------- add, import


def test_auth_add_exchanges_a_code_once_and_refuses_another_shops_code(store_agency: StoreAgency, t0: datetime) -> None:
    a = store_agency
    world = {"100001": {"session": {"code": "code-100001-aa11bb22"}}, "100002": {"session": {"code": "code-100002-cc33dd44"}},
             "100003": {"session": token(3)}}
    a.load(world)
    a.shops_config(world)
    r = a.run("auth", "add", "--shop", "100001", "--code", "code-100001-aa11bb22")
    assert r.exit_code == 0, r.output
    assert r.stdout == f"Stored the token of shop 100001, valid until {(t0 + 30 * DAY).isoformat()} (refreshable).\n"
    _, shops = _status(a)
    assert shops["100001"]["state"] == "valid" and shops["100001"]["refreshable"]
    r = a.run("auth", "add", "--shop", "100001", "--code", "code-100001-aa11bb22")
    assert r.exit_code == 1 and "the platform did not exchange the code" in r.stderr
    r = a.run("auth", "add", "--shop", "100003", "--code", "-", input="code-100002-cc33dd44\n")
    assert r.exit_code == 1 and "the code is another shop's; nothing stored" in r.stderr
    assert "100003" not in a.rows()
    assert not any(c in r.output for c in ("code-100001-aa11bb22", "code-100002-cc33dd44"))


def test_auth_import_moves_the_configured_sessions_file_in_one_command(tmp_path: Path, state_url: str, key: str,
                                                                       t0: datetime) -> None:
    a = StoreAgency(tmp_path / "configs", state_url, key, top_options={"sessions_file": "sessions.yaml"})
    try:
        a.world({"100001": {}, "100002": {}})   # sessions sess-<id>, written to sessions.yaml too
        a.shops_config(["100001", "100002"])
        r = a.run("auth", "import")
        assert r.exit_code == 0, r.output
        assert "Imported the tokens of 2 shop(s): 0 with an end, 0 refreshable" in r.stdout
        assert "remove it from reconciler.yaml" in r.stderr
        assert a.secrets() == {"100001": ("sess-100001", None), "100002": ("sess-100002", None)}
        a.top_options["sessions_file"] = None
        a.write("reconciler.yaml", (a.dir / "reconciler.yaml").read_text().replace("sessions_file: sessions.yaml",
                                                                                     "sessions_file: null"))
        (a.dir / "sessions.yaml").unlink()
        r = a.run("plan", "--detailed-exitcode")
        assert r.exit_code == 2, r.output
    finally:
        a.close()


@pytest.mark.parametrize(("content", "message"), [
    ("- a\n- b\n", "expected a mapping of shop id to token"),
    ('"sess-abc": "100001"\n', "entry 1: the key is not a shop id"),
    ('"100001": {access_token: tok-zz-1, colour: red}\n', "unknown key(s) colour"),
    ('"100001": {refresh_token: rt-zz-1}\n', "access_token must be a non-empty string"),
    ('"100001": {access_token: tok-zz-1, expires_at: soon}\n', "expires_at must be an ISO 8601 time"),
    ('"100001": {access_token: tok-zz-1, expires_at: 2026-01-01T00:00:00Z, expires_in: 5}\n', "not both"),
    ('"100001": tok-zz-1\n"100001": tok-zz-2\n', "duplicate key"),
])
def test_auth_import_refuses_a_bad_file_without_echoing_it(store_agency: StoreAgency, t0: datetime, content: str,
                                                            message: str) -> None:
    a = store_agency
    a.shops_config(["100001"])
    a.write("bad.yaml", content)
    r = a.run("auth", "import", str(a.dir / "bad.yaml"))
    assert r.exit_code == 1
    assert message in r.stderr, r.stderr
    for secret in ("tok-zz-1", "tok-zz-2", "rt-zz-1", "sess-abc"):
        assert secret not in r.output
    assert a.rows() == {}


# ---------------------------------------------------------------------- the key


@pytest.mark.parametrize("command", [("auth", "status"), ("auth", "refresh"), ("plan",), ("drift",),
                                     ("auth", "import", "tokens.yaml")])
@pytest.mark.parametrize("bad", ["missing", "malformed", "another key"])
def test_a_wrong_or_missing_key_is_exit_1_naming_the_variable(store_agency: StoreAgency, t0: datetime,
                                                               command: tuple[str, ...], bad: str) -> None:
    a = store_agency
    world = {"100001": {"session": session(t0, 1, ends_in=-DAY, refresh_ends_in=300 * DAY)}}
    a.load(world)
    a.shops_config(world)
    a.import_tokens(to_import(world))
    a.write("tokens.yaml", json.dumps(to_import(world)))
    value = {"missing": "", "malformed": "not-a-key-at-all", "another key": keygen()}[bad]
    if command[-1] == "tokens.yaml":
        command = (*command[:-1], str(a.dir / "tokens.yaml"))
        if bad == "another key":
            return  # importing under another key is allowed (it seals with it); opening is what fails
    r = a.run(*command, env={KEY_ENV: value})
    assert r.exit_code == 1, r.output
    assert KEY_ENV in r.stderr
    assert "Traceback" not in r.output
    for secret in (token(1), refresh(1), a.key, value or "-"):
        assert secret not in r.output
    assert a.secrets()["100001"] == (token(1), refresh(1)), "nothing renewed or overwritten"


def test_a_key_rotation_opens_old_tokens_and_seals_new_ones_with_the_new_key(store_agency: StoreAgency, t0: datetime) -> None:
    a = store_agency
    world = {"100001": {"session": session(t0, 1, ends_in=DAY, refresh_ends_in=300 * DAY)}, "100002": {"session": token(2)}}
    a.load(world)
    a.shops_config(world)
    a.import_tokens(to_import(world))
    old_id = a.rows()["100001"].key_id
    new = keygen()
    r = a.run("auth", "refresh", env={KEY_ENV: f"{new},{a.key}"})
    assert r.exit_code == 0, r.output
    rows = a.rows()
    assert rows["100001"].key_id != old_id and rows["100002"].key_id == old_id
    assert Keyring.from_env({KEY_ENV: new}).open(rows["100001"]).shop == "100001"


# ---------------------------------------------------------------------- no secret anywhere


def test_no_token_in_any_output_log_plan_or_history(store_agency: StoreAgency, t0: datetime, tmp_path: Path,
                                                    request: pytest.FixtureRequest) -> None:
    a = store_agency
    world = {"100001": {"session": session(t0, 1, ends_in=-DAY, refresh_ends_in=300 * DAY)},
             "100002": {"session": session(t0, 2, ends_in=2 * DAY, refresh_ends_in=300 * DAY)},
             "100003": {"session": {"code": "code-100003-ee55ff66"}}}
    a.load(world)
    a.shops_config(world)
    a.import_tokens(to_import(world))
    outputs = []
    for args in (("--debug", "plan", "--out", str(tmp_path / "plan.json")), ("--debug", "auth", "refresh"),
                 ("--debug", "auth", "add", "--shop", "100003", "--code", "code-100003-ee55ff66"),
                 ("--debug", "apply", "--auto-approve"), ("history", "--format", "json"), ("--debug", "drift"),
                 ("auth", "status", "--format", "json"), ("--debug", "auth", "status")):
        r = a.run(*args)
        outputs.append(r.output)
    stored = [v for pair in a.secrets().values() for v in pair if v]
    secrets = [token(1), token(2), refresh(1), refresh(2), "code-100003-ee55ff66", a.key, *stored]
    everything = "\n".join(outputs) + (tmp_path / "plan.json").read_text()
    for s in secrets:
        assert s not in everything, "a secret in an output"
    for blob in database_bytes(a.state_url, _pg_datadir(request, a.state_url)):
        for s in secrets[:-len(stored) or None] + stored:
            assert s.encode() not in blob


def test_a_permission_refusal_says_what_a_person_does(agency: Any) -> None:
    agency.world({"100001": {"cs_permission": False}})
    agency.shops('shops:\n  - {id: "100001", erp: jushuitan, scenarios: {intercept_shipment: {}}}\n')
    r = agency.run("plan")
    assert r.exit_code == 1
    assert "grant the sub-account the 客户服务平台 permission" in r.output


def test_drift_lists_the_stored_shops_the_configuration_does_not_declare(store_agency: StoreAgency, t0: datetime) -> None:
    a = store_agency
    world = {"100001": {"session": token(1)}, "100002": {"session": token(2)}, "100003": {"session": session(t0, 3, ends_in=-DAY)}}
    a.load(world)
    a.shops_config(["100001"])
    a.import_tokens(to_import(world))
    r = a.run("drift", "--format", "json")
    findings = {(f["shop"], f["kind"]) for f in json.loads(r.stdout)["findings"]}
    assert ("100002", "unknown-shop") in findings, r.output
    assert not any(shop == "100003" for shop, _ in findings), "an expired token of an unmanaged shop is not used"
