"""A real browser for the HTML report's tests: Debian's headless Chromium, driven through the
Chrome DevTools Protocol over ``--remote-debugging-pipe`` (no port, no extra package, no
browser download).

The pipe protocol: Chromium reads JSON commands on its fd 3 and writes answers and events
on its fd 4, each message ended by a NUL byte. ``Browser`` starts a fresh Chromium (its own
empty profile directory, nothing phoning home), opens one page, and offers the few calls
the tests need: open a file, evaluate JavaScript, type, take a screenshot, and the page's
console errors, uncaught exceptions and network requests.

    with Browser.start(tmp_path / "profile") as b:
        b.open(page)                       # a file path; waits for the load event
        b.eval("document.title")
        b.type_into("#q", "acme")
        b.screenshot(tmp_path / "page.png")
        assert b.errors() == []

Chromium missing: ``find_chromium`` raises ``BrowserNotFound`` with what to install
(``apt-get install chromium``; ``.ci/run`` does it when missing).
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import select
import shutil
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import Any

NO_BROWSER_ENV = "RECONCILER_TEST_NO_BROWSER"
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-extensions", "--disable-default-apps", "--no-default-browser-check", "--mute-audio",
         "--disable-dev-shm-usage", "--hide-scrollbars", "--remote-debugging-pipe")


class BrowserNotFound(RuntimeError):
    pass


class BrowserError(RuntimeError):
    pass


def find_chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    raise BrowserNotFound("Chromium is not installed (Debian: apt-get install chromium)")


def _high(fds: tuple[int, int]) -> tuple[int, int]:
    """The pipe's ends moved above fd 9, so putting them on fds 3 and 4 never overwrites one with the other."""
    out = tuple(fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10) for fd in fds)
    for fd in fds:
        os.close(fd)
    return out[0], out[1]


