"""A hostile platform for tests: a loopback HTTP gateway whose answers each test scripts.

The real client (the ``top`` provider) talks to it like to any TOP gateway; the gateway
signs nothing and checks nothing — it answers what the test says, per method, so a test can
play a platform that lies, nests, trickles or returns garbage.

    with HostileGateway({"erp.binding.get": lambda params: ok("erp.binding.get", {...})}) as gw:
        ... provider url: gw.url ...

An answer is ``(status, body)``, or a ``Reply`` for what goes beyond a body: headers (a
Content-Encoding, a Content-Length that lies), a delay, bytes trickled one at a time
(headers too), an endless body, a dropped connection. ``FakePlatform`` is an honest,
stateful platform to serve, so that a test lies in one place only and can check afterwards
that the platform was left as it was.
"""

from __future__ import annotations

import functools
import gzip
import json
import threading
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, urlsplit


@dataclass(frozen=True)
class Reply:
    """An answer beyond ``(status, body)``: see the module doc."""

    status: int = 200
    body: bytes = b""
    headers: Sequence[tuple[str, str]] = ()
    length: int | None = None        # the Content-Length sent (None: the body's; -1: none, chunked)
    delay_s: float = 0.0             # before anything is sent
    every_s: float = 0.0             # > 0: one byte at a time, this far apart
    trickle_headers: bool = False    # …the status line and headers too
    endless: bytes | None = None     # after the body, this chunk again and again (chunked), until the client leaves
    drop: bool = False               # close the connection without a word


Answer = tuple[int, bytes] | Reply
Script = Callable[[dict[str, str]], Answer]


def gzipped(answer: tuple[int, bytes], *, times: int = 1) -> Reply:
    """``answer`` gzip-encoded (``times`` over, each layer named in Content-Encoding)."""
    status, body = answer
    for _ in range(times):
        body = gzip.compress(body, compresslevel=9)
    return Reply(status, body, headers=[("Content-Encoding", ", ".join(["gzip"] * times))])


@functools.lru_cache(maxsize=4)
def gzip_bomb(size: int) -> Reply:
    """``size`` bytes of zeros (a multiple of 1 MiB), gzip-encoded: 1 GiB is about 1 MiB on the wire.
    Each MiB is deflated after a full flush, so it compresses to the same bytes: built by repetition."""
    block = bytes(1 << 20)
    d = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    segment = d.compress(block) + d.flush(zlib.Z_FULL_FLUSH)
    n = size >> 20
    crc = 0
    for _ in range(n):
        crc = zlib.crc32(block, crc)
    body = (gzip.compress(b"")[:10] + segment * n + zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS).flush()
            + crc.to_bytes(4, "little") + (size & 0xFFFFFFFF).to_bytes(4, "little"))
    return Reply(200, body, headers=[("Content-Encoding", "gzip")])


def ok(method: str, body: Any) -> tuple[int, bytes]:
    """A success envelope for ``method`` around ``body``."""
    key = method.replace(".", "_").removeprefix("taobao_") + "_response"
    return 200, json.dumps({key: body}, ensure_ascii=False).encode()


def raw(text: str | bytes, status: int = 200) -> tuple[int, bytes]:
    return status, text if isinstance(text, bytes) else text.encode()


def refused(code: int, sub_code: str = "", sub_msg: str = "", msg: str = "refused") -> tuple[int, bytes]:
    return 200, json.dumps({"error_response": {"code": code, "msg": msg, "sub_code": sub_code, "sub_msg": sub_msg}}).encode()


Lie = Callable[[dict[str, str], tuple[int, bytes]], Answer]


