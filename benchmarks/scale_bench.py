"""Issue 13's scale table in one run: every row, measured on whole processes, side by side.

    python benchmarks/scale_bench.py [--quick] [--no-http] [--runs 3] [--runs-100k 1] [--startup-runs 11] [--keep DIR]

Each figure is a fresh process (start-up included) timed by wall clock, with its own peak
RSS and CPU time (``os.wait4``); a figure is the median of the runs (RSS: the largest). The
processes a ratio compares run interleaved, so a busy machine slows both sides alike; the
CPU ratio is printed too, as a check on a shared machine, and the ratio of the fastest run of
each (the least disturbed; the target is judged on the medians). The rows:

1. ``reconciler -C DIR plan``, 10,000 shops in 100 files (``generate.py``, all bound: no
   changes, exit 0), cold: ``DIR/.reconciler/cache/`` (the parse cache) deleted before each
   run, ÷ the compose floor: a bare ``python -c`` that does ``gc.disable()`` and
   ``yaml.compose(f, Loader=yaml.CSafeLoader)`` of the same shop files. Target ≤ 2×.
   A plan before any figure loads world.yaml into DIR/.reconciler/sandbox.db (not timed).
2. The same plan when no config file changed since the last run (the cold run before it
   leaves the cache warm) ÷ the same compose floor. Target ≤ 1×.
3. The plan of 100,000 shops, cold (``--runs-100k``, default 1 run): time and peak RSS.
   Target ≤ 10 s and ≤ 400 MiB. The compose floor of the same files is shown for scale.
4. ``reconciler --version``, ``reconciler --help`` and shell completion
   (``_RECONCILER_COMPLETE=bash_complete COMP_WORDS="reconciler pl" COMP_CWORD=1 reconciler``),
   each ÷ ``python -c pass`` (``--startup-runs``, default 11). Target ≤ 3×.
5. Plan over HTTP, 10,000 shops, ``sandbox serve --qps 200``: ≥ 95 % of the limit, no lost or
   repeated request; and 6. N shards planning at once against one app's limit: together never
   over it. Both come from ``http_bench.py --rows --json`` (a subprocess; ``--no-http``
   skips them).

``--quick`` skips the 100,000-shop and HTTP rows. Prints a Markdown table
``| measure | figure | target | met |`` and the machine it ran on. Exits 0 when every row
was measured, missed targets included (it is a benchmark); 1 when a command failed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from generate import generate

HERE = Path(__file__).resolve().parent

RECONCILER = shutil.which("reconciler", path=str(Path(sys.executable).parent)) or "reconciler"  # the console script
COMPOSE = ("import gc, sys, yaml\ngc.disable()\nfrom pathlib import Path\n"
           "for p in sorted(q for e in ('*.yaml', '*.yml') for q in Path(sys.argv[1]).rglob(e)):\n"
           "    with open(p, 'rb') as f:\n        yaml.compose(f, Loader=yaml.CSafeLoader)\n")
BIG = "`plan` 100,000 shops, no changes, cold"
HTTP = "plan over HTTP (10,000 shops, `sandbox serve --qps 200`); N shards at once against one app's limit"
HTTP_TARGET = "≥ 95 % of the limit, none lost or repeated; together never over the limit"
COMPLETE = {"_RECONCILER_COMPLETE": "bash_complete", "COMP_WORDS": "reconciler pl", "COMP_CWORD": "1"}


class Failed(Exception):
    """A measured command exited with an unexpected code."""


@dataclass
class Runs:
    """Several runs of one command: wall and CPU seconds, peak RSS in MiB."""

    walls: list[float]
    cpus: list[float]
    rss: float = 0.0

    @property
    def wall(self) -> float:
        return statistics.median(self.walls)

    @property
    def cpu(self) -> float:
        return statistics.median(self.cpus)


@dataclass
class Row:
    measure: str
    figure: str
    target: str
    met: str


def run(cmd: Sequence[str], into: Runs, *, env: dict[str, str] | None = None) -> None:
    """One fresh process of ``cmd``, added to ``into``; raises Failed unless it exits 0."""
    with tempfile.TemporaryFile() as stderr:  # a file, not a pipe: a chatty command cannot block on it
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=stderr, env={**os.environ, **(env or {})})
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        stderr.seek(0)
        err = stderr.read().decode(errors="replace")
    code = proc.returncode
    if code != 0:
        raise Failed(f"`{' '.join(cmd)}` exited {code}: {err.strip()[-300:]}")
    into.walls.append(wall)
    into.cpus.append(usage.ru_utime + usage.ru_stime)
    into.rss = max(into.rss, usage.ru_maxrss / 1024)


def interleaved(n: int, steps: Sequence[tuple[Callable[[], None] | None, Sequence[str], dict[str, str] | None]]) -> list[Runs]:
    """``n`` rounds of ``steps`` (before-hook, command, extra env) in turn; their Runs, in order."""
    out = [Runs([], []) for _ in steps]
    for _ in range(n):
        for (before, cmd, env), runs in zip(steps, out, strict=True):
            if before is not None:
                before()
            run(cmd, runs, env=env)
    return out


def ratio_row(measure: str, what: Runs, base: Runs, base_name: str, limit: float, *, rss: bool = True) -> Row:
    r, cpu = what.wall / base.wall, what.cpu / base.cpu
    mem = (f", {what.rss:.0f} MiB", f", {base.rss:.0f} MiB") if rss else ("", "")
    fastest = min(what.walls) / min(base.walls)
    figure = (f"{what.wall:.2f} s{mem[0]} ÷ {base_name} {base.wall:.2f} s{mem[1]} = **{r:.2f}×**"
              f" (CPU {what.cpu:.2f} ÷ {base.cpu:.2f} s = {cpu:.2f}×; median of {len(what.walls)};"
              f" the fastest of each, the least disturbed: {fastest:.2f}×)")
    return Row(measure, figure, f"≤ {limit:g}×", "yes" if r <= limit else "**no**")


def agency(root: Path, shops: int) -> tuple[Path, Callable[[], None]]:
    """A bound agency of ``shops`` shops with its world loaded (one plan, not timed); and a
    hook that deletes its parse cache."""
    d = root / f"agency-{shops}"
    generate(d, shops=shops, bound=True)
    run([RECONCILER, "-C", str(d), "plan"], Runs([], []))

    def cold() -> None:
        shutil.rmtree(d / ".reconciler" / "cache", ignore_errors=True)

    return d, cold


def plan_rows(root: Path, runs: int) -> list[Row]:
    d, cold = agency(root, 10_000)
    plan = [RECONCILER, "-C", str(d), "plan"]
    floor = [sys.executable, "-c", COMPOSE, str(d / "shops")]
    cold_runs, warm_runs, floor_runs = interleaved(runs, [(cold, plan, None), (None, plan, None), (None, floor, None)])
    return [ratio_row("`plan` 10,000 shops, no changes, cold (no parse cache) ÷ libyaml compose of the same files",
                      cold_runs, floor_runs, "compose", 2),
            ratio_row("`plan` 10,000 shops, no config file changed since the last run ÷ the compose floor",
                      warm_runs, floor_runs, "compose", 1)]


def big_row(root: Path, runs: int) -> Row:
    d, cold = agency(root, 100_000)
    plan, floor = interleaved(runs, [(cold, [RECONCILER, "-C", str(d), "plan"], None),
                                     (None, [sys.executable, "-c", COMPOSE, str(d / "shops")], None)])
    ok = plan.wall <= 10 and plan.rss <= 400
    return Row(BIG,
               f"**{plan.wall:.1f} s, {plan.rss:.0f} MiB** (CPU {plan.cpu:.1f} s; {len(plan.walls)} run(s));"
               f" compose floor {floor.wall:.1f} s, {floor.rss:.0f} MiB", "≤ 10 s, ≤ 400 MiB", "yes" if ok else "**no**")


def startup_rows(runs: int) -> list[Row]:
    base, version, helps, complete = interleaved(runs, [
        (None, [sys.executable, "-c", "pass"], None), (None, [RECONCILER, "--version"], None),
        (None, [RECONCILER, "--help"], None), (None, [RECONCILER], COMPLETE)])
    return [ratio_row(f"{what} ÷ `python -c pass`", r, base, "pass", 3, rss=False)
            for what, r in (("`reconciler --version`", version), ("`reconciler --help`", helps),
                            ("completion (`reconciler pl<TAB>`, bash)", complete))]


def http_rows(timeout: float) -> list[Row]:
    """The rows of ``http_bench.py --rows --json``; a row saying why not when it cannot give them."""
    bench = [sys.executable, str(HERE / "http_bench.py")]
    helptext = subprocess.run([*bench, "--help"], capture_output=True, text=True, timeout=120).stdout
    if "--rows" not in helptext:
        return [Row(HTTP, "not measured: http_bench.py has no --rows mode", HTTP_TARGET, "–")]
    try:
        r = subprocess.run([*bench, "--rows", "--json", "--shops", "10000", "--qps", "200", "--timeout", f"{timeout - 30:g}"],
                           capture_output=True, text=True, timeout=timeout)  # it stops itself (and its server) first
    except subprocess.TimeoutExpired:
        return [Row(HTTP, f"not measured: http_bench.py ran over {timeout:g} s", HTTP_TARGET, "–")]
    try:
        data = json.loads(r.stdout)
        return [Row(x["what"], str(x["figures"]), x["target"], "yes" if x["ok"] else "**no**") for x in data["rows"]]
    except (ValueError, KeyError, TypeError):
        lines = [line for line in r.stdout.splitlines() if line.startswith("|")]
        cells = [[c.strip() for c in line.strip().strip("|").split("|")] for line in lines]
        rows = [Row(c[0], c[1], c[2], "yes" if c[3] == "ok" else "**no**") for c in cells if len(c) == 4]
        why = f"http_bench.py exited {r.returncode}: {r.stderr.strip()[-300:]}"
        return rows or [Row(HTTP, f"not measured: {why}", HTTP_TARGET, "–")]


def machine() -> str:
    import platform

    import yaml

    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    commit = subprocess.run(["git", "-C", str(HERE), "describe", "--always", "--dirty"], capture_output=True,
                            text=True).stdout.strip() or "?"
    return (f"python {platform.python_version()}, {os.cpu_count()} CPUs, {platform.machine()}, PyYAML {yaml.__version__}"
            f" (libyaml: {yaml.__with_libyaml__}); git {commit}; load average {load}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="skip the 100,000-shop and HTTP rows")
    ap.add_argument("--no-http", dest="http", action="store_false", help="skip the HTTP rows (5-6)")
    ap.add_argument("--runs", type=int, default=3, help="runs of each 10,000-shop measure (rows 1-2; median)")
    ap.add_argument("--runs-100k", type=int, default=1, help="runs of the 100,000-shop plan (row 3)")
    ap.add_argument("--startup-runs", type=int, default=11, help="runs of each start-up measure (row 4; median)")
    ap.add_argument("--http-timeout", type=float, default=900.0, help="give http_bench.py this many seconds")
    ap.add_argument("--keep", type=Path, help="keep the generated agencies here (default: a temporary dir, removed)")
    a = ap.parse_args()
    # An installed tool runs from compiled bytecode. A shell that sets PYTHONDONTWRITEBYTECODE (this
    # development machine's does) makes every child compile the tool's ~80 modules from source again:
    # 0.1-0.3 s of every figure that is not the tool's work. The first runs below write the bytecode.
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    root = a.keep or Path(tempfile.mkdtemp(prefix="reconciler-scale-bench-"))
    before = machine()
    skip = "--quick" if a.quick else "--no-http"
    # (place in the table, name, measure or None: skipped, target). Measured in this order — start-up first, before
    # the big runs warm or load the machine — and printed in the issue's.
    steps: list[tuple[int, str, Callable[[], list[Row]] | None, str]] = [
        (2, "start-up", lambda: startup_rows(a.startup_runs), ""),
        (0, "plan 10,000 shops", lambda: plan_rows(root, a.runs), ""),
        (1, BIG, None if a.quick else lambda: [big_row(root, a.runs_100k)], "≤ 10 s, ≤ 400 MiB"),
        (3, HTTP, None if a.quick or not a.http else lambda: http_rows(a.http_timeout), HTTP_TARGET)]
    found: dict[int, list[Row]] = {}
    failed = False
    try:
        for order, name, step, target in steps:
            if step is None:
                found[order] = [Row(name, f"skipped ({skip})", target, "–")]
                continue
            print(f"measuring: {name} …", file=sys.stderr, flush=True)
            t = time.perf_counter()
            try:
                found[order] = step()
            except Failed as e:
                failed = True
                found[order] = [Row(name, f"failed: {e}", "", "–")]
            print(f"  {time.perf_counter() - t:.0f} s", file=sys.stderr, flush=True)
    finally:
        if a.keep is None:
            shutil.rmtree(root, ignore_errors=True)
    print(f"{before}\n(at the end: load average {', '.join(f'{x:.2f}' for x in os.getloadavg())})\n")
    print("| measure | figure | target | met |\n|---|---|---|---|")
    for r in (r for order in sorted(found) for r in found[order]):
        print(f"| {r.measure} | {r.figure} | {r.target} | {r.met} |")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
