"""Plan (and apply) N shops over HTTP against ``sandbox serve`` held to a rate limit.

    python benchmarks/http_bench.py [--shops 1000] [--qps 200] [--parallelism 8] [--timeout 300]
    python benchmarks/http_bench.py --plan-only --shops 10000 --qps 200
    python benchmarks/http_bench.py --shards 4 --shops 10000 --qps 200
    python benchmarks/http_bench.py --rows [--json] --shops 10000 --qps 200 --shards 4

Each mode starts ``reconciler sandbox serve --port 0 --qps Q`` as a separate process on
127.0.0.1, generates an agency of N shops (``generate.py``) and points its ``provider`` at
the server (``kind: top``, ``provider.qps`` = Q: the client is told the app's real limit).

* default: nothing bound yet; in this process through the real ``top`` provider it plans,
  applies (3 binds a shop) and plans again; for each phase the requests the server
  received, the wall time and the rate against the limit (target: at least 90 %).
* ``--plan-only``: everything already bound; one plan in this process (reads, app checks
  and the planning itself, timed whole); target: at least 95 % of the limit.
* ``--shards K``: everything already bound; K real ``reconciler plan --shard k/K``
  processes at once (each takes 1/K of ``provider.qps`` by default); the combined rate
  from the first request to the last as the server saw them (its ``/stats``, read every
  50 ms), the busiest second, and the target: the server refused no request for the rate
  limit (code 7), every shard exited 0 and the shards planned every shop exactly once.

The checks: no request lost or handled twice, from three independent counts — the client's
(requests sent, answers received), the server's (``GET /stats``: received, handled per
method) and the platform's own data (every binding's revision: a bind that ran twice would
have left revision 2; a plan must leave every revision as it was). The shard processes'
own counts are not at hand: there the server's counts per method and each shard's JSON
plan (which shops it planned) stand in for them.

``--rows``: the two rows of the scale table, plan over HTTP (``--plan-only``) and the
shards (``--shards``, default 4), run one after the other against one server; stdout then
holds only these two lines (everything else goes to stderr), for another script to include:

    | plan over HTTP, 10,000 shops, `sandbox serve --qps 200` | 10,015 requests in 50.6 s: 198.0/s, 99.0% of the
      limit; none lost or repeated | ≥ 95% of the limit | ok |
    | 4 × `plan --shard K/4` at once, 10,000 shops, one app at 200 QPS | ... | no request over the limit; ... | ok |

(one line each, here wrapped; columns: what, figures, target, ``ok`` or ``MISSED``). ``--rows --json`` prints one JSON
object instead: ``{"format_version": 1, "rows": [{"row": "plan" | "shards", "what",
"figures", "target", "ok", "shops", "qps", "requests", "seconds", "rate", "of_limit", ...}]}``.
Exits 0 when every check holds and every target is reached, 1 otherwise, 2 after
``--timeout`` seconds whatever happens.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

sys.path.insert(0, str(Path(__file__).resolve().parent))
from generate import generate
from serving import Watch, start_server, stats

from reconciler.apply import apply_plan, make_plan
from reconciler.config import load_config
from reconciler.connect import open_provider, read_world
from reconciler.platform import SandboxPlatform
from reconciler.providers.top import TopProvider

SECRET_ENV = "RECONCILER_APP_SECRET"
SECRET = "bench-secret"  # the app secret generate.py writes into the world
PLAN_TARGET = 0.95
FULL_TARGET = 0.90


@dataclass
class Row:
    """One line of the scale table (``--rows``)."""

    row: str
    what: str
    figures: str
    target: str
    ok: bool
    data: dict[str, Any] = field(default_factory=dict)

    def markdown(self) -> str:
        return f"| {self.what} | {self.figures} | {self.target} | {'ok' if self.ok else 'MISSED'} |"

    def to_data(self) -> dict[str, Any]:
        return {"row": self.row, "what": self.what, "figures": self.figures, "target": self.target, "ok": self.ok,
                **self.data}


def delta(after: dict[str, Any], before: dict[str, Any], key: str) -> int:
    if isinstance(after[key], dict):
        return int(sum(after[key].values()) - sum(before[key].values()))
    return int(after[key]) - int(before[key])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shops", type=int, default=1000)
    ap.add_argument("--qps", type=float, default=200.0, help="the server's per-app limit, and provider.qps")
    ap.add_argument("--parallelism", type=int, default=8)
    ap.add_argument("--latency-ms", type=float, default=0.0, help="the server delays every request by this much")
    ap.add_argument("--timeout", type=float, default=300.0, help="give up after this many seconds")
    ap.add_argument("--keep", type=Path, help="keep the generated agency here")
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--plan-only", action="store_true", help="one plan of a bound agency (target 95 %%)")
    mode.add_argument("--rows", action="store_true", help="the plan and the shard rows; only them on stdout")
    ap.add_argument("--shards", type=int, help="K shard processes at once (with --rows: default 4)")
    ap.add_argument("--json", action="store_true", help="with --rows: one JSON object instead of table lines")
    a = ap.parse_args()
    if a.json and not a.rows:
        ap.error("--json goes with --rows")
    if a.plan_only and a.shards:
        ap.error("--plan-only and --shards are two modes; --rows runs both")
    if a.rows and a.shards is None:
        a.shards = 4
    out = sys.stderr if a.rows else sys.stdout  # --rows: stdout holds the rows only
    deadline = time.monotonic() + a.timeout
    root = a.keep or Path(tempfile.mkdtemp(prefix="reconciler-http-bench-"))
    servers: list[subprocess.Popen[str]] = []

    def give_up() -> None:
        print(f"timed out after {a.timeout:g} s", file=sys.stderr, flush=True)
        for proc in servers:
            proc.kill()
        os._exit(2)

    watchdog = threading.Timer(a.timeout, give_up)
    watchdog.daemon = True
    watchdog.start()
    try:
        if a.rows or a.plan_only or a.shards:
            rows = run_rows(a, root, deadline, servers, out)
            if a.rows:
                if a.json:
                    print(json.dumps({"format_version": 1, "rows": [r.to_data() for r in rows]}, ensure_ascii=False))
                else:
                    for r in rows:
                        print(r.markdown())
            ok = all(r.ok for r in rows)
        else:
            ok = run(a, root, deadline, servers)
    finally:
        watchdog.cancel()
        if a.keep is None:
            shutil.rmtree(root, ignore_errors=True)
    sys.exit(0 if ok else 1)


# --------------------------------------------------------------------------- the agency and its server


def prepare(root: Path, shops: int, *, bound: bool) -> dict[str, str]:
    """The agency, its sandbox loaded with the world, and the sessions file; the sessions."""
    generate(root, shops=shops, bound=bound)
    world = read_world(root / "world.yaml")
    platform = SandboxPlatform(root / ".reconciler" / "sandbox.db")
    try:
        platform.load_world(world)
    finally:
        platform.close()
    sessions = {sid: s.session for sid, s in world.shops.items() if isinstance(s.session, str)}
    (root / "sessions.yaml").write_text("".join(f'"{sid}": {s}\n' for sid, s in sessions.items()), encoding="utf-8")
    return sessions


def point_at(root: Path, url: str, a: argparse.Namespace) -> None:
    (root / "reconciler.yaml").write_text(
        f"provider: {{kind: top, url: '{url}', app_key: '30000001', app_secret_env: {SECRET_ENV},"
        f" sessions_file: sessions.yaml, qps: {a.qps:g}, parallelism: {a.parallelism}, timeout_s: 10}}\n"
        "safety: {max_change_share: 1.0, min_managed: 10}\n"
        "apply: {retries: 4, backoff_s: 0.2, max_backoff_s: 2}\n", encoding="utf-8")
    os.environ[SECRET_ENV] = SECRET


def stop(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()


def revisions(root: Path) -> Counter[int]:
    """The platform's own record: how many bindings are at each revision."""
    platform = SandboxPlatform(root / ".reconciler" / "sandbox.db")
    try:
        return Counter(rev for (rev,) in platform._db.execute("SELECT revision FROM bindings WHERE appkey IS NOT NULL"))
    finally:
        platform.close()


