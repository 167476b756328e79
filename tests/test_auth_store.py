"""The token store and the lifecycle without HTTP: schema version 3 (and the upgrade from 2),
whole-row writes, the renewal claim between processes, sealing, judging, import parsing;
and the sandbox platform's token rules. The clock is a ``FakeClock`` throughout."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml
from statekit import FakeClock, dead_pid, engine_for, opened, start

from reconciler.auth import (
    AuthError,
    AuthState,
    KeyProblem,
    Keyring,
    NewToken,
    Outcome,
    Renewer,
    Secret,
    authorize,
    judge,
    keygen,
    parse_import,
    parse_window,
    store_token,
)
from reconciler.connect import read_world
from reconciler.errors import ProviderError
from reconciler.platform import PlatformError, SandboxPlatform
from reconciler.providers.tokens import TokenGrant, parse_grant
from reconciler.state.schema import CURRENT
from reconciler.vocab import ProblemKind, Severity

T0 = datetime(2026, 5, 1, 3, 0, 0, tzinfo=UTC)
DAY = timedelta(days=1)


def ring(key: str | None = None) -> Keyring:
    return Keyring.from_env({"RECONCILER_STATE_KEY": key or keygen()})


def put(store: Any, keyring: Keyring, shop: str, *, ends: datetime | None, refresh: str | None = "rt",
        refresh_ends: datetime | None = None) -> None:
    store_token(store, keyring, NewToken(Secret(shop, f"tok-{shop}", f"{refresh}-{shop}" if refresh else None), ends,
                                         refresh_ends), source="import")


# ---------------------------------------------------------------------- schema


def test_a_version_2_store_is_upgraded_to_3_keeping_its_history(state_url: str, tmp_path: Path) -> None:
    with opened(state_url, tmp_path) as s:
        run = start(s)
        s.finish_run(run, exit_code=0)
    engine = engine_for(state_url)
    with engine.begin() as conn:  # back to version 2: no tokens table
        conn.exec_driver_sql("DROP TABLE tokens")
        conn.exec_driver_sql("UPDATE schema_version SET version = 2")
    engine.dispose()
    with opened(state_url, tmp_path) as s:
        assert s.schema_version() == CURRENT == 3
        assert [r.id for r in s.runs()] == [run]
        assert s.token_rows() == {}
        put(s, ring(), "100001", ends=None)
        assert list(s.token_rows()) == ["100001"]


# ---------------------------------------------------------------------- rows and claims


def test_a_write_replaces_the_whole_row_and_bumps_the_generation(state_url: str, tmp_path: Path) -> None:
    k = ring()
    with opened(state_url, tmp_path, clock=FakeClock(T0)) as s:
        put(s, k, "100001", ends=T0 + DAY, refresh_ends=T0 + 90 * DAY)
        row = s.token_row("100001")
        assert row is not None and (row.generation, row.expires_at, row.refreshable) == (1, (T0 + DAY).isoformat(), True)
        assert b"tok-100001" not in row.sealed.encode() and k.open(row).access_token == "tok-100001"
        assert not s.put_token("100001", sealed="x", key_id=k.key_id, expires_at=None, refresh_expires_at=None,
                               refreshable=False, source="refresh", expect_generation=7)
        assert s.put_token("100001", sealed=row.sealed, key_id=k.key_id, expires_at=None, refresh_expires_at=None,
                           refreshable=False, source="refresh", expect_generation=1)
        again = s.token_row("100001")
        assert again is not None and (again.generation, again.expires_at, again.source) == (2, None, "refresh")


def test_the_renewal_claim_is_one_holders_at_a_time(state_url: str, tmp_path: Path) -> None:
    clock = FakeClock(T0)
    k = ring()
    with opened(state_url, tmp_path, clock=clock) as s:
        put(s, k, "100001", ends=T0 + DAY)
        me = os.getpid()
        a = s.claim_renewal("100001", "holder-a", pid=me, lease_s=60)
        assert a.held and not a.took_over
        b = s.claim_renewal("100001", "holder-b", pid=me, lease_s=60)
        assert not b.held and b.holder_pid == me, "a live holder on this host keeps it"
        s.release_renewal("100001", "holder-b")   # not the holder: nothing happens
        assert not s.claim_renewal("100001", "holder-b", pid=me, lease_s=60).held
        s.release_renewal("100001", "holder-a", note="why")
        c = s.claim_renewal("100001", "holder-b", pid=me, lease_s=60)
        assert c.held and c.row is not None and c.row.note == "why"
        # a holder whose process is gone (on this host) is taken over at once
        s.release_renewal("100001", "holder-b")
        assert s.claim_renewal("100001", "dead", pid=dead_pid(), lease_s=600).held
        d = s.claim_renewal("100001", "holder-c", pid=me, lease_s=60)
        assert d.held and d.took_over
        assert s.claim_renewal("100002", "holder-c", pid=me, lease_s=60).row is None


def test_a_claim_from_another_host_holds_until_its_lease_ends(state_url: str, tmp_path: Path) -> None:
    clock = FakeClock(T0)
    k = ring()
    with opened(state_url, tmp_path, clock=clock, host="runner-1") as one, \
            opened(state_url, tmp_path, clock=clock, host="runner-2") as two:
        put(one, k, "100001", ends=T0 + DAY)
        assert one.claim_renewal("100001", "one", pid=dead_pid(), lease_s=60).held
        assert not two.claim_renewal("100001", "two", pid=os.getpid(), lease_s=60).held
        clock.advance(61)
        taken = two.claim_renewal("100001", "two", pid=os.getpid(), lease_s=60)
        assert taken.held and taken.took_over


# ---------------------------------------------------------------------- the renewer, with a scripted platform


class FakeClient:
    """A platform's token methods, scripted: each refresh token works once."""

    def __init__(self) -> None:
        self.valid: set[str] = set()
        self.calls = 0
        self.fail_with: ProviderError | None = None

    def refresh(self, refresh_token: str) -> TokenGrant:
        self.calls += 1
        if self.fail_with is not None:
            raise self.fail_with
        if refresh_token not in self.valid and not refresh_token.startswith("rt-"):
            raise ProviderError("isv.invalid-refresh-token: spent", code=15, sub_code="isv.invalid-refresh-token")
        if refresh_token in self.valid:
            self.valid.discard(refresh_token)
        n = self.calls
        self.valid.add(f"new-rt-{n}")
        return TokenGrant(access_token=f"new-tok-{n}", refresh_token=f"new-rt-{n}", expires_in=30 * 86_400,
                          re_expires_in=300 * 86_400, user_id=None)


