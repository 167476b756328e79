"""What the state store costs: apply and plan before it, and with it on SQLite and on PostgreSQL.

    python benchmarks/state_bench.py [--runs 5] [--apply-shops 1000] [--plan-shops 10000]
        [--before dc2026d] [--after . | DIR | REV] [--no-pg] [--pg-fast] [--steps apply,plan] [--keep DIR]

The variants run the same steps, each step a fresh process (start-up included) whose wall
time, CPU time (user + system) and peak RSS (``wait4`` rusage) are taken; the medians of
``--runs`` repetitions are reported, the variants interleaved within each repetition:

- before: the code before the state store (``--before``, git commit dc2026d: the history in
  its own SQLite file), checked out with ``git worktree add --detach`` into a temp dir and
  removed at the end;
- SQLite: the code with the store (``--after``: ``.`` is a copy of this working tree's
  ``reconciler/`` taken at the start, so edits made meanwhile do not reach the run; or a
  directory holding a ``reconciler/`` package; or a git revision, checked out like before),
  the default store ``<config>/.reconciler/state.db``;
- PostgreSQL: the same code with ``RECONCILER_STATE_URL`` naming a throwaway server
  (``tests/pgserver.py``) on 127.0.0.1, with the server's default durability (fsync,
  synchronous_commit and full_page_writes on, as the SQLite store's ``synchronous=FULL``);
  ``--pg-fast`` keeps the test server's settings (all three off);
- no store (plan only, to tell the store's cost from other changes): the same code on a
  config dir that has no store yet, so plan does not open one.

Every variant runs in this venv, ``python -c`` with the variant's tree first on
``sys.path`` and the editable install's finder taken off ``sys.meta_path`` (it would serve
modules the tree lacks from the working tree); it checks that ``reconciler`` comes from that
tree, then runs it as ``python -m reconciler`` would (``runpy``), in the config dir.

Steps:
- apply of N shops from an empty world (``apply --auto-approve --force``: N × 3 binds), each
  run on a fresh copy of the config dir and the sandbox world, with a store (before: a
  history database) that exists and is empty, a fresh PostgreSQL database per run; one
  warm-up run of each variant first (not counted) checks that the history holds N × 3
  writes, the journal N shops, and that a plan then shows no changes;
- plan of M shops with no changes (``plan --detailed-exitcode``, exit 0), after one apply of
  all M shops from an empty world (not timed) left the store holding that run (M × 3
  history rows, M journal rows), which plan reads to name shops an interrupted apply left.

Prints Markdown tables (the README's figures come from them): median wall time, median peak
RSS and the time as a ratio to before; then, less disturbed by other load on the machine,
the median CPU time (for PostgreSQL it leaves out the server's own work) and the fastest
wall time, each with its ratio to before.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from generate import generate

REPO = Path(__file__).resolve().parent.parent
BEFORE_REV = "dc2026d"
TARGETS = {"apply": 1.5, "plan": 1.15}

# Import ``reconciler`` from the tree in argv[1] only: that tree first on sys.path, and the
# editable install's finder dropped (it would serve submodules the tree lacks, e.g. the old
# code's missing ``reconciler.state``, from the working tree); then check where it came from.
USE_TREE = ("import os, sys; src = os.path.realpath(sys.argv.pop(1)); sys.path.insert(0, src); "
            "sys.meta_path[:] = [f for f in sys.meta_path if not getattr(f, '__module__', '').startswith('__editable__')]; "
            "import reconciler; where = os.path.realpath(reconciler.__file__); "
            "where.startswith(src + os.sep) or sys.exit(f'reconciler imported from {where}, not from {src}'); ")
# Then run it as ``python -m reconciler`` would.
LAUNCH = USE_TREE + "import runpy; runpy.run_module('reconciler', run_name='__main__', alter_sys=True)"
# Create the empty store (or, before it, the history database) the settings name.
PREPARE_AFTER = (USE_TREE + "from pathlib import Path; from reconciler.state import DEFAULT_URL, ENV_URL, open_store; "
                 "open_store(os.environ.get(ENV_URL, DEFAULT_URL), config_dir=Path(sys.argv[1])).close()")
PREPARE_BEFORE = (USE_TREE + "from pathlib import Path; from reconciler.history import DEFAULT_PATH, History; "
                  "History(Path(sys.argv[1]) / DEFAULT_PATH).close()")
WHERE = (USE_TREE + "import importlib.util; state = importlib.util.find_spec('reconciler.state'); "
         "print(reconciler.__file__, 'with reconciler.state' if state else 'without reconciler.state')")


@dataclass
class Variant:
    name: str
    src: Path
    store: bool  # the code has the state store
    pg: Any = None  # the PgServer, for the PostgreSQL variant
    url: str | None = None  # its current database
    no_store: bool = False  # plan on a config dir without a store (the store's code, not opening one)

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RECONCILER_", "PYTHON"))}
        if self.url is not None:
            env["RECONCILER_STATE_URL"] = self.url
        return env

    def use_database(self, name: str) -> None:
        """A fresh, empty PostgreSQL database for the next runs (PostgreSQL variant only)."""
        if self.pg is not None:
            self.pg.drop_database(name)
            self.url = self.pg.create_database(name)


@dataclass
class Samples:
    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    rss: list[float] = field(default_factory=list)

    def add(self, sample: tuple[float, float, float]) -> None:
        for to, value in zip((self.wall, self.cpu, self.rss), sample, strict=True):
            to.append(value)


def run(v: Variant, args: list[str], cwd: Path, expect: tuple[int, ...] = (0,)) -> tuple[float, float, float]:
    """(wall s, CPU s, peak RSS MiB) of one ``reconciler`` command of variant ``v``, run in ``cwd``."""
    cmd = [sys.executable, "-c", LAUNCH, str(v.src), "-C", str(cwd), *args]
    with tempfile.TemporaryFile() as err:  # a file, not a pipe: a chatty run never blocks on it
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=cwd, env=v.env(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        code = os.waitstatus_to_exitcode(status)
        if code not in expect:
            err.seek(0)
            raise SystemExit(f"{v.name}: reconciler {' '.join(args)} exited {code}:\n{err.read().decode()[-2000:]}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def python(v: Variant, code: str, *args: str) -> str:
    r = subprocess.run([sys.executable, "-c", code, str(v.src), *args], env=v.env(), cwd=tempfile.gettempdir(),
                       capture_output=True, text=True, check=False)
    if r.returncode != 0:
        raise SystemExit(f"{v.name}: {r.stderr[-2000:]}")
    return r.stdout.strip()


def prepare(v: Variant, cfg: Path) -> None:
    """The config dir's world loaded into its sandbox and an empty store (or history) in place."""
    run(v, ["sandbox", "load", str(cfg / "world.yaml")], cfg)
    python(v, PREPARE_AFTER if v.store else PREPARE_BEFORE, str(cfg))