def checked(checks: list[tuple[str, Any, Any]], out: TextIO) -> bool:
    good = True
    for what, got, want in checks:
        mark = "ok" if got == want else "MISMATCH"
        good &= got == want
        print(f"- {mark}: {what}: {got}" + ("" if got == want else f" (expected {want})"), file=out)
    return good


def header(a: argparse.Namespace, out: TextIO) -> None:
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores; {a.shops:,} shops, server limit {a.qps:g} QPS"
          f" per app, provider.qps {a.qps:g}, parallelism {a.parallelism}"
          + (f", server latency {a.latency_ms:g} ms" if a.latency_ms else "") + "\n", file=out)


# --------------------------------------------------------------------------- plan only, and shards


def run_rows(a: argparse.Namespace, root: Path, deadline: float, servers: list[subprocess.Popen[str]],
             out: TextIO) -> list[Row]:
    prepare(root, a.shops, bound=True)
    proc, url = start_server(root, a.qps, deadline, latency_ms=a.latency_ms)
    servers.append(proc)
    rows: list[Row] = []
    try:
        point_at(root, url, a)
        header(a, out)
        if a.rows or a.plan_only:
            rows.append(plan_row(a, root, url, out))
        if a.shards:
            if rows:
                time.sleep(1.5)  # the gateway's bucket (one second's worth) fills again: the next row starts fresh
            rows.append(shard_row(a, root, url, out))
    finally:
        stop(proc)
    return rows


