"""What the HTTP benchmarks share: a `reconciler sandbox serve` process on a free loopback
port, started within a deadline, and its `/stats` counters."""

from __future__ import annotations

import json
import os
import re
import selectors
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any


def start_server(root: Path, qps: float, deadline: float, *, db: Path | None = None) -> tuple[subprocess.Popen[str], str]:
    """``sandbox serve`` for the config dir ``root`` (or the sandbox database ``db``) at ``qps``;
    returns the process and its gateway URL, or exits when it does not start before ``deadline``."""
    args = [sys.executable, "-m", "reconciler", "-C", str(root), "sandbox", "serve", "--port", "0", "--qps", f"{qps:g}",
            "--threads", "16", *(("--db", str(db)) if db is not None else ())]
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