def test_the_renewer_renews_what_is_due_and_says_what_cannot_be(state_url: str, tmp_path: Path) -> None:
    clock = FakeClock(T0)
    k = ring()
    client = FakeClient()
    with opened(state_url, tmp_path, clock=clock) as s:
        put(s, k, "100001", ends=T0 + 2 * DAY, refresh_ends=T0 + 90 * DAY)   # due
        put(s, k, "100002", ends=T0 + 60 * DAY)                               # not due
        put(s, k, "100003", ends=T0 - DAY, refresh=None)                      # dead
        put(s, k, "100004", ends=T0 + DAY, refresh_ends=T0 - DAY)             # refresh token over
        r = Renewer(s, k, client, clock=clock, parallelism=1)  # type: ignore[arg-type]
        out = {x.shop: x for x in r.renew(["100001", "100002", "100003", "100004", "100005"], within=7 * DAY)}
        assert {s_: x.outcome for s_, x in out.items()} == {
            "100001": Outcome.renewed, "100002": Outcome.not_needed, "100003": Outcome.dead, "100004": Outcome.dead,
            "100005": Outcome.missing}
        assert out["100001"].expires_at == (T0 + 30 * DAY).isoformat()
        row = s.token_row("100001")
        assert row is not None and k.open(row).access_token == "new-tok-1" and row.claim is None
        assert client.calls == 1
        # a passing failure leaves the token as it was, its claim free, and a note
        client.fail_with = ProviderError("isp.remote-service-unavailable", sub_code="isp.x", retryable=True)
        put(s, k, "100006", ends=T0 + DAY)
        [x] = r.renew(["100006"], within=7 * DAY)
        assert x.outcome is Outcome.failed and "renewal failed" in x.message
        row = s.token_row("100006")
        assert row is not None and row.claim is None and row.refreshable and (row.note or "").startswith("renewal failed at")


def test_judge_and_windows() -> None:
    assert judge(None, T0, DAY) is AuthState.missing
    assert parse_window("7d") == 7 * DAY and parse_window("36h") == timedelta(hours=36) and parse_window("0") == timedelta(0)
    for bad in ("7", "yesterday", "-1d", "1y"):
        with pytest.raises(ValueError):
            parse_window(bad)