def count(v: Variant, cfg: Path, table: str) -> int:
    """Rows in ``table`` of the variant's store (before: its history database)."""
    if v.url is not None:
        import psycopg

        with psycopg.connect(v.url) as conn:
            row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
            return int(row[0]) if row else 0
    with sqlite3.connect(cfg / ".reconciler" / ("state.db" if v.store else "history.db")) as conn:
        return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])


def check_store(v: Variant, cfg: Path, shops: int) -> str:
    """That an apply of ``shops`` shops from empty is all in the history (and journal): a short note."""
    writes = count(v, cfg, "changes")
    if writes != shops * 3:
        raise SystemExit(f"{v.name}: the history holds {writes} writes after applying {shops * 3} binds")
    if not v.store:
        return f"{writes} history rows"
    journal = count(v, cfg, "journal")
    if journal != shops:
        raise SystemExit(f"{v.name}: the journal holds {journal} rows after applying {shops} shops")
    return f"{writes} history rows, {journal} journal rows"


def note(text: str) -> None:
    print(f"  {text}", file=sys.stderr, flush=True)


def bench_apply(variants: list[Variant], n: int, runs: int, root: Path) -> dict[str, Samples]:
    base = root / f"apply-{n}"
    generate(base, shops=n, bound=False)
    out = {v.name: Samples() for v in variants}
    for rep in range(runs + 1):  # 0: the warm-up (byte code compiled, caches filled, results checked), not counted
        for v in variants:
            cfg = root / f"apply-{n}-{v.name}-{rep}"
            shutil.copytree(base, cfg)
            v.use_database(f"apply_{n}_{v.name.lower()}_{rep}")
            prepare(v, cfg)
            sample = run(v, ["apply", "--auto-approve", "--force"], cfg)
            if rep == 0:
                what = check_store(v, cfg, n)
                run(v, ["plan", "--detailed-exitcode"], cfg)  # exit 0: every bind landed
                note(f"{v.name}: apply {n} from empty checked ({what}, then no changes)")
            else:
                out[v.name].add(sample)
                note(f"{v.name}: apply {n} run {rep}: {sample[0]:.2f} s, CPU {sample[1]:.2f} s, {sample[2]:.0f} MiB")
            shutil.rmtree(cfg)
    return out