def plan_row(a: argparse.Namespace, root: Path, url: str, out: TextIO) -> Row:
    """One plan of the bound agency in this process, through the real top provider."""
    config = load_config(root)
    desired = config.desired()
    before = revisions(root)
    provider = open_provider(config.settings, root)
    assert isinstance(provider, TopProvider)
    try:
        s0 = stats(url)
        t = time.perf_counter()
        plan = make_plan(desired, provider)
        wall = time.perf_counter() - t
        s1 = stats(url)
        client = provider.counters()
    finally:
        provider.close()
    received = delta(s1, s0, "received")
    rate = received / wall
    print("| phase | requests | wall s | requests/s | of the limit |\n|---|---:|---:|---:|---:|", file=out)
    print(f"| plan ({len(config.shops):,} shops read) | {received:,} | {wall:.2f} | {rate:.1f} | {rate / a.qps:.1%} |\n",
          file=out)
    sent = Counter(client["sent"])
    handled = Counter(s1["handled"]) - Counter(s0["handled"])
    answers = delta(s1, s0, "ok") + delta(s1, s0, "failed") + delta(s1, s0, "refused")
    trouble = (delta(s1, s0, "failed"), delta(s1, s0, "refused"), delta(s1, s0, "dropped_before") + delta(s1, s0, "dropped_after"))
    good = checked([
        ("requests: client sent = server received (none lost)", sum(sent.values()), received),
        ("per method: client sent = server handled (each exactly once)", dict(sorted(sent.items())),
         dict(sorted(handled.items()))),
        ("answers: server sent = client received", answers, sum(client["answered"].values())),
        ("shops read: client, server", (sent["erp.binding.get"], handled["erp.binding.get"]), (a.shops, a.shops)),
        ("bindings by revision, before = after (a plan writes nothing)", dict(revisions(root)), dict(before)),
        ("client errors; server failed, refused, dropped", (client["errors"], *trouble), ({}, 0, 0, 0)),
        ("plan: changes, problems", (len(plan.changes), len(plan.problems)), (0, 0)),
    ], out)
    target = rate >= PLAN_TARGET * a.qps
    print(f"- {'ok' if target else 'BELOW TARGET'}: achieved {rate:.1f} requests/s = {rate / a.qps:.1%} of the"
          f" {a.qps:g} QPS limit (target ≥ {PLAN_TARGET:.0%})\n", file=out)
    figures = (f"{received:,} requests in {wall:.1f} s: {rate:.1f}/s, {rate / a.qps:.1%} of the limit; "
               + ("none lost or repeated" if good else "MISMATCHED COUNTS (see the checks)"))
    return Row("plan", f"plan over HTTP, {a.shops:,} shops, `sandbox serve --qps {a.qps:g}`", figures,
               f"≥ {PLAN_TARGET:.0%} of the limit", good and target,
               {"shops": a.shops, "qps": a.qps, "requests": received, "seconds": round(wall, 3), "rate": round(rate, 1),
                "of_limit": round(rate / a.qps, 4), "checks_ok": good})