def test_authorize_without_a_client_reports_expired_refreshable_tokens(state_url: str, tmp_path: Path) -> None:
    clock = FakeClock(T0)
    k = ring()
    with opened(state_url, tmp_path, clock=clock) as s:
        put(s, k, "100001", ends=T0 - DAY)
        put(s, k, "100002", ends=T0 + 3 * DAY)
        put(s, k, "100003", ends=None, refresh=None)
        a = authorize(s, k, ["100001", "100002", "100003", "100004"], client=None, at=clock)
        assert a.sessions == {"100002": "tok-100002", "100003": "tok-100003"}
        assert {shop: (kind, sev) for shop, (kind, sev, _) in a.problems.items()} == {
            "100001": (ProblemKind.auth_expired, Severity.error), "100002": (ProblemKind.auth_expiring, Severity.warning),
            "100004": (ProblemKind.auth_expired, Severity.error)}


# ---------------------------------------------------------------------- sealing


def test_sealing_names_the_shop_and_the_key() -> None:
    k1, k2 = keygen(), keygen()
    one = Keyring.from_env({"RECONCILER_STATE_KEY": k1})
    sealed = one.seal(Secret("100001", "tok-a", "rt-a"))
    assert "tok-a" not in sealed and "rt-a" not in sealed

    class Row:
        shop, key_id = "100001", one.key_id

    row: Any = Row()
    row.sealed = sealed
    assert one.open(row).refresh_token == "rt-a"
    with pytest.raises(KeyProblem) as e:
        Keyring.from_env({"RECONCILER_STATE_KEY": k2}).open(row)
    assert "RECONCILER_STATE_KEY" in str(e.value) and one.key_id in str(e.value) and k1 not in str(e.value)
    assert Keyring.from_env({"RECONCILER_STATE_KEY": f"{k2},{k1}"}).open(row).access_token == "tok-a"
    row.shop = "100002"   # a sealed value copied to another shop's row
    with pytest.raises(KeyProblem, match="belongs to another shop"):
        one.open(row)
    for bad in ("", "short", k1[:-2], k1 + "x", f"{k1},nope"):
        with pytest.raises(KeyProblem, match="RECONCILER_STATE_KEY") as e2:
            Keyring.from_env({"RECONCILER_STATE_KEY": bad})
        assert bad in ("", ) or bad not in str(e2.value)
    assert repr(Secret("1", "tok-secret", "rt-secret")).count("secret") == 0


def test_parse_import_accepts_strings_times_and_seconds() -> None:
    data = yaml.safe_load("""
"100001": tok-1
"100002": {access_token: tok-2, refresh_token: rt-2, expires_at: 2026-05-08T03:00:00Z, refresh_expires_at: "2026-08-01T11:00:00+08:00"}
"100003": {access_token: tok-3, expires_in: 3600, refresh_token: rt-3, re_expires_in: 86400}
""")
    out = {t.secret.shop: t for t in parse_import(data, at=T0, where="f")}
    assert out["100001"].expires_at is None and out["100001"].secret.refresh_token is None
    assert out["100002"].expires_at == T0 + 7 * DAY
    assert out["100002"].refresh_expires_at == datetime(2026, 8, 1, 3, 0, tzinfo=UTC)
    assert (out["100003"].expires_at, out["100003"].refresh_expires_at) == (T0 + timedelta(hours=1), T0 + DAY)
    with pytest.raises(AuthError) as e:
        parse_import({"100001": {"access_token": "tok-9", "re_expires_in": 5}, 7: "tok-8"}, at=T0, where="f")
    assert "without a refresh_token" in str(e.value) and "entry 2" in str(e.value)
    assert "tok-9" not in str(e.value) and "tok-8" not in str(e.value)


def test_parse_grant_reads_token_result_and_never_quotes_it() -> None:
    body = {"token_result": json.dumps({"access_token": "a1", "refresh_token": "r1", "expires_in": 60, "re_expires_in": "600",
                                        "taobao_user_id": 42})}
    g = parse_grant("m", body)
    assert (g.access_token, g.refresh_token, g.expires_in, g.re_expires_in, g.user_id) == ("a1", "r1", 60, 600, "42")
    assert "a1" not in repr(g) and "r1" not in repr(g)
    for bad in ({"token_result": "{not json a1"}, {"token_result": json.dumps({"refresh_token": "r1"})}, {},
                {"token_result": json.dumps({"access_token": "a1", "expires_in": "soon"})}):
        with pytest.raises(ProviderError) as e:
            parse_grant("m", bad)
        assert "a1" not in str(e.value) and "r1" not in str(e.value)


# ---------------------------------------------------------------------- the sandbox platform


def _world(tmp_path: Path, shops: dict[str, Any], **app: Any) -> SandboxPlatform:
    (tmp_path / "w.yaml").write_text(yaml.safe_dump({"app": {"app_key": "30000001", "app_secret": "s", **app},
                                                     "shops": shops}))
    p = SandboxPlatform(tmp_path / "sb.db")
    p.load_world(read_world(tmp_path / "w.yaml"))
    return p


