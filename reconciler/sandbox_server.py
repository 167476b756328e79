"""The sandbox platform over HTTP: a TOP-protocol gateway at ``/router/rest`` (waitress).

``Gateway`` is the WSGI application. For each request it checks, in this order: the app
key (29), the signature under any of the three sign methods (25), the timestamp against
its clock, ±10 minutes (31), the protocol version and format (41), the app's rate limit
(7, with a ban of whole seconds), the method (22), the session (27: unknown or expired at
the gateway's clock; each session key authorizes exactly one shop, and a request naming
another shop in ``shop_id`` is refused with 13), and the business parameters (40/41). The
two shop-authorization methods (``taobao.top.auth.token.refresh``/``.create``) need no
session and answer ``token_result`` as a JSON string, as TOP does. Then it calls the ``SandboxPlatform`` (whose
injected faults and rules apply) and answers with the TOP envelopes:
``{"erp_binding_get_response": {...}}`` or ``{"error_response": {"code", "msg",
"sub_code", "sub_msg", "request_id"}}``.

For fault tests it adds what a database cannot: latency, stalls and dropped connections,
either before the platform handles a request or after (the write happened, the client never
hears of it). Every request is counted (``Counters``; also served at ``GET /stats``) so a
test or benchmark can prove no request was lost or handled twice. Both live in
``sandbox_faults`` and are re-exported here.

Whatever a client sends, it gets a TOP envelope, never an HTTP 500 with a traceback: a
malformed signature is code 25 like a wrong one, an unexpected failure is ``isp.unknown-error``
(logged), and a body over ``MAX_BODY`` is HTTP 413. The HTTP server itself (waitress, with
the guards that keep slow or half-open connections from starving the others) is
``sandbox_http``.

``start_server`` runs a gateway on a background thread (tests, benchmarks); ``serve``
runs one in the foreground (``reconciler sandbox serve``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

from . import signing
from .platform import TOKEN_CREATE, TOKEN_REFRESH, PlatformError, SandboxPlatform
from .ratelimit import AppLimit
from .sandbox_faults import Counters, NetworkFaults, NetworkRule, Phase
from .sandbox_http import ServerLimits, make_server
from .settings import DEFAULT_METHODS
from .signing import response_key

__all__ = ["Counters", "Gateway", "NetworkFaults", "NetworkRule", "Phase", "ServerHandle", "ServerLimits", "start_server"]

log = logging.getLogger("reconciler.sandbox_server")

GATEWAY_PATH = "/router/rest"
STATS_PATH = "/stats"
MAX_BODY = 1 << 20   # a request body over this is answered HTTP 413 (sandbox_http reads up to 8 MiB whole)

# Logical name → method name the gateway answers; the client's defaults (the README lists the methods).
METHODS: dict[str, str] = DEFAULT_METHODS
AUTH_METHODS = frozenset({TOKEN_REFRESH, TOKEN_CREATE})  # shop authorization: the app's own calls, no session
_SESSIONLESS = {METHODS["check"], *AUTH_METHODS}
SYSTEM_PARAMS = frozenset({"method", "app_key", "session", "timestamp", "v", "format", "sign_method", "sign",
                           "partner_id", "target_app_key", "simplify"})
MESSAGES: dict[int, str] = {
    7: "App Call Limited", 10: "Service currently unavailable", 11: "Insufficient isv permissions",
    12: "Insufficient user permissions", 13: "Insufficient session permissions", 15: "Remote service error",
    22: "Invalid method", 25: "Invalid signature", 27: "Invalid session", 29: "Invalid app Key",
    31: "Invalid timestamp", 40: "Missing required arguments", 41: "Invalid arguments",
}

_MAX_REMEMBERED = 100_000


def utc_now() -> datetime:
    return datetime.now(UTC)


class Refused(Exception):
    """A request the gateway answers with an error envelope without calling the platform."""

    def __init__(self, code: int, sub_code: str, sub_msg: str) -> None:
        super().__init__(f"{code} {sub_code}: {sub_msg}")
        self.code, self.sub_code, self.sub_msg = code, sub_code, sub_msg


# --------------------------------------------------------------------------- the WSGI application

StartResponse = Callable[..., Any]
PlatformSource = SandboxPlatform | Callable[[], SandboxPlatform]


class _Drop(Exception):
    """Answer with a truncated response: the client sees the connection die."""


class Gateway:
    """The TOP gateway over a ``SandboxPlatform`` (or a factory that opens it on first use).

    ``clock`` gives the gateway's current time (timestamps are checked against it);
    ``qps`` (None: no limit) and ``burst`` set each app's rate limit.
    """

    def __init__(self, platform: PlatformSource, *, qps: float | None = None, burst: float | None = None,
                 clock: Callable[[], datetime] = utc_now, faults: NetworkFaults | None = None) -> None:
        self._source = platform
        self._platform = platform if isinstance(platform, SandboxPlatform) else None
        self.clock = clock
        self.faults = faults or NetworkFaults()
        self.stopping = threading.Event()
        self._limit_args = (qps, burst)
        self._limits: dict[str, AppLimit] = {}
        self._lock = threading.Lock()
        self._counters = Counters()
        self._refused_last: set[tuple[str, ...]] = set()

    @property
    def platform(self) -> SandboxPlatform:
        if self._platform is None:
            with self._lock:
                if self._platform is None:
                    assert not isinstance(self._source, SandboxPlatform)
                    self._platform = self._source()
        return self._platform

    def counters(self) -> Counters:
        """A snapshot of the counters."""
        with self._lock:
            c = self._counters
            return Counters(c.received, Counter(c.handled), Counter(c.ok), Counter(c.failed), Counter(c.refused),
                            Counter(c.dropped_before), Counter(c.dropped_after), c.refused_again)

    def close(self) -> None:
        if self._platform is not None:
            self._platform.close()

    # ------------------------------------------------------------------ WSGI

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == STATS_PATH and environ.get("REQUEST_METHOD") == "GET":
            return _json(start_response, "200 OK", self.counters().to_data())
        if path != GATEWAY_PATH:
            return _json(start_response, "404 Not Found", {"error": f"not found; the gateway is at {GATEWAY_PATH}"})
        if environ.get("REQUEST_METHOD") not in ("GET", "POST"):
            return _json(start_response, "405 Method Not Allowed", {"error": "use POST"})
        request_id = uuid.uuid4().hex[:16]
        with self._lock:
            self._counters.received += 1
        if _length(environ) > MAX_BODY:  # read whole by the server (sandbox_http): the client hears this answer
            self._count(self._counters.refused, 41)
            return _json(start_response, "413 Request Entity Too Large",
                         _error(41, "isv.request-too-large", f"the request body is over {MAX_BODY >> 10} KiB", request_id))
        try:
            body = self._handle(environ, request_id)
        except _Drop:
            start_response("200 OK", [("Content-Type", "application/json;charset=utf-8"), ("Content-Length", "64")])
            return [b""]  # fewer bytes than announced: waitress closes the connection
        except Exception:  # a bug of ours: the client still gets an envelope, the traceback goes to the log only
            log.exception("the gateway failed on request %s", request_id)
            body = _error(10, "isp.unknown-error", "the service failed; try again", request_id)
        return _json(start_response, "200 OK", body)

    def _handle(self, environ: dict[str, Any], request_id: str) -> dict[str, Any]:
        try:
            params = _params(environ)
            method, shop, business = self._authorize(params)
            call = self._prepare(method, shop, business)
        except Refused as e:
            self._count(self._counters.refused, e.code)
            return _error(e.code, e.sub_code, e.sub_msg, request_id)
        scenario = business.get("scenario")
        delay = self.faults.delay_for(method, shop, scenario)
        if delay > 0 and self.stopping.wait(delay):
            return _error(10, "isp.service-unavailable", "the gateway is shutting down", request_id)
        if self.faults.drops("before", method, shop, scenario):
            self._count(self._counters.dropped_before, method)
            raise _Drop
        self._count(self._counters.handled, method)
        try:
            result = call()
        except PlatformError as e:
            self._count(self._counters.failed, method)
            sub_msg = f"This ban will last for {e.ban_seconds} more seconds" if e.code == 7 and e.ban_seconds else e.msg
            return _error(e.code, e.sub_code, sub_msg, request_id)
        except Exception:
            log.exception("the platform failed on %s (request %s)", method, request_id)
            self._count(self._counters.failed, method)
            return _error(10, "isp.unknown-error", "the service failed; try again", request_id)
        if self.faults.drops("after", method, shop, scenario):
            self._count(self._counters.dropped_after, method)
            raise _Drop
        self._count(self._counters.ok, method)
        return {response_key(method): {**result, "request_id": request_id}}

    def _count(self, table: Counter[Any], key: Any) -> None:
        with self._lock:
            table[key] += 1

    def _authorize(self, params: dict[str, str]) -> tuple[str, str | None, dict[str, str]]:
        """The checks every request passes before the platform sees it (see the module doc)."""
        platform = self.platform
        app = platform.agency_app()
        app_key = params.get("app_key", "")
        if not app_key or app is None or app_key != app[0]:
            raise Refused(29, "isv.invalid-app-key", "unknown app_key" if app_key else "missing app_key")
        sign_method = params.get("sign_method", "md5")
        if sign_method not in signing.SIGN_METHODS:
            raise Refused(25, "isv.invalid-signature", f"sign_method must be one of {', '.join(signing.SIGN_METHODS)}")
        if not params.get("sign"):
            raise Refused(25, "isv.missing-signature", "missing sign")
        if not signing.verify(params, app[1]):
            raise Refused(25, "isv.invalid-signature", "the signature does not match the parameters")
        if not signing.in_window(params.get("timestamp", ""), self.clock()):
            raise Refused(31, "isv.invalid-timestamp",
                          "timestamp missing, malformed (yyyy-MM-dd HH:mm:ss, GMT+8) or more than 10 minutes off")
        if params.get("v", "2.0") != "2.0":
            raise Refused(41, "isv.invalid-parameter:v", "only v=2.0 is supported")
        if params.get("format", "json") != "json":
            raise Refused(41, "isv.invalid-parameter:format", "only format=json is supported")
        business = {k: v for k, v in params.items() if k not in SYSTEM_PARAMS}
        fingerprint = (app_key, params.get("session", ""), params.get("method", ""),
                       *(f"{k}={v}" for k, v in sorted(business.items())))
        ban = self._limit(app_key)
        with self._lock:
            if ban is not None:
                if len(self._refused_last) >= _MAX_REMEMBERED:  # bounded memory under a flood
                    self._refused_last.clear()
                if fingerprint in self._refused_last:
                    self._counters.refused_again += 1
                self._refused_last.add(fingerprint)
            else:
                self._refused_last.discard(fingerprint)
        if ban is not None:
            raise Refused(7, "isp.call-limited", f"This ban will last for {ban} more seconds")
        method = params.get("method", "")
        if method not in METHODS.values() and method not in AUTH_METHODS:
            raise Refused(22, "isv.invalid-method", f"unknown method {method!r}" if method else "missing method")
        session = params.get("session", "")
        shop: str | None = None
        if session:
            shop = platform.shop_for_session(session, now=self.clock())
            if shop is None:
                raise Refused(27, "isv.invalid-session", "the session key is unknown or expired")
        elif method not in _SESSIONLESS:
            raise Refused(27, "isv.missing-session", f"{method} needs the shop's session key")
        asked = business.pop("shop_id", "")
        if asked and asked != shop:
            raise Refused(13, "isv.session-shop-mismatch", f"the session does not authorize shop {asked}")
        return method, shop, business

    def _limit(self, app_key: str) -> int | None:
        qps, burst = self._limit_args
        if qps is None:
            return None
        with self._lock:
            limit = self._limits.get(app_key)
            if limit is None:
                limit = self._limits[app_key] = AppLimit(qps, burst=burst)
        return limit.admit()

    def _prepare(self, method: str, shop: str | None, p: dict[str, str]) -> Callable[[], dict[str, Any]]:
        """The platform call a request asks for, its arguments checked (40/41) but not run yet."""
        platform = self.platform
        if method == METHODS["check"]:
            appkey, scenario = _need(p, "appkey"), _need(p, "scenario")
            return lambda: platform.check_app(appkey, scenario)
        if method == TOKEN_REFRESH:
            refresh_token, now = _need(p, "refresh_token"), self.clock()
            return lambda: platform.token_refresh(refresh_token, now=now)
        if method == TOKEN_CREATE:  # ``uuid`` (optional) pairs the code with its authorization page: not checked here
            code, now = _need(p, "code"), self.clock()
            return lambda: platform.token_create(code, now=now)
        assert shop is not None
        if method == METHODS["get"]:
            return lambda: platform.get(shop)
        if method == METHODS["bind"]:
            scenario, appkey, expected = _need(p, "scenario"), _need(p, "appkey"), p.get("expected_appkey") or None
            return lambda: platform.bind(shop, scenario, appkey, expected)
        if method == METHODS["unbind"]:
            scenario, current = _need(p, "scenario"), _need(p, "expected_appkey")
            return lambda: platform.unbind(shop, scenario, current)
        if method == METHODS["selfservice"]:
            enabled = _bool(p, "enabled", _need(p, "enabled"))
            was = _bool(p, "expected", p["expected"]) if p.get("expected") else None
            return lambda: platform.set_self_service(shop, enabled, was)
        raise AssertionError(method)


def _need(p: dict[str, str], key: str) -> str:
    value = p.get(key, "")
    if not value:
        raise Refused(40, f"isv.missing-parameter:{key}", f"missing required argument {key}")
    return value


def _bool(p: dict[str, str], key: str, value: str) -> bool:
    if value not in ("true", "false"):
        raise Refused(41, f"isv.invalid-parameter:{key}", f"{key} must be true or false")
    return value == "true"


def _length(environ: dict[str, Any]) -> int:
    value = str(environ.get("CONTENT_LENGTH") or "0")
    return int(value) if value.isascii() and value.isdigit() and len(value) < 19 else 0


def _params(environ: dict[str, Any]) -> dict[str, str]:
    """System parameters from the query, business parameters from the form body."""
    try:
        query = parse_qsl(environ.get("QUERY_STRING", ""), keep_blank_values=True, strict_parsing=False,
                          encoding="utf-8", errors="strict")
        length = _length(environ)
        raw = environ["wsgi.input"].read(length) if length > 0 else b""
        ctype = environ.get("CONTENT_TYPE", "")
        if raw and not ctype.startswith("application/x-www-form-urlencoded"):
            raise Refused(41, "isv.invalid-parameter", "the body must be application/x-www-form-urlencoded")
        form = parse_qsl(raw.decode("utf-8"), keep_blank_values=True, encoding="utf-8", errors="strict")
    except (UnicodeDecodeError, ValueError):
        raise Refused(41, "isv.invalid-encoding", "parameters must be UTF-8, form-encoded") from None
    out: dict[str, str] = {}
    for k, v in (*query, *form):
        if k in out and out[k] != v:
            raise Refused(41, "isv.invalid-parameter", f"parameter {k} given twice")
        out[k] = v
    return out


def _error(code: int, sub_code: str, sub_msg: str, request_id: str) -> dict[str, Any]:
    return {"error_response": {"code": code, "msg": MESSAGES.get(code, "Remote service error"),
                               "sub_code": sub_code, "sub_msg": sub_msg, "request_id": request_id}}


def _json(start_response: StartResponse, status: str, body: dict[str, Any]) -> list[bytes]:
    data = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
    start_response(status, [("Content-Type", "application/json;charset=utf-8"), ("Content-Length", str(len(data)))])
    return [data]


# --------------------------------------------------------------------------- running it


class ServerHandle:
    """A gateway served by waitress: ``url``, ``counters()``, ``faults``, ``stop()``."""

    def __init__(self, gateway: Gateway, *, host: str = "127.0.0.1", port: int = 0, threads: int = 16,
                 close_platform: bool = False, limits: ServerLimits | None = None) -> None:
        self.gateway = gateway
        self._close_platform = close_platform
        self._server: Any = make_server(gateway, host=host, port=port, threads=threads, limits=limits)
        self.host = str(self._server.effective_host)
        self.port = int(self._server.effective_port)
        self.url = f"http://{self.host}:{self.port}{GATEWAY_PATH}"
        self._stop = threading.Event()
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def faults(self) -> NetworkFaults:
        return self.gateway.faults

    def counters(self) -> Counters:
        return self.gateway.counters()

    def run(self) -> None:
        """Serve until ``stop()`` (from another thread or a signal handler); then clean up."""
        from waitress import wasyncore  # type: ignore[import-untyped]
        server = self._server
        try:
            while not self._stop.is_set():
                wasyncore.loop(timeout=1.0, use_poll=True, map=server._map, count=1)
        finally:
            for channel in list(server._map.values()):
                if channel is not server:
                    channel.close()
            server.close()
            server.task_dispatcher.shutdown(cancel_pending=True, timeout=5)
            if self._close_platform:
                self.gateway.close()
            self._stopped.set()

    def start(self) -> ServerHandle:
        self._thread = threading.Thread(target=self.run, name=f"sandbox-server-{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving: in-flight stalls end, connections close, worker threads are joined."""
        self.request_stop()
        if self._thread is None:  # never served: just release the socket
            if not self._stopped.is_set():
                self._server.close()
                if self._close_platform:
                    self.gateway.close()
                self._stopped.set()
        elif self._thread is not threading.current_thread():
            self._thread.join(timeout=30)

    def request_stop(self) -> None:
        """Ask ``run()`` to return soon (safe from a signal handler); does not wait."""
        self._stop.set()
        self.gateway.stopping.set()
        if not self._stopped.is_set():
            with contextlib.suppress(OSError):  # the loop closed the trigger meanwhile
                self._server.pull_trigger()

    def __enter__(self) -> ServerHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_server(platform: PlatformSource, *, host: str = "127.0.0.1", port: int = 0, qps: float | None = None,
                 burst: float | None = None, clock: Callable[[], datetime] = utc_now,
                 faults: NetworkFaults | None = None, threads: int = 16,
                 close_platform: bool = False, limits: ServerLimits | None = None) -> tuple[str, ServerHandle]:
    """Serve ``platform`` on a background thread; the socket is listening when this returns.

    Returns ``(url, handle)``; ``handle.stop()`` shuts it down. Port 0 picks a free port.
    """
    gateway = Gateway(platform, qps=qps, burst=burst, clock=clock, faults=faults)
    handle = ServerHandle(gateway, host=host, port=port, threads=threads, close_platform=close_platform,
                          limits=limits).start()
    return handle.url, handle
