"""Plan and apply N shops over HTTP against ``sandbox serve`` held to a rate limit.

    python benchmarks/http_bench.py [--shops 1000] [--qps 200] [--parallelism 8] [--timeout 300]

Starts ``reconciler sandbox serve --port 0 --qps Q`` as a separate process on 127.0.0.1,
generates an agency of N shops with nothing bound yet (``generate.py``; so apply binds
3 scenarios per shop), points its ``provider`` at the server (``kind: top``, client QPS =
Q), then, in this process through the real ``top`` provider: plans, applies, and plans
again. For each phase it prints the requests the server received, the wall time and the
achieved requests per second against the limit (target: at least 90 %).

Then it proves no request was lost or handled twice, from three independent counts: the
client's (requests sent, answers received), the server's (``GET /stats``: received,
handled per method) and the platform's own data (every binding's revision: a bind that ran
twice would have left revision 2). Exits 0 when every check holds and the rate reaches
the target, 1 otherwise; gives up after ``--timeout`` seconds whatever happens.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from generate import generate
from serving import start_server, stats

from reconciler.apply import apply_plan, make_plan
from reconciler.config import load_config
from reconciler.connect import open_provider, read_world
from reconciler.platform import SandboxPlatform
from reconciler.providers.top import TopProvider

SECRET_ENV = "RECONCILER_APP_SECRET"
SECRET = "bench-secret"  # the app secret generate.py writes into the world




def delta(after: dict[str, Any], before: dict[str, Any], key: str) -> int:
    if isinstance(after[key], dict):
        return int(sum(after[key].values()) - sum(before[key].values()))
    return int(after[key]) - int(before[key])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shops", type=int, default=1000)
    ap.add_argument("--qps", type=float, default=200.0, help="the server's per-app limit, and the client's QPS")
    ap.add_argument("--parallelism", type=int, default=8)
    ap.add_argument("--timeout", type=float, default=300.0, help="give up after this many seconds")
    ap.add_argument("--keep", type=Path, help="keep the generated agency here")
    a = ap.parse_args()
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
        ok = run(a, root, deadline, servers)
    finally:
        watchdog.cancel()
        if a.keep is None:
            shutil.rmtree(root, ignore_errors=True)
    sys.exit(0 if ok else 1)


def run(a: argparse.Namespace, root: Path, deadline: float, servers: list[subprocess.Popen[str]]) -> bool:
    generate(root, shops=a.shops, bound=False)
    world = read_world(root / "world.yaml")
    platform = SandboxPlatform(root / ".reconciler" / "sandbox.db")
    try:
        platform.load_world(world)
    finally:
        platform.close()
    (root / "sessions.yaml").write_text(
        "".join(f'"{sid}": {s.session}\n' for sid, s in world.shops.items() if s.session), encoding="utf-8")
    proc, url = start_server(root, a.qps, deadline)
    servers.append(proc)
    try:
        (root / "reconciler.yaml").write_text(
            f"provider: {{kind: top, url: '{url}', app_key: '30000001', app_secret_env: {SECRET_ENV},"
            f" sessions_file: sessions.yaml, qps: {a.qps:g}, parallelism: {a.parallelism}, timeout_s: 10}}\n"
            "safety: {max_change_share: 1.0, min_managed: 10}\n"
            "apply: {retries: 4, backoff_s: 0.2, max_backoff_s: 2}\n", encoding="utf-8")
        os.environ[SECRET_ENV] = SECRET
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
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
    return report(a, root, rows, s0, s3, client, len(plan.changes), result.applied, len(result.failed),
                  len(again.changes))


def report(a: argparse.Namespace, root: Path, rows: list[tuple[str, int, float]], first: dict[str, Any],
           last: dict[str, Any], client: dict[str, dict[str, int]], planned: int, applied: int, failed: int,
           left: int) -> bool:
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores; {a.shops:,} shops, server limit {a.qps:g} QPS"
          f" per app, client QPS {a.qps:g}, parallelism {a.parallelism}\n")
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
    platform = SandboxPlatform(root / ".reconciler" / "sandbox.db")
    try:
        revisions = Counter(rev for (rev,) in platform._db.execute(
            "SELECT revision FROM bindings WHERE appkey IS NOT NULL"))
    finally:
        platform.close()
    binds = 3 * a.shops
    failed_calls = sum(last["failed"].values()) - sum(first["failed"].values())
    checks = [
        ("requests: client sent = server received (none lost)", sum(sent.values()), received),
        ("per method: client sent = server handled (each exactly once)", dict(sorted(sent.items())),
         dict(sorted(handled.items()))),
        ("answers: server sent = client received", sum(ok.values()) + failed_calls + refused,
         sum(client["answered"].values())),
        ("binds: handled, planned, applied", (handled["erp.binding.bind"], planned, applied), (binds, binds, binds)),
        ("bindings by revision (a bind run twice would show revision 2)", dict(revisions), {1: binds}),
        ("shops failed, changes left, calls failed, dropped, refused", (failed, left, failed_calls, dropped, refused),
         (0, 0, 0, 0, 0)),
    ]
    good = True
    for what, got, want in checks:
        mark = "ok" if got == want else "MISMATCH"
        good &= got == want
        print(f"- {mark}: {what}: {got}" + ("" if got == want else f" (expected {want})"))
    target = rate >= 0.9 * a.qps
    print(f"- {'ok' if target else 'BELOW TARGET'}: achieved {rate:.1f} requests/s = {rate / a.qps:.1%} of the"
          f" {a.qps:g} QPS limit (target ≥ 90 %)")
    return good and target


if __name__ == "__main__":
    main()