def test_the_platforms_tokens_expire_rotate_and_come_from_codes(tmp_path: Path) -> None:
    (tmp_path / "w0.yaml").write_text("shops:\n  '100001': {session: {token: tok-1, expires_at: 2026-05-02T03:00:00Z}}\n")
    assert read_world(tmp_path / "w0.yaml").shops["100001"].session is not None  # a YAML timestamp is read
    p = _world(tmp_path, {
        "100001": {"session": {"token": "tok-1", "expires_at": "2026-05-02T03:00:00Z", "refresh_token": "rt-1",
                               "refresh_expires_at": "2026-12-01T00:00:00+08:00"}},
        "100002": {"session": "tok-2"},
        "100003": {"session": {"code": "code-3"}},
    }, token_ttl_s=3600)
    try:
        assert p.shop_for_session("tok-1", now=T0) == "100001"
        assert p.shop_for_session("tok-1", now=T0 + DAY) is None, "expired"
        assert p.shop_for_session("tok-2", now=T0 + 999 * DAY) == "100002", "a string never expires"
        assert p.shop_for_session("nope", now=T0) is None
        answer = p.token_refresh("rt-1", now=T0)
        result = json.loads(answer["token_result"])
        assert result["expires_in"] == 3600 and result["taobao_user_id"] == "100001"
        assert result["re_expires_in"] == int((datetime(2026, 11, 30, 16, tzinfo=UTC) - T0).total_seconds())
        assert p.shop_for_session(result["access_token"], now=T0 + timedelta(minutes=59)) == "100001"
        assert p.shop_for_session("tok-1", now=T0) == "100001", "the old access token runs out, it is not revoked"
        with pytest.raises(PlatformError) as e:
            p.token_refresh("rt-1", now=T0)
        assert e.value.sub_code == "isv.invalid-refresh-token"
        p.token_refresh(result["refresh_token"], now=T0)
        with pytest.raises(PlatformError):
            p.token_refresh(result["refresh_token"], now=T0)
        with pytest.raises(PlatformError, match="expired"):
            last = json.loads(p.token_refresh(json.loads(p.token_create("code-3", now=T0)["token_result"])["refresh_token"],
                                              now=T0)["token_result"])
            p.token_refresh(last["refresh_token"], now=T0 + 400 * DAY)
        with pytest.raises(PlatformError) as e:
            p.token_create("code-3", now=T0)
        assert e.value.sub_code == "isv.invalid-code"
        dumped = p.dump_world(include_secrets=True)["shops"]
        assert dumped["100002"]["session"] == "tok-2"
        assert set(dumped["100001"]["session"]) == {"token", "expires_at", "refresh_token", "refresh_expires_at"}
        assert "session" not in p.dump_world()["shops"]["100001"]
    finally:
        p.close()


@pytest.mark.parametrize(("session", "message"), [
    ({"expires_at": "2026-01-01T00:00:00Z"}, "needs a token or a code"),
    ({"token": "t", "expires_at": "soon"}, "ISO 8601"),
    ({"token": "t", "refresh_expires_at": "2026-01-01T00:00:00Z"}, "without a refresh_token"),
    ({"token": "t", "colour": "red"}, "colour"),
])
def test_a_bad_world_session_is_refused(tmp_path: Path, session: dict[str, Any], message: str) -> None:
    (tmp_path / "w.yaml").write_text(yaml.safe_dump({"shops": {"100001": {"session": session}}}))
    with pytest.raises(Exception, match=message):
        read_world(tmp_path / "w.yaml")


def test_two_shops_may_not_share_a_token(tmp_path: Path) -> None:
    (tmp_path / "w.yaml").write_text(yaml.safe_dump({"shops": {"100001": {"session": {"token": "a", "refresh_token": "x"}},
                                                               "100002": {"session": {"token": "b", "code": "x"}}}}))
    with pytest.raises(Exception, match="shops 100001 and 100002 have the same value as refresh token and code") as e:
        read_world(tmp_path / "w.yaml")
    assert "'x'" not in str(e.value)


def test_sessions_do_not_leak_from_the_sql(state_url: str, tmp_path: Path) -> None:
    k = ring()
    with opened(state_url, tmp_path) as s:
        put(s, k, "100001", ends=None)
    engine = engine_for(state_url)
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT * FROM tokens")).mappings().all()
    engine.dispose()
    assert "tok-100001" not in json.dumps([dict(r) for r in rows], default=str)
