"""Generate a synthetic agency: N shops with 3 bindings each, and the sandbox world it runs on.

    python benchmarks/generate.py OUT_DIR --shops 10000 [--per-file 100] [--change-share 0.01] [--bound]

Writes OUT_DIR/{reconciler.yaml, erps.yaml, shops/*.yaml, world.yaml}. With ``--bound``
the world already holds every desired binding (so ``plan`` shows no changes); then
``--change-share`` of the shops are moved to another ERP in the config (rotations).
"""

from __future__ import annotations

import argparse
from pathlib import Path

ERPS = [("jushuitan", "聚水潭", "21345678"), ("wangdiantong", "旺店通", "12345679"),
        ("guanyi", "管易云", "23456789"), ("jst2", "吉客云", "34567890"), ("inhouse", "自研ERP", "31415926")]
SCENARIOS = ("intercept_shipment", "modify_address", "order_status")


def generate(out: Path, *, shops: int, per_file: int = 100, change_share: float = 0.0, bound: bool = True) -> int:
    """Write the agency; return the number of shops whose ERP the config changes."""
    (out / "shops").mkdir(parents=True, exist_ok=True)
    (out / "reconciler.yaml").write_text(
        "provider: {kind: sandbox, path: .reconciler/sandbox.db, world: world.yaml}\n"
        "safety: {max_change_share: 0.3, min_managed: 10}\n", encoding="utf-8")
    (out / "erps.yaml").write_text(
        "erps:\n" + "".join(f'  {k}: {{name: {n}, appkey: "{a}"}}\n' for k, n, a in ERPS), encoding="utf-8")
    every = round(1 / change_share) if change_share else 0
    changed = 0
    world = ['app: {app_key: "30000001", app_secret: "bench-secret"}', "apps:"]
    world += [f'  "{a}": {{name: {n}, scenarios: [{", ".join(SCENARIOS)}], detail_whitelisted: true}}' for _, n, a in ERPS]
    world.append("shops:")
    for f in range(0, shops, per_file):
        lines = ["shops:"]
        for i in range(f, min(f + per_file, shops)):
            sid = str(10_000_000 + i)
            erp = ERPS[i % len(ERPS)]
            want = erp
            if every and i % every == 0:
                want = ERPS[(i + 1) % len(ERPS)]
                changed += 1
            lines += [f'  - id: "{sid}"', f"    name: 店铺{i}", f"    erp: {want[0]}", "    scenarios:",
                      "      intercept_shipment: {}", "      modify_address: {}", "      order_status: {}"]
            binds = ", ".join(f'{s}: "{erp[2]}"' for s in SCENARIOS) if bound else ""
            world.append(f'  "{sid}": {{name: 店铺{i}, session: sess-{sid}, bindings: {{{binds}}}}}')
        (out / "shops" / f"shops-{f // per_file:05d}.yaml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (out / "world.yaml").write_text("\n".join(world) + "\n", encoding="utf-8")
    return changed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path)
    ap.add_argument("--shops", type=int, default=1000)
    ap.add_argument("--per-file", type=int, default=100)
    ap.add_argument("--change-share", type=float, default=0.0)
    ap.add_argument("--unbound", action="store_true", help="start from a world with no bindings")
    a = ap.parse_args()
    n = generate(a.out, shops=a.shops, per_file=a.per_file, change_share=a.change_share, bound=not a.unbound)
    print(f"wrote {a.shops} shops to {a.out} ({n} with a changed ERP)")


if __name__ == "__main__":
    main()
