"""A hostile platform for tests: a loopback HTTP gateway whose answers each test scripts.

The real client (the ``top`` provider) talks to it like to any TOP gateway; the gateway
signs nothing and checks nothing — it answers what the test says, per method, so a test can
play a platform that lies, nests, trickles or returns garbage.

    with HostileGateway({"erp.binding.get": lambda params: ok("erp.binding.get", {...})}) as gw:
        ... provider url: gw.url ...
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, urlsplit

Answer = tuple[int, bytes]
Script = Callable[[dict[str, str]], Answer]


def ok(method: str, body: Any) -> Answer:
    """A success envelope for ``method`` around ``body``."""
    key = method.replace(".", "_").removeprefix("taobao_") + "_response"
    return 200, json.dumps({key: body}, ensure_ascii=False).encode()


def raw(text: str | bytes, status: int = 200) -> Answer:
    return status, text if isinstance(text, bytes) else text.encode()


class HostileGateway:
    """A scripted gateway on 127.0.0.1 (a free port); ``calls`` counts requests per method."""

    def __init__(self, script: Mapping[str, Script]) -> None:
        self.script = dict(script)
        self.calls: dict[str, int] = {}
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
                status, body = fn(params) if fn else (200, json.dumps(
                    {"error_response": {"code": 22, "msg": "Invalid method", "sub_code": "isv.invalid-method"}}).encode())
                self.send_response(status)
                self.send_header("Content-Type", "application/json;charset=UTF-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/router/rest"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> HostileGateway:
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=10)
