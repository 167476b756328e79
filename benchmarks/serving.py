"""What the HTTP benchmarks share: a `reconciler sandbox serve` process on a free loopback
port, started within a deadline, its `/stats` counters, and a watch on them over time."""

from __future__ import annotations

import json
import os
import re
import selectors
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any


def start_server(root: Path, qps: float, deadline: float, *, db: Path | None = None,
                 latency_ms: float = 0.0) -> tuple[subprocess.Popen[str], str]:
    """``sandbox serve`` for the config dir ``root`` (or the sandbox database ``db``) at ``qps``,
    each request delayed by ``latency_ms``; returns the process and its gateway URL, or exits
    when it does not start before ``deadline``."""
    args = [sys.executable, "-m", "reconciler", "-C", str(root), "sandbox", "serve", "--port", "0", "--qps", f"{qps:g}",
            "--threads", "16", "--latency-ms", f"{latency_ms:g}", *(("--db", str(db)) if db is not None else ())]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert proc.stdout is not None
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        if not sel.select(timeout=max(0.1, deadline - time.monotonic())):
            proc.kill()
            raise SystemExit("the server did not start in time")
    line = proc.stdout.readline()
    m = re.search(r"(http://127\.0\.0\.1:\d+/router/rest)", line)
    if not m:
        proc.kill()
        raise SystemExit(f"unexpected server output: {line!r} {proc.stderr.read() if proc.stderr else ''}")
    return proc, m.group(1)


def stats(url: str) -> dict[str, Any]:
    """The gateway's counters (``GET /stats``)."""
    with urllib.request.urlopen(url.replace("/router/rest", "/stats"), timeout=10) as r:
        data: dict[str, Any] = json.load(r)
    return data


class Watch:
    """Reads the gateway's ``received`` counter every ``every_s`` seconds on a thread, to see
    when requests started and stopped arriving and the busiest second (``/stats`` itself is
    not counted). Use as a context manager around the work."""

    def __init__(self, url: str, every_s: float = 0.05) -> None:
        self.url = url
        self.every_s = every_s
        self.samples: list[tuple[float, int]] = []  # (monotonic time, received)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="stats-watch", daemon=True)

    def __enter__(self) -> Watch:
        self.samples.append((time.monotonic(), int(stats(self.url)["received"])))
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join()
        self.samples.append((time.monotonic(), int(stats(self.url)["received"])))

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            self.samples.append((time.monotonic(), int(stats(self.url)["received"])))

    def window(self) -> tuple[int, float]:
        """Requests received while watched, and the seconds from the first to the last of them
        (each end known to within one interval: the first sample that moved, the first one at
        the final count)."""
        base, final = self.samples[0][1], self.samples[-1][1]
        if final == base:
            return 0, 0.0
        started = next(i for i, (_, n) in enumerate(self.samples) if n > base)
        ended = next(i for i, (_, n) in enumerate(self.samples) if n == final)
        # the first request came between the last sample that had not moved and the next one;
        # the last request between the sample before the final count and the first one at it
        first = (self.samples[started - 1][0] + self.samples[started][0]) / 2
        last = (self.samples[ended - 1][0] + self.samples[ended][0]) / 2
        return final - base, last - first

    def busiest(self, seconds: float = 1.0) -> int:
        """The most requests received in any ``seconds`` between two samples (a sliding window)."""
        best, j = 0, 0
        for i in range(len(self.samples)):
            while self.samples[i][0] - self.samples[j][0] > seconds:
                j += 1
            best = max(best, self.samples[i][1] - self.samples[j][1])
        return best
