"""Helpers of the shared-state tests that run ``reconciler`` as real processes: the console
command itself (separate interpreters, so locks, pids and SIGKILL are real), a world of shops
rotating between two ERPs, the sandbox's per-binding revisions, and bounded waiting.

Nothing here sleeps to wait for something: ``wait_for`` polls a condition with a hard bound,
and processes are waited for with timeouts.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
import yaml
from click.testing import CliRunner, Result
from conftest import APP_SECRET, SECRET_ENV, SETTINGS, Agency

from reconciler.cli import main
from reconciler.platform import SandboxPlatform
from reconciler.sandbox_server import NetworkFaults

OLD, NEW = "31415926", "21345678"  # 自研ERP (inhouse) and 聚水潭 (jushuitan): both integrate every scenario
ERP_OF = {OLD: "inhouse", NEW: "jushuitan"}
ALL = ("intercept_shipment", "modify_address", "order_status")
WRITES = ("applied", "rolled-back")  # outcomes of rows that wrote to the platform (recovered writes are "applied")
_T = TypeVar("_T")


def command() -> list[str]:
    """The installed console script (beside this interpreter), else ``python -m reconciler``."""
    script = Path(sys.executable).with_name("reconciler")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "reconciler"]


def cli_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a reconciler process: this one's minus every RECONCILER_* setting,
    plus the app secret, a fixed actor and no colour."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECONCILER_")}
    env.update({SECRET_ENV: APP_SECRET, "RECONCILER_ACTOR": "tester", "NO_COLOR": "1", "PYTHONUNBUFFERED": "1"})
    env.update(extra or {})
    return env


@dataclass(frozen=True)
class Done:
    """A finished process: exit code (negative: killed by that signal), stdout, stderr."""

    code: int
    out: str
    err: str
    pid: int

    @property
    def text(self) -> str:
        return self.out + self.err


class Proc:
    """A ``reconciler`` process whose output goes to files (no pipe can fill up and block it)."""

    def __init__(self, config_dir: Path, *args: str, env: Mapping[str, str] | None = None, logs: Path,
                 name: str, host: str | None = None) -> None:
        """``host``: run as if on another machine (``socket.gethostname()`` answers it)."""
        logs.mkdir(parents=True, exist_ok=True)
        self.name = name
        self._out_path = logs / f"{name}.out"
        self._err_path = logs / f"{name}.err"
        self.args = args
        cmd = command() if host is None else [
            sys.executable, "-c", f"import socket; socket.gethostname = lambda: {host!r}; from reconciler.cli import main;"
                                  " main(prog_name='reconciler')"]
        with self._out_path.open("wb") as out, self._err_path.open("wb") as err:
            self.popen = subprocess.Popen([*cmd, "-C", str(config_dir), *args], stdin=subprocess.DEVNULL, stdout=out,
                                          stderr=err, env=cli_env(env))
        self.started = time.monotonic()
        _STARTED.append(self)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def err_so_far(self) -> str:
        """What it has written to stderr until now (unbuffered)."""
        return self._err_path.read_text(encoding="utf-8", errors="replace")

    def _done(self) -> Done:
        return Done(self.popen.returncode, self._out_path.read_text(encoding="utf-8"),
                    self._err_path.read_text(encoding="utf-8"), self.popen.pid)

    def finish(self, timeout: float = 60) -> Done:
        try:
            self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(timeout=30)
            raise AssertionError(f"{self.name} ({' '.join(self.args)}) did not end within {timeout}s:\n"
                                 f"{self._done().text}") from None
        return self._done()

    def kill(self) -> Done:
        """SIGKILL (nothing runs after it: no finally, no atexit) and reap."""
        if self.popen.poll() is None:
            os.kill(self.popen.pid, signal.SIGKILL)
        self.popen.wait(timeout=30)
        return self._done()


_STARTED: list[Proc] = []


def reap() -> None:
    """Kill and wait for every process a test started and left running (a failed test), so
    none outlives it: a Popen collected later would warn (an error) in another test."""
    while _STARTED:
        p = _STARTED.pop()
        if p.popen.poll() is None:
            p.popen.kill()
        p.popen.wait(timeout=30)


def run(config_dir: Path, *args: str, env: Mapping[str, str] | None = None, timeout: float = 60) -> Done:
    """Run ``reconciler -C config_dir ARGS`` to its end."""
    p = subprocess.run([*command(), "-C", str(config_dir), *args], stdin=subprocess.DEVNULL, capture_output=True,
                       text=True, env=cli_env(env), timeout=timeout, check=False)
    return Done(p.returncode, p.stdout, p.stderr, 0)


def in_process(config_dir: Path, *args: str, env: Mapping[str, str] | None = None) -> Result:
    """``reconciler -C config_dir ARGS`` in this process (read-only commands, quick checks)."""
    return CliRunner().invoke(main, ["-C", str(config_dir), *args], env={SECRET_ENV: APP_SECRET, **(env or {})},
                              catch_exceptions=False)


def wait_for(cond: Callable[[], _T], *, timeout: float, what: str, every: float = 0.01) -> _T:
    """Poll ``cond`` until it gives a true value; AssertionError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(every)


# ---------------------------------------------------------------------- a gateway that holds writes


