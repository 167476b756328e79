"""Agencies as agencies organise them: client folders, profiles, labels and waivers.

    python benchmarks/agency_bench.py [--shops 10000] [--clients 200] [--waived 4000 500] [--runs 5] [--keep DIR]

Two measurements, each step a fresh ``reconciler`` process (start-up included), the median
of ``--runs`` runs, wall time and the process's own peak RSS:

1. ``plan`` (no changes) of N shops in C client folders (``shops/client-NNN/shops.yaml``,
   each shop labelled with its client), once with every shop spelling out its ERP and three
   scenarios, once with shops saying only ``profile: std-<erp>`` (profiles.yaml holds one
   profile per ERP). The target: with profiles within 10 % of without.
2. ``validate`` of an agency of M shops (in client folders, with profiles) and W waivers.
   The target: under 1 s.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from generate import ERPS, SCENARIOS

RECONCILER = [sys.executable, "-m", "reconciler"]


def generate(out: Path, *, shops: int, clients: int, profiles: bool, waivers: int = 0) -> None:
    """An agency whose platform already holds every desired binding (plan: no changes)."""
    (out / "shops").mkdir(parents=True, exist_ok=True)
    (out / "reconciler.yaml").write_text("provider: {kind: sandbox, path: .reconciler/sandbox.db, world: world.yaml}\n",
                                         encoding="utf-8")
    (out / "erps.yaml").write_text("erps:\n" + "".join(f'  {k}: {{name: {n}, appkey: "{a}"}}\n' for k, n, a in ERPS),
                                   encoding="utf-8")
    if profiles:
        (out / "profiles.yaml").write_text("profiles:\n" + "".join(
            f"  std-{k}:\n    erp: {k}\n    labels: {{tier: standard}}\n    scenarios:\n"
            + "".join(f"      {s}: {{}}\n" for s in SCENARIOS) for k, _, _ in ERPS), encoding="utf-8")
    world = ['app: {app_key: "30000001", app_secret: "bench-secret"}', "apps:"]
    world += [f'  "{a}": {{name: {n}, scenarios: [{", ".join(SCENARIOS)}], detail_whitelisted: true}}' for _, n, a in ERPS]
    world.append("shops:")
    per = -(-shops // clients)
    ids: list[str] = []
    for c in range(clients):
        lines = ["shops:"]
        for i in range(c * per, min((c + 1) * per, shops)):
            sid = str(10_000_000 + i)
            ids.append(sid)
            erp = ERPS[i % len(ERPS)]
            if profiles:
                lines += [f'  - id: "{sid}"', f"    name: 店铺{i}", f"    profile: std-{erp[0]}",
                          f"    labels: {{client: client-{c:03d}}}"]
            else:
                lines += [f'  - id: "{sid}"', f"    name: 店铺{i}", f"    erp: {erp[0]}",
                          f"    labels: {{client: client-{c:03d}, tier: standard}}", "    scenarios:",
                          *(f"      {s}: {{}}" for s in SCENARIOS)]
            binds = ", ".join(f'{s}: "{erp[2]}"' for s in SCENARIOS)
            world.append(f'  "{sid}": {{name: 店铺{i}, session: sess-{sid}, bindings: {{{binds}}}}}')
        folder = out / "shops" / f"client-{c:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "shops.yaml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    if waivers:
        kinds = ("not-integrated", "unmanaged", "detail-not-whitelisted", "status-not-synced", "differs")
        (out / "waivers.yaml").write_text("waivers:\n" + "".join(
            f'  - {{shop: "{ids[(i * 7) % len(ids)]}", scenario: {SCENARIOS[i % 3]}, kind: {kinds[i % len(kinds)]},'
            f' until: 2099-01-31, reason: "ticket {4000 + i}: the ERP integrates it by then"}}\n'
            for i in range(waivers)), encoding="utf-8")
    (out / "world.yaml").write_text("\n".join(world) + "\n", encoding="utf-8")


def run(args: list[str], cwd: Path, expect: tuple[int, ...] = (0,)) -> tuple[float, float, float]:
    """(wall seconds, CPU seconds, peak RSS MiB) of one command. CPU time (user + system) is
    what the wall time comes to on an idle machine; it varies far less when other work runs."""
    env = {**os.environ, "RECONCILER_TODAY": "2098-12-01"}   # every waiver current, none ending over a year ahead
    start = time.perf_counter()
    proc = subprocess.Popen([*RECONCILER, "-C", str(cwd), *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    if code not in expect:
        err = proc.stderr.read().decode() if proc.stderr else ""
        raise SystemExit(f"{' '.join(args)} exited {code}:\n{err[-2000:]}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def medians(got: list[tuple[float, float, float]]) -> tuple[float, float, float]:
    return statistics.median(g[0] for g in got), statistics.median(g[1] for g in got), max(g[2] for g in got)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shops", type=int, default=10_000)
    ap.add_argument("--clients", type=int, default=200)
    ap.add_argument("--waived", type=int, nargs=2, default=[4000, 500], metavar=("SHOPS", "WAIVERS"))
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--keep", type=Path, help="keep the generated agencies here")
    a = ap.parse_args()
    root = a.keep or Path(tempfile.mkdtemp(prefix="reconciler-agency-bench-"))
    try:
        plain, profiled, waived = root / "plain", root / "profiles", root / "waivers"
        generate(plain, shops=a.shops, clients=a.clients, profiles=False)
        generate(profiled, shops=a.shops, clients=a.clients, profiles=True)
        generate(waived, shops=a.waived[0], clients=a.clients, profiles=True, waivers=a.waived[1])
        for d in (plain, profiled):
            run(["sandbox", "load", str(d / "world.yaml")], d)
            run(["plan", "--detailed-exitcode"], d)   # warm the page cache; the database exists
        print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores, median of {a.runs}\n")
        print("| agency | step | wall s | CPU s | peak RSS MiB |\n|---|---|---:|---:|---:|")
        rows = []
        # interleaved, so that the machine's load affects both alike
        results: dict[str, list[tuple[float, float, float]]] = {"plain": [], "profiles": []}
        for _ in range(a.runs):
            results["plain"].append(run(["plan", "--detailed-exitcode"], plain))
            results["profiles"].append(run(["plan", "--detailed-exitcode"], profiled))
        for name, got in results.items():
            wall, cpu, rss = medians(got)
            rows.append((wall, cpu))
            what = "every shop spells out its bindings" if name == "plain" else "shops say profile: std-<erp>"
            print(f"| {a.shops:,} shops in {a.clients} client folders, {what} | plan, no changes | {wall:.2f} | {cpu:.2f}"
                  f" | {rss:.0f} |", flush=True)
        wall, cpu, rss = medians([run(["validate"], waived) for _ in range(a.runs)])
        print(f"| {a.waived[0]:,} shops in {a.clients} client folders with profiles, {a.waived[1]} waivers | validate |"
              f" {wall:.2f} | {cpu:.2f} | {rss:.0f} |")
        print(f"\nplan with profiles / without: wall {rows[1][0] / rows[0][0]:.2f}, CPU {rows[1][1] / rows[0][1]:.2f}"
              f" (target ≤ 1.10); validate: wall {wall:.2f} s, CPU {cpu:.2f} s (target < 1 s)")
    finally:
        if a.keep is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