class FakePlatform:
    """An honest platform with bindings (compare-and-set writes, revisions) for the gateway to
    serve; ``scripts(lies)`` answers every method, each lie turning (params, honest answer)
    into what is sent instead — after the honest write happened."""

    def __init__(self, shops: Mapping[str, Mapping[str, str]], apps: Iterable[str] = ()) -> None:
        self.bindings = {shop: dict(b) for shop, b in shops.items()}
        self.revisions = {(shop, sc): 1 for shop, b in shops.items() for sc in b}
        self.self_service = dict.fromkeys(shops, False)
        self.apps = set(apps)
        self._lock = threading.Lock()

    def snapshot(self) -> dict[str, dict[str, str]]:
        with self._lock:
            return {shop: dict(b) for shop, b in self.bindings.items()}

    def get(self, p: dict[str, str]) -> tuple[int, bytes]:
        shop = p["shop_id"]
        with self._lock:
            bound = [{"scenario": sc, "appkey": k, "revision": self.revisions[(shop, sc)]}
                     for sc, k in sorted(self.bindings[shop].items())]
            return ok("erp.binding.get", {"shop_id": shop, "shop_name": f"店 {shop}", "bindings": bound,
                                          "buyer_self_service": self.self_service[shop], "detail_whitelisted": False})

    def check(self, p: dict[str, str]) -> tuple[int, bytes]:
        known = p["appkey"] in self.apps
        return ok("erp.app.check", {"exists": known, "integrated": known, "name": "ERP" if known else None,
                                    "detail_whitelisted": False, "syncs_order_status": True})

    def bind(self, p: dict[str, str]) -> tuple[int, bytes]:
        shop, sc = p["shop_id"], p["scenario"]
        with self._lock:
            if self.bindings[shop].get(sc) != (p.get("expected_appkey") or None):
                return refused(15, "isv.binding-conflict", f"{sc} is {self.bindings[shop].get(sc)}")
            self.bindings[shop][sc] = p["appkey"]
            rev = self.revisions[(shop, sc)] = self.revisions.get((shop, sc), 0) + 1
        return ok("erp.binding.bind", {"scenario": sc, "appkey": p["appkey"], "revision": rev})

    def unbind(self, p: dict[str, str]) -> tuple[int, bytes]:
        shop, sc = p["shop_id"], p["scenario"]
        with self._lock:
            if self.bindings[shop].get(sc) != p.get("expected_appkey"):
                return refused(15, "isv.binding-conflict", f"{sc} is {self.bindings[shop].get(sc)}")
            del self.bindings[shop][sc]
            rev = self.revisions[(shop, sc)] = self.revisions[(shop, sc)] + 1
        return ok("erp.binding.unbind", {"scenario": sc, "revision": rev})

    def selfservice(self, p: dict[str, str]) -> tuple[int, bytes]:
        shop = p["shop_id"]
        with self._lock:
            if p.get("expected") and self.self_service[shop] != (p["expected"] == "true"):
                return refused(15, "isv.binding-conflict", "buyer_self_service differs")
            self.self_service[shop] = p["enabled"] == "true"
        return ok("erp.selfservice.set", {"buyer_self_service": p["enabled"] == "true"})

    def scripts(self, lies: Mapping[str, Lie] | None = None) -> dict[str, Script]:
        honest: dict[str, Callable[[dict[str, str]], tuple[int, bytes]]] = {
            "erp.binding.get": self.get, "erp.app.check": self.check, "erp.binding.bind": self.bind,
            "erp.binding.unbind": self.unbind, "erp.selfservice.set": self.selfservice}
        out: dict[str, Script] = {}
        for method, fn in honest.items():
            lie = (lies or {}).get(method)
            out[method] = fn if lie is None else (lambda p, fn=fn, lie=lie: lie(p, fn(p)))
        return out


class HostileGateway:
    """A scripted gateway on 127.0.0.1 (a free port); ``calls`` counts requests per method."""

    def __init__(self, script: Mapping[str, Script]) -> None:
        self.script = dict(script)
        self.calls: dict[str, int] = {}
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

            def do_POST(self) -> None:
                query = dict(parse_qsl(urlsplit(self.path).query))
                length = min(int(self.headers.get("Content-Length") or 0), 1 << 20)
                form = dict(parse_qsl(self.rfile.read(length).decode("utf-8", "replace")))
                params = {**query, **form}
                method = params.get("method", "")
                with gateway._lock:
                    gateway.calls[method] = gateway.calls.get(method, 0) + 1
                fn = gateway.script.get(method)
                answer = fn(params) if fn else refused(22, "isv.invalid-method", msg="Invalid method")
                reply = answer if isinstance(answer, Reply) else Reply(*answer)
                try:
                    self._send(reply)
                except OSError:  # the client left (what a client facing a hostile gateway should do)
                    self.close_connection = True

            def _send(self, r: Reply) -> None:
                if r.delay_s and gateway.stopping.wait(r.delay_s):
                    return
                if r.drop:
                    self.close_connection = True
                    return
                length = len(r.body) if r.length is None else r.length
                head = [f"HTTP/1.1 {r.status} X", "Connection: close", "Content-Type: application/json;charset=UTF-8",
                        *(f"{k}: {v}" for k, v in r.headers),
                        "Transfer-Encoding: chunked" if length < 0 or r.endless is not None else f"Content-Length: {length}"]
                chunked = length < 0 or r.endless is not None
                body = (f"{len(r.body):x}\r\n".encode() + r.body + b"\r\n" if r.body else b"") if chunked else r.body
                self._out(("\r\n".join(head) + "\r\n\r\n").encode(), r.every_s if r.trickle_headers else 0)
                self._out(body, r.every_s)
                while r.endless is not None and not gateway.stopping.is_set():
                    self._out(f"{len(r.endless):x}\r\n".encode() + r.endless + b"\r\n", r.every_s)
                if chunked:
                    self._out(b"0\r\n\r\n", 0)

            def _out(self, data: bytes, every_s: float) -> None:
                if every_s <= 0:
                    self.wfile.write(data)
                    self.wfile.flush()
                    return
                for i in range(len(data)):
                    if gateway.stopping.wait(every_s):
                        raise ConnectionAbortedError("the gateway stops")
                    self.wfile.write(data[i:i + 1])
                    self.wfile.flush()

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: Any, client_address: Any) -> None:  # a client that left: not news
                pass

        self.server = Server(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/router/rest"
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self) -> HostileGateway:
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stopping.set()
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=10)