def bench_plan(variants: list[Variant], n: int, runs: int, root: Path) -> dict[str, Samples]:
    base = root / f"plan-{n}"
    generate(base, shops=n, bound=False)
    cfgs: dict[str, Path] = {}
    for v in variants:
        cfg = cfgs[v.name] = root / f"plan-{n}-{v.name.replace(' ', '-')}"
        if v.no_store:  # the SQLite variant's bound world, without its store
            shutil.copytree(cfgs["SQLite"], cfg, ignore=shutil.ignore_patterns("state.db*"))
            note(f"{v.name}: plan {n} on a copy of SQLite's config dir and world, without the store")
            continue
        shutil.copytree(base, cfg)
        v.use_database(f"plan_{n}_{v.name.lower()}")
        prepare(v, cfg)
        wall = run(v, ["apply", "--auto-approve", "--force"], cfg)[0]  # the store then holds a run of n shops
        note(f"{v.name}: plan {n} set up by an apply of {n} shops ({wall:.1f} s; {check_store(v, cfg, n)})")
    out = {v.name: Samples() for v in variants}
    for rep in range(1, runs + 1):
        for v in variants:
            sample = run(v, ["plan", "--detailed-exitcode"], cfgs[v.name])  # exit 0: no changes
            out[v.name].add(sample)
            note(f"{v.name}: plan {n} run {rep}: {sample[0]:.2f} s, CPU {sample[1]:.2f} s, {sample[2]:.0f} MiB")
    return out


@contextmanager
def checkout(rev: str, root: Path) -> Iterator[Path]:
    """A detached worktree of ``rev`` under ``root``, removed afterwards."""
    path = root / f"src-{rev.replace('/', '_')}"
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", "--quiet", str(path), rev], check=True)
    try:
        yield path
    finally:
        subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(path)], check=False)


@contextmanager
def after_tree(after: str, root: Path) -> Iterator[Path]:
    """``.``: a copy of this working tree's ``reconciler/``; a directory holding a
    ``reconciler/`` package: that directory; anything else: a git revision, checked out."""
    if after == ".":
        path = root / "src-worktree"
        shutil.copytree(REPO / "reconciler", path / "reconciler", ignore=shutil.ignore_patterns("__pycache__"))
        yield path
    elif (Path(after) / "reconciler" / "__init__.py").is_file():
        yield Path(after).resolve()
    else:
        with checkout(after, root) as path:
            yield path