class Browser:
    """One headless Chromium with one page (a flattened CDP session)."""

    def __init__(self, proc: subprocess.Popen[bytes], to_browser: int, from_browser: int) -> None:
        self.proc = proc
        self._out = to_browser
        self._in = from_browser
        self._buf = b""
        self._next = 0
        self.events: list[dict[str, Any]] = []
        self.session = ""

    # ------------------------------------------------------------------ life

    @classmethod
    def start(cls, profile: Path, *, width: int = 1280, height: int = 900, timeout_s: float = 30) -> Browser:
        """A fresh Chromium with an empty profile in ``profile``, and its page."""
        exe = find_chromium()
        profile.mkdir(parents=True, exist_ok=True)
        cmd_r, cmd_w = _high(os.pipe())     # we write commands, Chromium reads them on fd 3
        ans_r, ans_w = _high(os.pipe())     # Chromium writes on fd 4, we read
        args = [exe, *FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}", "about:blank"]
        # bash (dash takes single-digit fds only) puts our pipe ends on fds 3 and 4, then becomes Chromium.
        with open(profile / "chromium.log", "wb") as log:
            proc = subprocess.Popen(["bash", "-c", f'exec "$@" 3<&{cmd_r} 4>&{ans_w}', "bash", *args],
                                    pass_fds=(cmd_r, ans_w), stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        os.close(cmd_r)
        os.close(ans_w)
        b = cls(proc, cmd_w, ans_r)
        try:
            target = b.call("Target.createTarget", {"url": "about:blank"}, timeout_s=timeout_s)["targetId"]
            b.session = b.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
            for domain in ("Page", "Runtime", "Log", "Network"):
                b.call(f"{domain}.enable", session=True)
            b.call("Emulation.setDeviceMetricsOverride", {"width": width, "height": height, "deviceScaleFactor": 1,
                                                           "mobile": False}, session=True)
        except BaseException:
            b.close()
            raise
        return b

    def close(self) -> None:
        try:
            if self.proc.poll() is None:
                with contextlib.suppress(BrowserError, OSError):
                    self.call("Browser.close", timeout_s=5)
                try:
                    self.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(timeout=10)
        finally:
            for fd in (self._out, self._in):
                with contextlib.suppress(OSError):
                    os.close(fd)

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    # ------------------------------------------------------------------ protocol

    def _read(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BrowserError("Chromium did not answer in time")
            ready, _, _ = select.select([self._in], [], [], left)
            if ready:
                chunk = os.read(self._in, 1 << 20)
                if not chunk:
                    raise BrowserError(f"Chromium closed the pipe (exit code {self.proc.poll()})")
                self._buf += chunk
        raw, self._buf = self._buf.split(b"\0", 1)
        message: dict[str, Any] = json.loads(raw)
        return message

    def call(self, method: str, params: dict[str, Any] | None = None, *, session: bool = False,
             timeout_s: float = 30) -> dict[str, Any]:
        """Send one command and wait for its answer (events that arrive meanwhile are kept)."""
        self._next += 1
        message: dict[str, Any] = {"id": self._next, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = self.session
        os.write(self._out, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout_s
        while True:
            m = self._read(deadline)
            if m.get("id") == self._next:
                if "error" in m:
                    raise BrowserError(f"{method}: {m['error']}")
                result: dict[str, Any] = m.get("result", {})
                return result
            if "method" in m:
                self.events.append(m)

    def wait_for(self, event: str, *, timeout_s: float = 30) -> dict[str, Any]:
        """The first event of this name not yet waited for."""
        deadline = time.monotonic() + timeout_s
        while True:
            for i, e in enumerate(self.events):
                if e.get("method") == event and not e.get("_seen"):
                    self.events[i] = {**e, "_seen": True}
                    return e
            m = self._read(deadline)
            if "method" in m:
                self.events.append(m)

    # ------------------------------------------------------------------ the page

    def open(self, path: Path, *, timeout_s: float = 30) -> float:
        """Load a local file; the seconds until its load event."""
        start = time.monotonic()
        answer = self.call("Page.navigate", {"url": path.resolve().as_uri()}, session=True, timeout_s=timeout_s)
        if answer.get("errorText"):
            raise BrowserError(f"cannot open {path}: {answer['errorText']}")
        self.wait_for("Page.loadEventFired", timeout_s=timeout_s)
        return time.monotonic() - start

    def eval(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (JSON-able values)."""
        r = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True},
                      session=True)
        if "exceptionDetails" in r:
            raise BrowserError(f"{expression}: {r['exceptionDetails']}")
        return r["result"].get("value")

    def type_into(self, selector: str, text: str) -> None:
        """Focus a field and type, as a person would (input events fire)."""
        self.eval(f"document.querySelector({json.dumps(selector)}).focus()")
        self.call("Input.insertText", {"text": text}, session=True)

    def clear(self, selector: str) -> None:
        self.eval(f"(() => {{ const e = document.querySelector({json.dumps(selector)}); e.value = '';"
                  " e.dispatchEvent(new Event('input')); })()")

    def resize(self, width: int, height: int, *, mobile: bool = False) -> None:
        self.call("Emulation.setDeviceMetricsOverride", {"width": width, "height": height,
                                                         "deviceScaleFactor": 2 if mobile else 1, "mobile": mobile},
                  session=True)

    def screenshot(self, path: Path, *, full_page: bool = False) -> bytes:
        params: dict[str, Any] = {"format": "png"}
        if full_page:
            params["captureBeyondViewport"] = True
        data = base64.b64decode(self.call("Page.captureScreenshot", params, session=True)["data"])
        path.write_bytes(data)
        return data

    def errors(self) -> list[str]:
        """Console errors, uncaught exceptions and browser log errors (CSP violations among them)."""
        out = []
        for e in self.events:
            p = e.get("params", {})
            if e["method"] == "Runtime.exceptionThrown":
                out.append(f"exception: {p.get('exceptionDetails', {}).get('text')}")
            elif e["method"] == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                out.append(f"console.{p['type']}: {[a.get('value') for a in p.get('args', [])]}")
            elif e["method"] == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
                out.append(f"log: {p['entry'].get('text')}")
        return out

    def requests(self) -> list[str]:
        """Every URL the page requested."""
        return [e["params"]["request"]["url"] for e in self.events if e["method"] == "Network.requestWillBeSent"]
