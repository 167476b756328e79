"""``sandbox serve`` against hostile clients: whatever a request holds it gets a TOP envelope
(never an HTTP 500 with a traceback), a body over 1 MiB is answered 413, and slow or half-open
connections cannot keep valid clients out — against a real waitress server on 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_top_server import APP_KEY, NOW, SECRET, WORLD, Clock, request

from reconciler import signing
from reconciler.platform import SandboxPlatform, World
from reconciler.sandbox_server import Gateway, ServerHandle, ServerLimits, start_server

UNCHANGED = {"100001": [{"scenario": "intercept_shipment", "appkey": "12345679", "revision": 1}],
             "100002": [{"scenario": "intercept_shipment", "appkey": "21345678", "revision": 1}]}


class Served:
    def __init__(self, root: Path, limits: ServerLimits | None = None) -> None:
        self.platform = SandboxPlatform(root / "sandbox.db")
        self.platform.load_world(World.model_validate(WORLD))
        self.url, self.handle = start_server(self.platform, clock=Clock(NOW), limits=limits)

    def close(self) -> None:
        self.handle.stop()
        self.platform.close()

    def unchanged(self) -> bool:
        return all(self.platform.get(s)["bindings"] == b for s, b in UNCHANGED.items())

    def valid_request(self, timeout: float = 10) -> dict[str, Any]:
        q, f = request("erp.binding.get")
        r = httpx.post(self.url, params=q, data=f, timeout=timeout)
        assert r.status_code == 200
        data: dict[str, Any] = r.json()
        assert data["erp_binding_get_response"]["shop_id"] == "100001", data
        return data


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    s = Served(tmp_path)
    try:
        yield s
    finally:
        s.close()


def resigned(method: str = "erp.binding.get", **change: str) -> dict[str, str]:
    """A request with ``change`` applied, signed again with the right secret (a client that
    signs what it sends, however odd)."""
    q, f = request(method)
    params = {**q, **f, **change}
    params.pop("sign")
    params["sign"] = signing.sign(params, SECRET, params.get("sign_method", "md5")) \
        if params.get("sign_method") in signing.SIGN_METHODS else "0" * 32
    return params


# --------------------------------------------------------------------------- non-ASCII anywhere


CASES: list[tuple[str, dict[str, str], int, str]] = [
    ("sign in Chinese", {**request("erp.binding.get")[0], "sign": "签名"}, 25, "isv.invalid-signature"),
    ("fullwidth hex sign", {**request("erp.binding.get")[0], "sign": "ＡＢＣＤ" * 16}, 25, "isv.invalid-signature"),
    ("accented sign", {**request("erp.binding.get")[0], "sign": "é" * 64}, 25, "isv.invalid-signature"),
    ("sign_method", {**request("erp.binding.get")[0], "sign_method": "签名"}, 25, "isv.invalid-signature"),
    ("app_key", {**request("erp.binding.get")[0], "app_key": "３０００００01"}, 29, "isv.invalid-app-key"),
    ("timestamp", resigned(timestamp="２０２６-03-01 12:00:00"), 31, "isv.invalid-timestamp"),
    ("method", resigned(method="erp.binding.gét"), 22, "isv.invalid-method"),
    ("session", resigned(session="会话"), 27, "isv.invalid-session"),
    ("v", resigned(v="２.0"), 41, "isv.invalid-parameter:v"),
    ("scenario", resigned("erp.binding.bind", scenario="拦截发货", appkey="21345678"), 41, "isv.invalid-parameter"),
    ("parameter name", resigned(**{"参数": "值"}), 0, ""),  # an unknown business parameter: ignored, answered
]


@pytest.mark.parametrize(("params", "code", "sub_code"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_non_ascii_in_any_parameter_is_an_envelope_not_a_500(served: Served, params: dict[str, str], code: int,
                                                            sub_code: str) -> None:
    r = httpx.post(served.url, data=params, timeout=10)
    assert r.status_code == 200, r.text
    data = r.json()
    if code:
        assert (data["error_response"]["code"], data["error_response"]["sub_code"]) == (code, sub_code), data
    else:
        assert "erp_binding_get_response" in data, data
    assert served.unchanged()


@pytest.mark.parametrize("line", [
    b"POST /router/rest?sign=\xe7\xad\xbe\xe5\x90\x8d&app_key=30000001 HTTP/1.1",   # raw UTF-8 in the query
    b"POST /router/rest?sign=%FF%FE&app_key=30000001 HTTP/1.1",                    # percent-encoded, not UTF-8
    b"POST /router/rest?\xff\xfe=\x80 HTTP/1.1",                                   # raw bytes, not UTF-8 at all
])
def test_raw_bytes_in_the_request_line_are_refused_not_a_500(served: Served, line: bytes) -> None:
    with socket.create_connection((served.handle.host, served.handle.port), timeout=10) as s:
        s.sendall(line + b"\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    if head.startswith(b"HTTP/1.1 400"):  # bytes HTTP does not allow in a request line: waitress's own answer
        assert b"Traceback" not in body
        return
    assert head.startswith(b"HTTP/1.1 200"), head
    assert json.loads(body)["error_response"]["code"] in (25, 29, 41)


_text = st.text(st.characters(exclude_categories=("Cs",)), max_size=12)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.dictionaries(st.sampled_from(["method", "app_key", "session", "timestamp", "v", "format", "sign_method", "sign",
                                        "shop_id", "scenario", "appkey", "expected_appkey", "enabled", "expected"]) | _text,
                       _text | st.sampled_from(["erp.binding.get", "erp.binding.bind", "erp.selfservice.set", APP_KEY,
                                                "sess-100001", "hmac", "md5", "true", "order_status", "21345678"]),
                       max_size=10),
       st.booleans(), st.booleans())
def test_any_request_gets_an_envelope(served: Served, params: dict[str, str], sign: bool, in_body: bool) -> None:
    """The gateway as a WSGI application, fed any parameters (signed right or not, in the query or
    the body): always a JSON envelope, never an exception."""
    gateway: Gateway = served.handle.gateway
    params = dict(params)
    if sign:
        params.setdefault("sign_method", "md5")
        params["app_key"], params["timestamp"] = APP_KEY, signing.timestamp(NOW)
        if params["sign_method"] in signing.SIGN_METHODS:
            params["sign"] = signing.sign(params, SECRET, params["sign_method"])
    encoded = urlencode(params).encode()
    environ = {"REQUEST_METHOD": "POST", "PATH_INFO": "/router/rest", "QUERY_STRING": "" if in_body else encoded.decode(),
               "CONTENT_TYPE": "application/x-www-form-urlencoded", "CONTENT_LENGTH": str(len(encoded) if in_body else 0),
               "wsgi.input": BytesIO(encoded if in_body else b"")}
    status: list[str] = []
    body = b"".join(gateway(environ, lambda s, h: status.append(s)))
    assert status[0].startswith(("200", "413")), status
    data = json.loads(body)
    assert "error_response" in data or any(k.endswith("_response") for k in data), data


# --------------------------------------------------------------------------- large bodies


@pytest.mark.parametrize(("size", "chunked"), [((1 << 20) + 1, False), (2 << 20, False), (6 << 20, False), (2 << 20, True)],
                         ids=["1MiB+1", "2MiB", "6MiB", "2MiB-chunked"])
def test_a_body_over_1_mib_is_answered_413(served: Served, size: int, chunked: bool) -> None:
    q, f = request("erp.binding.bind", business={"scenario": "intercept_shipment", "appkey": "21345678",
                                                 "expected_appkey": "12345679"})
    body = (urlencode(f) + "&pad=" + "x" * size).encode()
    content: Any = iter([body[i:i + 65536] for i in range(0, len(body), 65536)]) if chunked else body
    r = httpx.post(served.url, params=q, content=content, timeout=20,
                   headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 413, r.text
    assert r.json()["error_response"]["sub_code"] == "isv.request-too-large"
    assert served.unchanged()
    served.valid_request()


def test_a_body_over_waitress_s_own_limit_is_refused_and_the_server_goes_on(served: Served) -> None:
    q, _ = request("erp.binding.get")
    try:
        r = httpx.post(served.url, params=q, content=b"x" * (9 << 20), timeout=20,
                       headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert r.status_code == 413
    except httpx.TransportError:
        pass  # cut off mid-upload: the client was told nothing else, and nothing happened
    assert served.unchanged()
    served.valid_request()


# --------------------------------------------------------------------------- slow and half-open connections


def _slow(served: Served, n: int, *, silent: bool = False) -> list[socket.socket]:
    out = []
    for _ in range(n):
        s = socket.create_connection((served.handle.host, served.handle.port), timeout=10)
        if not silent:
            s.sendall(b"POST /router/rest HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        out.append(s)
    return out


def _closed_by_server(s: socket.socket, within: float) -> bool:
    """Whether the server closes ``s`` within ``within`` seconds (what it still sends is read)."""
    end = time.monotonic() + within
    while (left := end - time.monotonic()) > 0:
        s.settimeout(left)
        try:
            if s.recv(65536) == b"":
                return True
        except ConnectionResetError:
            return True
        except TimeoutError:
            return False
    return False


def test_many_half_open_connections_do_not_keep_a_valid_client_out(served: Served) -> None:
    """150 connections stuck in their headers and 50 that never said a word: a valid client is
    answered at once (the gateway reads requests on its event loop, and has room for them)."""
    slow = _slow(served, 150) + _slow(served, 50, silent=True)
    try:
        start = time.monotonic()
        served.valid_request(timeout=5)
        assert time.monotonic() - start < 2
    finally:
        for s in slow:
            s.close()


def test_slow_connections_are_closed_so_that_even_past_the_limit_valid_clients_get_in(tmp_path: Path) -> None:
    """More slow connections than slots (30 over 20), trickling a byte every 200 ms so they never
    look idle: each is closed ``request_timeout_s`` after it began, so the valid client waiting
    behind them is answered within a few seconds — and is served, not refused."""
    s = Served(tmp_path, ServerLimits(connection_limit=20, request_timeout_s=1.0))
    stop = threading.Event()
    slow: list[socket.socket] = []
    try:
        slow = _slow(s, 30)

        def trickle() -> None:
            while not stop.wait(0.2):
                for c in slow:
                    with contextlib.suppress(OSError):  # closed by the server: what should happen
                        c.send(b"x")

        threading.Thread(target=trickle, daemon=True).start()
        start = time.monotonic()
        s.valid_request(timeout=15)
        assert time.monotonic() - start < 8
        assert all(_closed_by_server(c, 5) for c in slow[:5])
    finally:
        stop.set()
        for c in slow:
            c.close()
        s.close()


def test_idle_keep_alive_connections_are_closed_sooner_when_slots_run_short(tmp_path: Path) -> None:
    s = Served(tmp_path, ServerLimits(connection_limit=20, busy_idle_s=0.5))
    idle: list[socket.socket] = []
    try:
        q, _ = request("erp.binding.get")
        raw = (f"POST /router/rest?{urlencode(q)} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n").encode()
        for _ in range(12):   # more than half the slots, each after one complete request, kept alive
            c = socket.create_connection((s.handle.host, s.handle.port), timeout=10)
            c.sendall(raw)
            assert c.recv(65536).startswith(b"HTTP/1.1 200")
            idle.append(c)
        assert all(_closed_by_server(c, 5) for c in idle)
        s.valid_request()
    finally:
        for c in idle:
            c.close()
        s.close()


def test_the_handle_still_stops_promptly_with_slow_connections_open(tmp_path: Path) -> None:
    s = Served(tmp_path)
    slow = _slow(s, 20)
    start = time.monotonic()
    s.close()
    assert time.monotonic() - start < 5
    for c in slow:
        c.close()
    assert isinstance(s.handle, ServerHandle)
