"""The HTML report at agency scale: its size, how long reconciler takes to write it, and how
long headless Chromium takes to open it and to filter its table.

    python benchmarks/html_bench.py [--shops 10000] [--keep DIR] [--screenshot docs/report-plan.png]

Two agencies of N shops (3 bindings each, benchmarks/generate.py): one whose platform holds
nothing yet (the plan binds 3 × N, the audit finds 3 × N missing: the largest pages), and
one where 1 % of the shops moved to another ERP (the usual nightly case). For each page:
bytes, the wall time of the ``reconciler`` command that writes it, the time from navigation
to the load event in Chromium (the best of three loads, after one to warm the browser), and
the time to filter the table by a shop name. Targets: under 5 MB and open in under 3 s.

``--screenshot PATH`` also renders the example agency's plan (configs/) and saves a
screenshot of the page (the README's picture).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT / "tests"))
from browser import Browser  # noqa: E402  (the tests' Chromium driver)
from generate import generate  # noqa: E402

RECONCILER = [sys.executable, "-m", "reconciler"]


def write_page(config: Path, command: str, out: Path, fmt: str = "html", *, cwd: Path | None = None) -> float:
    """Run ``reconciler COMMAND --format FMT`` into ``out``; its wall seconds."""
    start = time.perf_counter()
    with out.open("wb") as f:
        proc = subprocess.run([*RECONCILER, "-C", str(config), command, "--format", fmt], stdout=f,
                              stderr=subprocess.PIPE, check=False, cwd=cwd)
    if proc.returncode not in (0, 1, 2):
        raise SystemExit(f"{command} exited {proc.returncode}: {proc.stderr.decode()[-2000:]}")
    return time.perf_counter() - start


def open_times(browser: Browser, page: Path, warm: Path) -> tuple[float, float, int]:
    """(best load seconds of three, seconds to filter by a name, rows) after a warm-up page."""
    browser.open(warm)
    loads = []
    for _ in range(3):
        browser.events.clear()
        loads.append(browser.open(page))
    rows = int(browser.eval("document.querySelectorAll('#shops tbody tr').length"))
    start = time.perf_counter()
    browser.type_into("#q", "店铺4242")
    browser.eval("document.getElementById('shown').textContent")
    filtered = time.perf_counter() - start
    if browser.errors():
        raise SystemExit(f"{page}: {browser.errors()}")
    return min(loads), filtered, rows


def screenshot(browser: Browser, root: Path, path: Path) -> None:
    shutil.copytree(ROOT / "configs", root / "configs", ignore=shutil.ignore_patterns(".reconciler"))
    page = root / "example-plan.html"
    write_page(Path("configs"), "plan", page, cwd=root)   # run as CI does: -C configs
    browser.resize(1100, 900)
    browser.open(page)
    browser.eval("document.querySelectorAll('#shops details')[1].open = true")
    path.parent.mkdir(parents=True, exist_ok=True)
    browser.screenshot(path, full_page=True)
    print(f"\nscreenshot of the example agency's plan: {path}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shops", type=int, default=10_000)
    ap.add_argument("--keep", type=Path, help="keep the generated agencies and pages here")
    ap.add_argument("--screenshot", type=Path, help="save a screenshot of the example agency's plan here")
    a = ap.parse_args()
    root = a.keep or Path(tempfile.mkdtemp(prefix="reconciler-html-bench-"))
    root.mkdir(parents=True, exist_ok=True)
    try:
        agencies = {}
        for name, kw in (("nothing bound yet", {"bound": False}), ("1 % moved", {"bound": True, "change_share": 0.01})):
            d = root / name.replace(" ", "-").replace("%", "pct")
            generate(d, shops=a.shops, **kw)  # type: ignore[arg-type]
            subprocess.run([*RECONCILER, "-C", str(d), "sandbox", "load", str(d / "world.yaml")], check=True,
                           stdout=subprocess.DEVNULL)
            agencies[name] = d
        warm = root / "warm.html"
        warm.write_text("<!DOCTYPE html><title>warm</title>", encoding="utf-8")
        print("| shops | agency | page | MB | write s (html / json) | open s (Chromium) | filter s | rows |\n"
              "|---:|---|---|---:|---:|---:|---:|---:|")
        with Browser.start(root / "chromium-profile") as browser:
            for name, d in agencies.items():
                for command in ("plan", "drift"):
                    page = d / f"{command}.html"
                    wall = write_page(d, command, page)
                    json_wall = write_page(d, command, d / f"{command}.json", "json")
                    load, filtered, rows = open_times(browser, page, warm)
                    mb = page.stat().st_size / 1e6
                    print(f"| {a.shops:,} | {name} | {command} | {mb:.2f} | {wall:.2f} / {json_wall:.2f} | {load:.2f} |"
                          f" {filtered:.2f} |"
                          f" {rows:,} |", flush=True)
            if a.screenshot:
                screenshot(browser, root, a.screenshot)
    finally:
        if a.keep is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