class Gate:
    """Holds the platform's binds of chosen shops until ``open()``: a run that reaches one is
    provably mid-apply (holding its locks) for as long as the test needs, with no timing guess."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._shops: frozenset[str] = frozenset()
        self._open = True
        self.arrived: list[str] = []

    def close(self, shops: Iterable[str]) -> None:
        with self._cond:
            self._shops = frozenset(shops)
            self._open = False

    def open(self) -> None:
        with self._cond:
            self._open = True
            self._cond.notify_all()

    def passing(self, shop: str) -> None:
        """Called by the platform before a bind: waits while the gate holds this shop (60 s at most)."""
        with self._cond:
            if self._open or shop not in self._shops:
                return
            self.arrived.append(shop)
            self._cond.notify_all()
            self._cond.wait_for(lambda: self._open, timeout=60)

    def wait_arrived(self, timeout: float = 30) -> None:
        with self._cond:
            if not self._cond.wait_for(lambda: bool(self.arrived), timeout=timeout):
                raise AssertionError(f"no bind reached the gate within {timeout}s")


class _GatedPlatform(SandboxPlatform):
    def __init__(self, path: Path, gate: Gate) -> None:
        super().__init__(path)
        self._gate = gate

    def bind(self, shop: str, scenario: str, appkey: str, expected: str | None) -> dict[str, Any]:
        self._gate.passing(shop)
        return super().bind(shop, scenario, appkey, expected)


class GatedAgency(Agency):
    """An agency on the top provider whose gateway adds ``latency_s`` to every request and
    holds binds at ``gate``. The client's timeout is long enough for a held bind."""

    def __init__(self, root: Path, *, latency_s: float = 0.0) -> None:
        self.gate = Gate()
        super().__init__(root, "top", top_options={"timeout_s": 60},
                         server_options={"faults": NetworkFaults(latency_s=latency_s)})

    def _open_db(self) -> SandboxPlatform:
        return _GatedPlatform(self.db, self.gate)

    def close(self) -> None:
        self.gate.open()
        super().close()


# ---------------------------------------------------------------------- the agency's files


def shop_ids(n: int, first: int = 100001) -> list[str]:
    return [str(first + i) for i in range(n)]


def shops_yaml(ids: Iterable[str], erp: str) -> str:
    """Shops managing all three scenarios on ``erp``."""
    return "shops:\n" + "".join(
        f'  - id: "{s}"\n    erp: {erp}\n    scenarios: {{intercept_shipment: {{}}, modify_address: {{}}, order_status: {{}}}}\n'
        for s in ids)


def world_shops(ids: Iterable[str], appkey: str) -> dict[str, Any]:
    return {s: {"bindings": dict.fromkeys(ALL, appkey)} for s in ids}


def settings(*, state_url: str | None = None, lease_s: float | None = None, extra: str = "") -> str:
    """reconciler.yaml: the conftest defaults (no retry pauses), no safety threshold (a rotation
    of every shop is what these tests do), and the state store."""
    state: dict[str, Any] = {}
    if state_url is not None:
        state["url"] = state_url
    if lease_s is not None:
        state["lock_lease_s"] = lease_s
    text = SETTINGS + "safety: {max_change_share: 1.0}\n" + extra
    if state:
        text += "state: " + yaml.safe_dump(state, default_flow_style=True, width=10_000)
    return text


def rotating_agency(agency: Agency, ids: Sequence[str], *, state_url: str | None = None, lease_s: float | None = None) -> None:
    """Every shop bound to OLD on all three scenarios; the config wants NEW; the world loaded."""
    agency.write("reconciler.yaml", settings(state_url=state_url, lease_s=lease_s))
    agency.shops(shops_yaml(ids, ERP_OF[NEW]))
    agency.world(world_shops(ids, OLD))
    agency.platform().close()  # the world is loaded into the sandbox database now


# ---------------------------------------------------------------------- the platform's side


def revisions(db: Path) -> dict[tuple[str, str], tuple[str | None, int]]:
    """The sandbox's bindings, unbound ones included: (shop, scenario) → (appkey, revision).
    A world's binding starts at revision 1, a new one at 0; every write adds one."""
    con = sqlite3.connect(db, timeout=30)
    try:
        return {(s, sc): (k, r) for s, sc, k, r in con.execute("SELECT shop_id, scenario, appkey, revision FROM bindings")}
    finally:
        con.close()


def split_shops(db: Path) -> dict[str, set[str | None]]:
    """Shops whose scenarios are bound to more than one appkey (left between two ERPs)."""
    by_shop: dict[str, set[str | None]] = {}
    for (shop, _), (key, _) in revisions(db).items():
        by_shop.setdefault(shop, set()).add(key)
    return {s: keys for s, keys in by_shop.items() if len(keys) > 1}


# ---------------------------------------------------------------------- the state store's side


def sql_engine(url: str) -> sa.Engine:
    return sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))


def history_json(agency: Agency, *, env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """``reconciler history --format json`` (in this process: a read-only command, and 20 times
    faster than starting an interpreter)."""
    r = agency.run("history", "--format", "json", env=dict(env or {}))
    assert r.exit_code == 0, r.output
    data: dict[str, Any] = json.loads(r.stdout)
    return data


def write_rows(entries: Iterable[Mapping[str, Any]]) -> dict[tuple[str, str], int]:
    """(shop, scenario) → the history rows that say the platform was written."""
    out: dict[tuple[str, str], int] = {}
    for e in entries:
        if e["outcome"] in WRITES and e["action"] != "update":
            key = (e["shop"], e["scenario"])
            out[key] = out.get(key, 0) + 1
    return out
