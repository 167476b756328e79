"""CLI edges from outside that used to end in tracebacks or hangs: each is exit 1 with one
clear line, promptly, and nothing changed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import Agency

WORLD = {"100001": {"bindings": {}}}
SHOPS = """\
shops:
  - id: "100001"
    erp: jushuitan
    scenarios: {intercept_shipment: {}}
"""


def _cli(agency: Agency, *args: str) -> subprocess.CompletedProcess[str]:
    """A real process, with a timeout: a hang is a failure, not a stuck test run."""
    agency.platform().close()  # the world loaded, as the first in-process command would
    return subprocess.run([sys.executable, "-m", "reconciler", "-C", str(agency.dir), *args], capture_output=True,
                          text=True, timeout=30, stdin=subprocess.DEVNULL)


def _plan_file(tmp_path: Path, name: str, content: str | bytes) -> Path:
    p = tmp_path / name
    p.write_bytes(content if isinstance(content, bytes) else content.encode())
    return p


@pytest.mark.parametrize("make, message", [
    pytest.param(lambda t: Path("/dev/zero"), "/dev/zero: the plan file is not a regular file", id="dev-zero"),
    pytest.param(lambda t: (os.mkfifo(t / "fifo"), t / "fifo")[1], "fifo: the plan file is not a regular file", id="fifo"),
    pytest.param(lambda t: _plan_file(t, "deep.json", "[" * 100_000), "not a saved plan (RecursionError", id="deep-json"),
    pytest.param(lambda t: _plan_file(t, "deep-obj.json", '{"a":' * 50_000), "not a saved plan", id="deep-object"),
    pytest.param(lambda t: _plan_file(t, "huge-int.json", '{"format_version": ' + "9" * 5000 + "}"),
                 "not a saved plan (ValueError", id="5000-digit-integer"),
    pytest.param(lambda t: _plan_file(t, "nan.json", '{"format_version": NaN}'), "NaN is not a number", id="NaN"),
    pytest.param(lambda t: _plan_file(t, "latin1.json", b'{"x": "\xe9"}'), "not UTF-8", id="not-utf8"),
])
def test_hostile_plan_files_are_refused_promptly(agency: Agency, tmp_path: Path, make, message: str) -> None:  # type: ignore[no-untyped-def]
    agency.shops(SHOPS)
    agency.world(WORLD)
    r = _cli(agency, "apply", str(make(tmp_path)))
    assert r.returncode == 1, r.stderr
    assert message in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert agency.bindings("100001") == {}


@pytest.mark.parametrize("since", ["99999999999d", "99999999999w", "0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"])
def test_history_since_extremes(agency: Agency, since: str) -> None:
    agency.shops(SHOPS)
    agency.world(WORLD)
    assert _cli(agency, "apply", "--auto-approve").returncode == 0
    r = _cli(agency, "history", "--since", since)
    assert r.returncode in (0, 1) and "Traceback" not in r.stderr, r.stderr
    if r.returncode == 0:
        assert ("applied" in r.stdout) == (not since.startswith("9999-"))


@pytest.mark.parametrize("limit", ["1" + "0" * 30, "0", "-1", "1e3"])
def test_history_limit_out_of_range_is_a_usage_error(agency: Agency, limit: str) -> None:
    agency.shops(SHOPS)
    r = _cli(agency, "history", "--limit", limit)
    assert r.returncode == 1 and "Traceback" not in r.stderr


@pytest.mark.parametrize("out", ["/proc/no/such/plan.json", "/dev/null/plan.json"])
def test_plan_out_where_no_file_can_be(agency: Agency, out: str) -> None:
    agency.shops(SHOPS)
    agency.world(WORLD)
    r = _cli(agency, "plan", "--out", out)
    assert r.returncode == 1
    assert f"{out}: cannot write it" in r.stderr and "Traceback" not in r.stderr
