"""The sandbox gateway (``sandbox serve``): TOP authentication, envelopes, session scoping,
rate limit, network faults, counters — against a real waitress server on 127.0.0.1.

The gateway's clock is injected (``Clock``): no test depends on the wall clock.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from reconciler import signing
from reconciler.errors import ProviderError
from reconciler.model import Scenario
from reconciler.platform import SandboxPlatform, World
from reconciler.providers.base import RetryPolicy
from reconciler.providers.top import TopProvider
from reconciler.ratelimit import AppLimit
from reconciler.sandbox_server import ServerHandle, start_server
from reconciler.signing import response_key

APP_KEY, SECRET = "30000001", "s3cret-for-tests"
NOW = datetime(2026, 3, 1, 4, 0, 0, tzinfo=UTC)
WORLD: dict[str, Any] = {
    "app": {"app_key": APP_KEY, "app_secret": SECRET},
    "apps": {"21345678": {"name": "聚水潭", "scenarios": ["intercept_shipment", "modify_address", "order_status"],
                          "detail_whitelisted": True},
             "12345679": {"name": "旺店通", "scenarios": ["intercept_shipment", "modify_address"]}},
    "shops": {"100001": {"name": "A", "session": "sess-100001", "bindings": {"intercept_shipment": "12345679"}},
              "100002": {"name": "B", "session": "sess-100002", "bindings": {"intercept_shipment": "21345678"}}},
}
SESSIONS = {"100001": "sess-100001", "100002": "sess-100002"}


class Clock:
    """The gateway's (and client's) notion of now; tests move it."""

    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at

    def advance(self, **delta: float) -> None:
        self.at += timedelta(**delta)


@dataclass
class Served:
    url: str
    handle: ServerHandle
    platform: SandboxPlatform
    clock: Clock

    def bindings(self, shop: str) -> dict[str, str]:
        return {b["scenario"]: b["appkey"] for b in self.platform.get(shop)["bindings"]}

    def provider(self, *, sessions: dict[str, str] | None = None, sign_method: str = "hmac-sha256",
                 retries: int = 0) -> TopProvider:
        return TopProvider(url=self.url, app_key=APP_KEY, secret=SECRET, sessions=SESSIONS if sessions is None else sessions,
                           sign_method=sign_method, qps=1000, retry=RetryPolicy(retries=retries, backoff_s=0),
                           clock=self.clock)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    platform = SandboxPlatform(tmp_path / "sandbox.db")
    platform.load_world(World.model_validate(WORLD))
    clock = Clock(NOW)
    url, handle = start_server(platform, clock=clock)
    try:
        yield Served(url, handle, platform, clock)
    finally:
        handle.stop()
        platform.close()


def request(method: str, *, session: str | None = "sess-100001", business: dict[str, str] | None = None,
            secret: str = SECRET, sign_method: str = "hmac-sha256", when: datetime = NOW,
            app_key: str = APP_KEY) -> tuple[dict[str, str], dict[str, str]]:
    """The (query, form) of a signed TOP request."""
    system = {"method": method, "app_key": app_key, "timestamp": signing.timestamp(when), "v": "2.0",
              "format": "json", "sign_method": sign_method}
    if session is not None:
        system["session"] = session
    form = dict(business or {})
    system["sign"] = signing.sign({**system, **form}, secret, sign_method)
    return system, form


def send(url: str, query: dict[str, str], form: dict[str, str]) -> dict[str, Any]:
    r = httpx.post(url, params=query, data=form)
    assert r.status_code == 200
    data: dict[str, Any] = r.json()
    return data


def error_of(data: dict[str, Any]) -> tuple[int, str]:
    err = data["error_response"]
    assert set(err) == {"code", "msg", "sub_code", "sub_msg", "request_id"}
    return err["code"], err["sub_code"]


# --------------------------------------------------------------------------- authentication


@pytest.mark.parametrize("sign_method", ["md5", "hmac", "hmac-sha256"])
def test_the_server_accepts_the_clients_signatures(served: Served, sign_method: str) -> None:
    p = served.provider(sign_method=sign_method)
    try:
        states = p.read(["100001", "100002"])
        assert not isinstance(states["100001"], ProviderError)
        assert states["100001"].appkey(Scenario.intercept_shipment) == "12345679"
        p.bind("100001", Scenario.intercept_shipment, "21345678", expected="12345679")
    finally:
        p.close()
    assert served.bindings("100001") == {"intercept_shipment": "21345678"}


def test_success_envelope(served: Served) -> None:
    data = send(served.url, *request("erp.binding.get"))
    assert list(data) == ["erp_binding_get_response"]
    body = data["erp_binding_get_response"]
    assert re.fullmatch(r"[0-9a-f]{16}", body.pop("request_id"))
    assert body == {"shop_id": "100001", "shop_name": "A",
                    "bindings": [{"scenario": "intercept_shipment", "appkey": "12345679", "revision": 1}],
                    "buyer_self_service": False, "detail_whitelisted": False}
    assert response_key("taobao.erp.binding.get") == "erp_binding_get_response"
    assert response_key("erp.app.check") == "erp_app_check_response"


def _tampered() -> tuple[dict[str, str], dict[str, str]]:
    q, f = request("erp.binding.bind", business={"scenario": "intercept_shipment", "appkey": "21345678",
                                                 "expected_appkey": "12345679"})
    return q, {**f, "appkey": "12345679"}


def _without_sign() -> tuple[dict[str, str], dict[str, str]]:
    q, f = request("erp.binding.get")
    return {k: v for k, v in q.items() if k != "sign"}, f


BIND = {"scenario": "intercept_shipment", "appkey": "21345678", "expected_appkey": "12345679"}


@pytest.mark.parametrize(("make", "code", "sub_code"), [
    (_tampered, 25, "isv.invalid-signature"),
    (lambda: request("erp.binding.bind", business=BIND, secret="not-the-secret"), 25, "isv.invalid-signature"),
    (_without_sign, 25, "isv.missing-signature"),
    (lambda: request("erp.binding.bind", business=BIND, app_key="39999999"), 29, "isv.invalid-app-key"),
    (lambda: request("erp.binding.bind", business=BIND, session="sess-unknown"), 27, "isv.invalid-session"),
    (lambda: request("erp.binding.bind", business=BIND, session=None), 27, "isv.missing-session"),
    (lambda: request("erp.binding.bind", business=BIND, when=NOW - timedelta(minutes=11)), 31, "isv.invalid-timestamp"),
    (lambda: request("erp.binding.bind", business=BIND, when=NOW + timedelta(minutes=11)), 31, "isv.invalid-timestamp"),
    (lambda: request("erp.binding.rebind", business=BIND), 22, "isv.invalid-method"),
    (lambda: request("erp.binding.bind", business={"appkey": "21345678"}), 40, "isv.missing-parameter:scenario"),
    (lambda: request("erp.binding.bind", business={**BIND, "scenario": "returns"}), 41, "isv.invalid-parameter"),
    (lambda: request("erp.selfservice.set", business={"enabled": "yes"}), 41, "isv.invalid-parameter:enabled"),
], ids=["tampered", "wrong-secret", "no-sign", "unknown-app", "unknown-session", "no-session", "stale", "future",
        "unknown-method", "missing-arg", "bad-scenario", "bad-flag"])
def test_refusals_change_nothing(served: Served, make: Any, code: int, sub_code: str) -> None:
    data = send(served.url, *make())
    assert error_of(data) == (code, sub_code)
    assert served.bindings("100001") == {"intercept_shipment": "12345679"}
    assert served.bindings("100002") == {"intercept_shipment": "21345678"}
    assert served.platform.get("100001")["buyer_self_service"] is False


def test_a_replayed_request_outside_the_window_is_refused(served: Served) -> None:
    q, f = request("erp.binding.get")
    assert "erp_binding_get_response" in send(served.url, q, f)
    served.clock.advance(minutes=9, seconds=59)
    assert "erp_binding_get_response" in send(served.url, q, f)  # still within ±10 minutes
    served.clock.advance(seconds=2)
    assert error_of(send(served.url, q, f)) == (31, "isv.invalid-timestamp")
    assert served.handle.counters().refused[31] == 1


# --------------------------------------------------------------------------- one session, one shop


def test_a_session_of_shop_a_cannot_read_or_write_shop_b(served: Served) -> None:
    q, f = request("erp.binding.bind", session="sess-100001",
                   business={"shop_id": "100002", "scenario": "intercept_shipment", "appkey": "12345679",
                             "expected_appkey": "21345678"})
    assert error_of(send(served.url, q, f)) == (13, "isv.session-shop-mismatch")
    # Through the provider, with a sessions mapping that gives shop B the key of shop A:
    p = served.provider(sessions={"100001": "sess-100001", "100002": "sess-100001"})
    try:
        state = p.read(["100002"])["100002"]
        assert isinstance(state, ProviderError) and state.code == 13 and not state.retryable
        with pytest.raises(ProviderError) as e:
            p.bind("100002", Scenario.intercept_shipment, "12345679", expected="21345678")
        assert e.value.code == 13
        with pytest.raises(ProviderError):
            p.unbind("100002", Scenario.intercept_shipment, expected="21345678")
    finally:
        p.close()
    assert served.bindings("100002") == {"intercept_shipment": "21345678"}
    assert served.bindings("100001") == {"intercept_shipment": "12345679"}
    assert served.handle.counters().handled["erp.binding.bind"] == 0


def test_the_session_alone_names_the_shop(served: Served) -> None:
    data = send(served.url, *request("erp.binding.get", session="sess-100002"))
    assert data["erp_binding_get_response"]["shop_id"] == "100002"


# --------------------------------------------------------------------------- rate limit


def test_app_limit_bans_whole_seconds() -> None:
    now = [100.0]
    limit = AppLimit(2, burst=2, clock=lambda: now[0])
    assert [limit.admit(), limit.admit()] == [None, None]
    assert limit.admit() == 1  # over the limit: banned for a whole second
    now[0] += 0.6
    assert limit.admit() == 1  # still banned (0.4 s left, rounded up)
    now[0] += 0.5
    assert limit.admit() is None  # the bucket refilled during the ban


def test_over_the_limit_is_code_7_with_the_ban_and_repeats_are_counted(tmp_path: Path) -> None:
    platform = SandboxPlatform(tmp_path / "sandbox.db")
    platform.load_world(World.model_validate(WORLD))
    clock = Clock(NOW)
    url, handle = start_server(platform, clock=clock, qps=1, burst=2)
    try:
        q, f = request("erp.binding.get")
        assert "erp_binding_get_response" in send(url, q, f)
        assert "erp_binding_get_response" in send(url, q, f)
        refused = send(url, q, f)["error_response"]
        assert (refused["code"], refused["sub_code"], refused["msg"]) == (7, "isp.call-limited", "App Call Limited")
        assert re.fullmatch(r"This ban will last for 1 more seconds", refused["sub_msg"])
        assert send(url, q, f)["error_response"]["code"] == 7  # the same request, refused again right away
        c = handle.counters()
        assert (c.refused[7], c.refused_again, c.ok["erp.binding.get"]) == (2, 1, 2)
    finally:
        handle.stop()
        platform.close()


# --------------------------------------------------------------------------- network faults and counters


@pytest.mark.parametrize("phase", ["before", "after"])
def test_a_dropped_connection(served: Served, phase: Any) -> None:
    served.handle.faults.drop(method="erp.binding.bind", shop="100001", phase=phase)
    q, f = request("erp.binding.bind", business=BIND)
    with pytest.raises(httpx.RemoteProtocolError):
        httpx.post(served.url, params=q, data=f)
    assert served.bindings("100001") == {"intercept_shipment": "21345678" if phase == "after" else "12345679"}
    c = served.handle.counters()
    assert (c.handled["erp.binding.bind"], c.ok["erp.binding.bind"]) == ((1, 0) if phase == "after" else (0, 0))
    assert (c.dropped_after if phase == "after" else c.dropped_before)["erp.binding.bind"] == 1
    # the rule was for one request: the next one is answered
    assert "erp_binding_get_response" in send(served.url, *request("erp.binding.get"))


def test_counters_are_served_at_stats(served: Served) -> None:
    send(served.url, *request("erp.binding.get"))
    send(served.url, *request("erp.binding.get", secret="wrong"))
    stats = httpx.get(served.url.replace("/router/rest", "/stats")).json()
    assert stats == served.handle.counters().to_data()
    assert stats["received"] == 2 and stats["ok"] == {"erp.binding.get": 1} and stats["refused"] == {"25": 1}


def test_stop_closes_the_port(tmp_path: Path) -> None:
    platform = SandboxPlatform(tmp_path / "sandbox.db")
    url, handle = start_server(platform, close_platform=True)
    assert httpx.get(url.replace("/router/rest", "/stats")).status_code == 200
    handle.stop()
    with pytest.raises(httpx.ConnectError):
        httpx.get(url.replace("/router/rest", "/stats"))


# --------------------------------------------------------------------------- the command


def test_sandbox_serve_command(tmp_path: Path) -> None:
    cfg = tmp_path / "configs"
    cfg.mkdir()
    (cfg / "world.yaml").write_text(yaml.safe_dump(WORLD, allow_unicode=True), encoding="utf-8")
    (cfg / "reconciler.yaml").write_text("provider: {kind: sandbox, world: world.yaml}\n", encoding="utf-8")
    proc = subprocess.Popen([sys.executable, "-m", "reconciler", "-C", str(cfg), "sandbox", "serve", "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # printed once the socket listens
        m = re.search(r"on (http://127\.0\.0\.1:(\d+)/router/rest) \(2 shop\(s\), app key 30000001, 100 QPS per app\)", line)
        assert m, line
        url = m.group(1)
        p = TopProvider(url=url, app_key=APP_KEY, secret=SECRET, sessions=SESSIONS, qps=1000,
                        retry=RetryPolicy(retries=0))
        try:
            state = p.read(["100002"])["100002"]
        finally:
            p.close()
        assert not isinstance(state, ProviderError) and state.appkey(Scenario.intercept_shipment) == "21345678"
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        assert "Stopped: 1 request(s), 1 answered, 0 failed, 0 refused, 0 dropped." in err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
