"""Renew N shops' tokens with ``reconciler auth refresh`` against ``sandbox serve`` held to a rate limit.

    python benchmarks/auth_bench.py [--shops 2000] [--qps 200] [--parallelism 8] [--state-url URL] [--timeout 600]

Makes a world of N shops whose tokens end in two days (each with a refresh token), serves it
with ``reconciler sandbox serve --qps Q`` (a separate process on 127.0.0.1), stores the tokens
sealed in a state store (``auth import``; SQLite in the agency's directory unless
``--state-url``), then times ``reconciler auth refresh --within 7d`` as a fresh process — the
client held to the same Q — and reads the server's counters (``GET /stats``).

It then proves no renewal was lost or made twice, from three independent counts: the
command's (every shop said "renewed"), the server's (refreshes handled = refreshes answered
= N, none refused) and the data's (every stored token was renewed once — generation 2 — and
the platform accepts every stored access token). Exits 0 when every check holds and the
rate reaches 90 % of the limit, 1 otherwise.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serving import start_server, stats

from reconciler.auth import Keyring, keygen
from reconciler.platform import TOKEN_REFRESH, SandboxPlatform
from reconciler.state import open_store

SECRET = "bench-secret"


def cli(*args: str, env: dict[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "reconciler", *args], capture_output=True, text=True, env=env,
                          timeout=timeout, check=False)




def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shops", type=int, default=2000)
    ap.add_argument("--qps", type=float, default=200.0)
    ap.add_argument("--parallelism", type=int, default=8)
    ap.add_argument("--state-url", help="the state store (default: SQLite in the agency's directory)")
    ap.add_argument("--timeout", type=float, default=600.0)
    args = ap.parse_args()
    deadline = time.monotonic() + args.timeout
    tmp = Path(tempfile.mkdtemp(prefix="auth-bench-"))
    server: subprocess.Popen[str] | None = None
    try:
        now = datetime.now(UTC).replace(microsecond=0)
        ids = [str(100001 + i) for i in range(args.shops)]
        world = {"app": {"app_key": "30000001", "app_secret": SECRET},
                 "apps": {"21345678": {"name": "聚水潭", "scenarios": ["intercept_shipment"]}},
                 "shops": {s: {"session": {"token": f"tok-{s}", "expires_at": (now + timedelta(days=2)).isoformat(),
                                           "refresh_token": f"rt-{s}",
                                           "refresh_expires_at": (now + timedelta(days=300)).isoformat()}} for s in ids}}
        platform_dir, agency = tmp / "platform", tmp / "agency"
        (platform_dir).mkdir()
        (agency / "shops").mkdir(parents=True)
        (platform_dir / "world.yaml").write_text(yaml.safe_dump(world), encoding="utf-8")
        db = platform_dir / "sandbox.db"
        env = {**os.environ, "RECONCILER_APP_SECRET": SECRET, "RECONCILER_STATE_KEY": keygen(), "NO_COLOR": "1"}
        env.pop("RECONCILER_STATE_URL", None)
        r = cli("-C", str(platform_dir), "sandbox", "load", "--db", str(db), str(platform_dir / "world.yaml"), env=env,
                timeout=300)
        assert r.returncode == 0, r.stderr
        server, url = start_server(platform_dir, args.qps, deadline, db=db)
        state_url = args.state_url or f"sqlite:///{agency / 'state.db'}"
        (agency / "reconciler.yaml").write_text(yaml.safe_dump({
            "provider": {"kind": "top", "url": url, "app_key": "30000001", "qps": args.qps, "parallelism": args.parallelism,
                         "timeout_s": 30},
            "state": {"url": state_url}}), encoding="utf-8")
        (agency / "erps.yaml").write_text('erps:\n  jushuitan: {name: 聚水潭, appkey: "21345678"}\n', encoding="utf-8")
        (agency / "shops" / "all.yaml").write_text("shops:\n" + "".join(
            f'  - {{id: "{s}", erp: jushuitan, scenarios: {{intercept_shipment: {{}}}}}}\n' for s in ids), encoding="utf-8")
        (agency / "tokens.yaml").write_text(yaml.safe_dump(
            {s: {"access_token": v["session"]["token"], "refresh_token": v["session"]["refresh_token"],
                 "expires_at": v["session"]["expires_at"], "refresh_expires_at": v["session"]["refresh_expires_at"]}
             for s, v in world["shops"].items()}), encoding="utf-8")
        r = cli("-C", str(agency), "auth", "import", str(agency / "tokens.yaml"), env=env, timeout=300)
        assert r.returncode == 0, r.stderr
        (agency / "tokens.yaml").unlink()

        before = stats(url)
        started = time.monotonic()
        r = cli("-C", str(agency), "auth", "refresh", "--within", "7d", env=env, timeout=max(1.0, deadline - time.monotonic()))
        wall = time.monotonic() - started
        after = stats(url)

        received = after["received"] - before["received"]
        handled = after["handled"].get(TOKEN_REFRESH, 0) - before["handled"].get(TOKEN_REFRESH, 0)
        answered = after["ok"].get(TOKEN_REFRESH, 0) - before["ok"].get(TOKEN_REFRESH, 0)
        refused = sum(after["refused"].values()) - sum(before["refused"].values())
        failed = after["failed"].get(TOKEN_REFRESH, 0) - before["failed"].get(TOKEN_REFRESH, 0)
        said = len(re.findall(r"^\d+: renewed, valid until", r.stdout, flags=re.MULTILINE))

        store = open_store(state_url, config_dir=agency)
        assert store is not None
        ring = Keyring.from_env(env)
        try:
            rows = store.token_rows()
        finally:
            store.close()
        platform = SandboxPlatform(db)
        try:
            working = sum(1 for s, row in rows.items() if platform.shop_for_session(ring.open(row).access_token) == s)
        finally:
            platform.close()
        once = sum(1 for row in rows.values() if row.generation == 2 and row.source == "refresh")

        m = re.search(r"could not be renewed \(([0-9.]+) s\)", r.stdout)
        phase = float(m.group(1)) if m else wall
        rate = received / wall
        phase_rate = received / phase
        print(f"auth refresh of {args.shops:,} shops against sandbox serve --qps {args.qps:g}"
              f" (client qps {args.qps:g}, parallelism {args.parallelism}, store {state_url.split(':', 1)[0]})")
        print("| step | requests | wall s | requests/s | of the limit |")
        print("|---|---:|---:|---:|---:|")
        print(f"| the renewals (as the command times them) | {received:,} | {phase:.2f} | {phase_rate:.1f} |"
              f" {phase_rate / args.qps:.0%} |")
        print(f"| the whole command (a fresh process, start to exit) | {received:,} | {wall:.2f} | {rate:.1f} |"
              f" {rate / args.qps:.0%} |")
        print(f"exit code {r.returncode}; said renewed {said:,}; server: refreshes handled {handled:,}, answered"
              f" {answered:,}, failed {failed}, refused (rate limit or other) {refused}; store: renewed once {once:,},"
              f" platform accepts {working:,} of {len(rows):,} stored tokens")
        checks = {
            "exit 0": r.returncode == 0,
            "every shop said renewed": said == args.shops,
            "the platform renewed each once": handled == answered == args.shops and failed == 0,
            "no request refused": refused == 0,
            "every stored token renewed once": once == args.shops,
            "every stored token works": working == args.shops,
            "the renewals at least 90 % of the limit": phase_rate >= 0.9 * args.qps,
        }
        for name, ok in checks.items():
            print(f"  {'ok ' if ok else 'FAIL'} {name}")
        if r.returncode != 0:
            print(r.stdout[-2000:], r.stderr[-2000:], file=sys.stderr)
        return 0 if all(checks.values()) else 1
    finally:
        if server is not None:
            server.terminate()
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
