"""drift --notify URL: a short summary POSTed to a webhook in the shape its receiver expects,
tested against a real HTTP receiver on 127.0.0.1. A notification that cannot be delivered
is a warning: drift's report and exit code stay what the audit found."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from conftest import Agency

from reconciler.drift import DriftReport, Finding
from reconciler.model import Scenario
from reconciler.notify import NOTIFY_FORMATS, payload, send, summarize
from reconciler.vocab import Category, FindingKind

TOKEN = "0123456789abcdef-robot-token"
EVIL = "[click me](http://evil.example) <@everyone> **x**"
SHOPS = f"""\
shops:
  - id: "100001"
    name: {EVIL!r}
    erp: jushuitan
    scenarios: {{intercept_shipment: {{}}}}
  - id: "100002"
    name: 二号店
    erp: jushuitan
    scenarios: {{intercept_shipment: {{}}}}
"""


class Receiver:
    """A webhook on 127.0.0.1 that records every POST and answers as told."""

    def __init__(self) -> None:
        self.received: list[tuple[str, dict[str, str], Any]] = []
        self.status = 200
        self.answer: bytes = b'{"errcode": 0, "errmsg": "ok"}'
        self.delay_s = 0.0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                receiver.received.append((self.path, dict(self.headers), json.loads(body)))
                if receiver.delay_s:
                    threading.Event().wait(receiver.delay_s)
                try:
                    self.send_response(receiver.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(receiver.answer)))
                    self.end_headers()
                    self.wfile.write(receiver.answer)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up waiting (the slow-receiver test)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/robot/send?access_token={TOKEN}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    try:
        yield r
    finally:
        r.stop()


def drifted(agency: Agency) -> None:
    agency.shops(SHOPS)
    agency.world({"100001": {"name": EVIL, "bindings": {"intercept_shipment": "12345679"}}, "100002": {}})


def assert_shape(fmt: str, body: dict[str, Any]) -> str:
    """The receiver's required keys; returns the message text."""
    if fmt == "dingtalk":
        assert body["msgtype"] == "markdown" and set(body["markdown"]) == {"title", "text"}
        return str(body["markdown"]["text"])
    if fmt == "wecom":
        assert body["msgtype"] == "markdown" and set(body["markdown"]) == {"content"}
        return str(body["markdown"]["content"])
    if fmt == "feishu":
        post = body["content"]["post"]["zh_cn"]
        assert body["msg_type"] == "post" and post["title"].startswith("reconciler drift")
        return json.dumps(post["content"], ensure_ascii=False)
    if fmt == "slack":
        assert isinstance(body["text"], str) and body["blocks"][0]["type"] == "section"
        return str(body["blocks"][0]["text"]["text"])
    assert body["format_version"] == 1 and body["status"] == "drift"
    assert body["summary"]["drift"] == 2 and body["summary"]["shops"] == 2
    assert set(body) == {"format_version", "title", "text", "status", "shard", "summary", "worst", "more", "report_url"}
    return str(body["text"])


@pytest.mark.parametrize("fmt", NOTIFY_FORMATS)
def test_each_payload_shape_reaches_a_loopback_receiver(agency: Agency, receiver: Receiver, fmt: str) -> None:
    drifted(agency)
    r = agency.run("drift", "--notify", receiver.url, "--notify-format", fmt,
                   "--report-url", "https://ci.example/runs/42")
    assert r.exit_code == 2, r.output                        # the audit's result, as without --notify
    assert len(receiver.received) == 1
    path, headers, body = receiver.received[0]
    assert path == f"/robot/send?access_token={TOKEN}" and headers["Content-Type"] == "application/json"
    text = assert_shape(fmt, body)
    assert "reconciler drift" in json.dumps(body, ensure_ascii=False)
    assert "2 of 2 shops with findings: 2 drifted, 0 cannot work" in text
    assert "shop 100001" in text and "intercept_shipment" in text
    assert "https://ci.example/runs/42" in json.dumps(body)
    assert f"Notified http://127.0.0.1:{receiver.server.server_address[1]} ({fmt})." in r.stderr
    assert TOKEN not in r.output                              # the robot's token is never printed


