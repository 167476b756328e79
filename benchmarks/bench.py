"""Wall time and peak RSS of validate, plan and apply on the embedded sandbox.

    python benchmarks/bench.py [--shops 1000 10000] [--keep DIR]

Each step runs the real ``reconciler`` command in a fresh process (so start-up cost is
included) and reports that process's own peak RSS (``wait4`` rusage). Steps, per N:
validate; plan with no changes; plan with 1 % of shops moved to another ERP (3 % of
bindings rotate); apply of that plan; and apply of every binding from an empty world
(N × 3 binds). Prints a Markdown table (the README's figures come from it).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from generate import generate

RECONCILER = [sys.executable, "-m", "reconciler"]


def run(args: list[str], cwd: Path, expect: tuple[int, ...] = (0,)) -> tuple[float, float]:
    """(wall seconds, peak RSS MiB) of one command."""
    start = time.perf_counter()
    # Every step reads the files (no parse cache: scale_bench.py measures the warm plan), from
    # compiled bytecode as an installed tool does (an inherited PYTHONDONTWRITEBYTECODE is dropped).
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"} | {"RECONCILER_NO_CACHE": "1"}
    proc = subprocess.Popen([*RECONCILER, "-C", str(cwd), *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    if code not in expect:
        err = proc.stderr.read().decode() if proc.stderr else ""
        raise SystemExit(f"{' '.join(args)} exited {code}:\n{err[-2000:]}")
    return wall, usage.ru_maxrss / 1024


def bench(n: int, root: Path) -> list[tuple[str, float, float]]:
    rows: list[tuple[str, float, float]] = []
    same = root / f"same-{n}"
    generate(same, shops=n, bound=True)
    run(["sandbox", "load", str(same / "world.yaml")], same)
    rows.append(("validate", *run(["validate"], same)))
    rows.append(("plan, no changes", *run(["plan", "--detailed-exitcode"], same)))
    moved = root / f"moved-{n}"
    changed = generate(moved, shops=n, bound=True, change_share=0.01)
    run(["sandbox", "load", str(moved / "world.yaml")], moved)
    rows.append((f"plan, 1 % changes ({changed * 3} rotations)", *run(["plan", "--detailed-exitcode"], moved, (2,))))
    rows.append((f"apply, 1 % changes ({changed * 3} rotations)", *run(["apply", "--auto-approve"], moved)))
    empty = root / f"empty-{n}"
    generate(empty, shops=n, bound=False)
    run(["sandbox", "load", str(empty / "world.yaml")], empty)
    rows.append((f"apply from empty ({n * 3} binds)", *run(["apply", "--auto-approve", "--force"], empty)))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shops", type=int, nargs="+", default=[1000, 10000])
    ap.add_argument("--keep", type=Path, help="keep the generated agencies here")
    a = ap.parse_args()
    root = a.keep or Path(tempfile.mkdtemp(prefix="reconciler-bench-"))
    try:
        print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores\n")
        print("| shops | step | wall s | peak RSS MiB |\n|---:|---|---:|---:|")
        for n in a.shops:
            for step, wall, rss in bench(n, root):
                print(f"| {n:,} | {step} | {wall:.2f} | {rss:.0f} |", flush=True)
    finally:
        if a.keep is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