def shard_row(a: argparse.Namespace, root: Path, url: str, out: TextIO) -> Row:
    """K real ``reconciler plan --shard k/K`` processes at once against the one server."""
    k = a.shards
    env = {**os.environ, SECRET_ENV: SECRET}
    env.pop("RECONCILER_QPS", None)  # the default share: 1/K of provider.qps each
    s0 = stats(url)
    t = time.perf_counter()
    with Watch(url) as watch:
        procs = [subprocess.Popen([sys.executable, "-m", "reconciler", "-C", str(root), "plan", "--shard", f"{i}/{k}",
                                   "--format", "json", "--detailed-exitcode"],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
                 for i in range(1, k + 1)]
        outs = [p.communicate() for p in procs]
    wall = time.perf_counter() - t
    s1 = stats(url)
    received, window = watch.window()
    rate = received / window if window else 0.0
    busiest = watch.busiest()
    planned: Counter[str] = Counter()
    codes, says = [], []
    for p, (stdout, stderr) in zip(procs, outs, strict=True):
        codes.append(p.returncode)
        says += [line for line in stderr.splitlines() if "requests/s" in line]
        try:
            planned.update(json.loads(stdout)["shops"])
        except (ValueError, KeyError):
            print(f"a shard printed no plan: {stderr[-2000:]}", file=out)
    handled = Counter(s1["handled"]) - Counter(s0["handled"])
    refused = {c: n - int(s0["refused"].get(c, 0)) for c, n in s1["refused"].items() if n != s0["refused"].get(c, 0)}
    print(f"{k} shard processes at once: {received:,} requests from the first to the last in {window:.2f} s"
          f" ({wall:.2f} s with the processes' start and config loading);\ncombined {rate:.1f} requests/s ="
          f" {rate / a.qps:.1%} of the {a.qps:g} QPS limit; busiest second {busiest} requests (the gateway admits"
          f" {a.qps:g} a second plus what it saved up, one second's worth; the shards start with a tenth of a second's"
          " worth together)", file=out)
    for line in says:
        print(f"  {line}", file=out)
    good = checked([
        ("refused for the rate limit (code 7) or otherwise", refused, {}),
        ("exit codes (0: planned, no changes)", codes, [0] * k),
        ("shops planned, each by exactly one shard", (len(planned), max(planned.values(), default=0)), (a.shops, 1)),
        ("server: shops read (each exactly once), received = handled",
         (handled["erp.binding.get"], delta(s1, s0, "received")), (a.shops, sum(handled.values()))),
        ("server: failed, dropped", (delta(s1, s0, "failed"), delta(s1, s0, "dropped_before") + delta(s1, s0, "dropped_after")),
         (0, 0)),
    ], out)
    print(file=out)
    figures = (f"{received:,} requests in {window:.1f} s (first to last): combined {rate:.1f}/s,"
               f" {rate / a.qps:.1%} of the limit; refused {sum(refused.values())}; every shop planned once"
               + ("" if good else " — MISMATCHED COUNTS (see the checks)"))
    return Row("shards", f"{k} × `plan --shard K/{k}` at once, {a.shops:,} shops, one app at {a.qps:g} QPS", figures,
               "no request over the limit", good,
               {"shops": a.shops, "qps": a.qps, "shards": k, "requests": received, "seconds": round(window, 3),
                "wall_seconds": round(wall, 3), "rate": round(rate, 1), "of_limit": round(rate / a.qps, 4),
                "busiest_second": busiest, "refused": sum(refused.values()), "exit_codes": codes})


# --------------------------------------------------------------------------- plan, apply, plan again


def run(a: argparse.Namespace, root: Path, deadline: float, servers: list[subprocess.Popen[str]]) -> bool:
    prepare(root, a.shops, bound=False)
    proc, url = start_server(root, a.qps, deadline, latency_ms=a.latency_ms)
    servers.append(proc)
    try:
        point_at(root, url, a)
        config = load_config(root)
        provider = open_provider(config.settings, root)
        assert isinstance(provider, TopProvider)
        rows: list[tuple[str, int, float]] = []
        try:
            s0 = stats(url)
            t = time.perf_counter()
            plan = make_plan(config.desired(), provider)
            rows.append((f"plan ({len(config.shops):,} shops read)", 0, time.perf_counter() - t))
            s1 = stats(url)
            t = time.perf_counter()
            result = apply_plan(plan, provider, parallelism=provider.parallelism)
            rows.append((f"apply ({len(plan.changes):,} binds)", 0, time.perf_counter() - t))
            s2 = stats(url)
            t = time.perf_counter()
            again = make_plan(config.desired(), provider)
            rows.append(("plan again (expects no changes)", 0, time.perf_counter() - t))
            s3 = stats(url)
            client = provider.counters()
        finally:
            provider.close()
        snaps = [s0, s1, s2, s3]
        rows = [(name, delta(snaps[i + 1], snaps[i], "received"), wall) for i, (name, _, wall) in enumerate(rows)]
    finally:
        stop(proc)
    return report(a, root, rows, s0, s3, client, len(plan.changes), result.applied, len(result.failed),
                  len(again.changes))


def report(a: argparse.Namespace, root: Path, rows: list[tuple[str, int, float]], first: dict[str, Any],
           last: dict[str, Any], client: dict[str, dict[str, int]], planned: int, applied: int, failed: int,
           left: int) -> bool:
    header(a, sys.stdout)
    print("| phase | requests | wall s | requests/s | of the limit |\n|---|---:|---:|---:|---:|")
    total_req, total_wall = 0, 0.0
    for name, n, wall in rows:
        total_req, total_wall = total_req + n, total_wall + wall
        print(f"| {name} | {n:,} | {wall:.2f} | {n / wall:.1f} | {n / wall / a.qps:.0%} |")
    rate = total_req / total_wall
    print(f"| **all** | {total_req:,} | {total_wall:.2f} | {rate:.1f} | {rate / a.qps:.0%} |\n")

    sent = Counter(client["sent"])
    handled = Counter(last["handled"]) - Counter(first["handled"])
    ok = Counter(last["ok"]) - Counter(first["ok"])
    received = last["received"] - first["received"]
    refused = sum(last["refused"].values()) - sum(first["refused"].values())
    dropped = sum(last["dropped_before"].values()) + sum(last["dropped_after"].values())
    binds = 3 * a.shops
    failed_calls = sum(last["failed"].values()) - sum(first["failed"].values())
    good = checked([
        ("requests: client sent = server received (none lost)", sum(sent.values()), received),
        ("per method: client sent = server handled (each exactly once)", dict(sorted(sent.items())),
         dict(sorted(handled.items()))),
        ("answers: server sent = client received", sum(ok.values()) + failed_calls + refused,
         sum(client["answered"].values())),
        ("binds: handled, planned, applied", (handled["erp.binding.bind"], planned, applied), (binds, binds, binds)),
        ("bindings by revision (a bind run twice would show revision 2)", dict(revisions(root)), {1: binds}),
        ("shops failed, changes left, calls failed, dropped, refused", (failed, left, failed_calls, dropped, refused),
         (0, 0, 0, 0, 0)),
    ], sys.stdout)
    target = rate >= FULL_TARGET * a.qps
    print(f"- {'ok' if target else 'BELOW TARGET'}: achieved {rate:.1f} requests/s = {rate / a.qps:.1%} of the"
          f" {a.qps:g} QPS limit (target ≥ {FULL_TARGET:.0%})")
    return good and target


if __name__ == "__main__":
    main()