def test_markdown_shapes_escape_merchant_names() -> None:
    report = DriftReport(shops=("1",), findings=(
        Finding("1", Scenario.intercept_shipment, Category.drift, FindingKind.differs, "x"),), shop_names={"1": EVIL})
    s = summarize(report)
    for fmt in NOTIFY_FORMATS:
        text = json.dumps(payload(fmt, s), ensure_ascii=False)
        assert "[click me](http" not in text and "<@everyone>" not in text and "**x**" not in text, fmt
        assert "shop 1 ［click me］（http://evil.example） ‹＠everyone› ＊＊x＊＊: intercept_shipment differs" in text, fmt


def test_receiver_down_warns_and_keeps_the_exit_code(agency: Agency) -> None:
    drifted(agency)
    with socket.socket() as s:          # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    r = agency.run("drift", "--format", "json", "--notify", f"http://127.0.0.1:{port}/hook?key={TOKEN}")
    assert r.exit_code == 2, r.output
    assert json.loads(r.stdout)["status"] == "drift"          # the report is complete and unchanged
    assert r.stderr.startswith(f"Warning: could not notify http://127.0.0.1:{port}: ConnectError")
    assert r.stderr.rstrip().endswith("; the audit's result stands")
    assert TOKEN not in r.output


@pytest.mark.parametrize(("status", "answer", "why"), [
    (500, b"boom", "HTTP 500: boom"),
    (200, b'{"errcode": 310000, "errmsg": "keywords not in content"}', "errcode 310000: keywords not in content"),
    (200, b'{"code": 19021, "msg": "sign match fail"}', "code 19021: sign match fail"),
])
def test_a_refused_notification_warns_and_keeps_the_exit_code(agency: Agency, receiver: Receiver, status: int,
                                                               answer: bytes, why: str) -> None:
    drifted(agency)
    receiver.status, receiver.answer = status, answer
    r = agency.run("drift", "--notify", receiver.url, "--notify-format", "dingtalk")
    assert r.exit_code == 2, r.output
    assert len(receiver.received) == 1
    assert why in r.stderr and r.stderr.startswith("Warning: could not notify http://127.0.0.1:")


def test_a_slow_receiver_is_given_up_on() -> None:
    r = Receiver()
    r.delay_s = 3
    try:
        why = send(r.url, {"text": "x"}, timeout_s=0.5)
    finally:
        r.stop()
    assert why is not None and why.endswith("no answer within 0.5s")


def test_not_an_http_url_is_a_warning_not_an_error(agency: Agency) -> None:
    drifted(agency)
    r = agency.run("drift", "--notify", "file:///etc/passwd")
    assert r.exit_code == 2
    assert "Warning: could not notify file://?: not an http(s) URL" in r.stderr


def test_clean_audits_notify_only_when_asked(agency: Agency, receiver: Receiver) -> None:
    agency.shops(SHOPS)
    agency.world({"100001": {"bindings": {"intercept_shipment": "21345678"}},
                  "100002": {"bindings": {"intercept_shipment": "21345678"}}})
    r = agency.run("drift", "--notify", receiver.url)
    assert r.exit_code == 0, r.output
    assert receiver.received == []                            # default --notify-on findings
    r = agency.run("drift", "--notify", receiver.url, "--notify-on", "always", env={"RECONCILER_NOTIFY_URL": ""})
    assert r.exit_code == 0, r.output
    assert [b["status"] for _, _, b in receiver.received] == ["clean"]
    r = agency.run("drift", "--notify-on", "always", env={"RECONCILER_NOTIFY_URL": receiver.url})
    assert r.exit_code == 0 and len(receiver.received) == 2    # the URL from the environment (a CI secret)