def describe(src: Path) -> str:
    """The commit a checkout holds; for a working-tree copy, HEAD and what in reconciler/ had changed."""
    if src.name != "src-worktree" and not (src / ".git").exists():
        return f"the tree in {src}"
    tree = src if (src / ".git").exists() else REPO
    head = subprocess.run(["git", "-C", str(tree), "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                          check=False).stdout.strip()
    if tree != REPO:
        return head
    status = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--", "reconciler"],
                            capture_output=True, text=True, check=False).stdout.splitlines()
    changed = sorted(line[3:] for line in status if line.strip())
    return f"working tree at {head}" + (f" + uncommitted {', '.join(changed)}" if changed else "")


def cell(s: Samples | None, base: Samples) -> str:
    """Median wall time, median peak RSS, and the time's ratio to before."""
    if s is None:
        return "—"
    t = statistics.median(s.wall)
    ratio = "" if s is base else f" ({t / statistics.median(base.wall):.2f}×)"
    return f"{t:.2f} s, {statistics.median(s.rss):.0f} MiB{ratio}"


def steady_cell(s: Samples | None, base: Samples) -> str:
    """Median CPU time and the fastest wall time, each with its ratio to before."""
    if s is None:
        return "—"
    cpu, fastest = statistics.median(s.cpu), min(s.wall)
    if s is base:
        return f"{cpu:.2f} s; {fastest:.2f} s"
    return (f"{cpu:.2f} s ({cpu / statistics.median(base.cpu):.2f}×); "
            f"{fastest:.2f} s ({fastest / min(base.wall):.2f}×)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5, help="repetitions per step and variant (median reported)")
    ap.add_argument("--apply-shops", type=int, default=1000)
    ap.add_argument("--plan-shops", type=int, default=10000)
    ap.add_argument("--before", default=BEFORE_REV, help="the code before the state store (a git revision)")
    ap.add_argument("--after", default=".",
                    help="the code with it: . for this working tree (default), a directory holding reconciler/, or a git revision")
    ap.add_argument("--no-pg", action="store_true", help="SQLite only")
    ap.add_argument("--pg-fast", action="store_true", help="PostgreSQL without fsync (the test server's settings)")
    ap.add_argument("--steps", default="apply,plan", help="which steps to time: apply, plan or both (comma-separated)")
    ap.add_argument("--keep", type=Path, help="work here (generated agencies, checkouts) and keep what is left")
    a = ap.parse_args()
    root = a.keep or Path(tempfile.mkdtemp(prefix="reconciler-state-bench-"))
    root.mkdir(parents=True, exist_ok=True)
    pg = None
    load = [os.getloadavg()[0]]
    try:
        with checkout(a.before, root) as before_src, after_tree(a.after, root) as after_src:
            variants = [Variant("before", before_src, store=False), Variant("SQLite", after_src, store=True)]
            if not a.no_pg:
                import pgserver

                if not a.pg_fast:
                    pgserver.SETTINGS.update(fsync="on", synchronous_commit="on", full_page_writes="on")
                pg = pgserver.PgServer()
                pg.start()
                variants.append(Variant("PostgreSQL", after_src, store=True, pg=pg))
            for v in variants:
                print(f"{v.name}: {describe(v.src)}; {python(v, WHERE)}", file=sys.stderr)
            no_store = Variant("no store", after_src, store=True, no_store=True)
            wanted = {w.strip() for w in a.steps.split(",") if w.strip()}
            if not wanted or wanted - set(TARGETS):
                raise SystemExit(f"--steps: choose from {', '.join(TARGETS)}")
            steps = []
            if "apply" in wanted:
                steps.append((f"apply {a.apply_shops:,} shops from empty ({a.apply_shops * 3:,} binds)", "apply",
                              bench_apply(variants, a.apply_shops, a.runs, root)))
            if "plan" in wanted:
                steps.append((f"plan {a.plan_shops:,} shops, no changes", "plan",
                              bench_plan([*variants, no_store], a.plan_shops, a.runs, root)))
            load.append(os.getloadavg()[0])
        pg_note = "" if pg is None else ("; PostgreSQL on 127.0.0.1, " + ("no fsync" if a.pg_fast else "fsync on"))
        print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores, median of {a.runs} runs{pg_note}; "
              f"load average {load[0]:.1f} at the start, {load[-1]:.1f} at the end\n")
        names = [*(v.name for v in variants), *([no_store.name] if "plan" in wanted else [])]
        print("| step | " + " | ".join(names) + " | target |\n|---|" + "---:|" * len(names) + "---:|")
        for title, kind, res in steps:
            cells = [cell(res.get(n), res["before"]) for n in names]
            print(f"| {title} | " + " | ".join(cells) + f" | ≤ {TARGETS[kind]}× |")
        print("\nLess disturbed by other load on the machine: median CPU time (user + system) of the reconciler"
              " process; fastest wall time of the runs:\n")
        print("| step | " + " | ".join(names) + " |\n|---|" + "---:|" * len(names))
        for title, _, res in steps:
            print(f"| {title} | " + " | ".join(steady_cell(res.get(n), res["before"]) for n in names) + " |")
    finally:
        if pg is not None:
            pg.stop()
        if a.keep is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
