"""Shared fixtures: a config directory with a sandbox world, driven through the real CLI.

Nothing of ours is mocked: tests write YAML, run ``reconciler`` commands in-process with
click's runner, and look at the real SQLite sandbox afterwards.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result

from reconciler.cli import main
from reconciler.platform import SandboxPlatform

ERPS = """\
erps:
  jushuitan:    {name: 聚水潭, appkey: "21345678"}
  wangdiantong: {name: 旺店通, appkey: "12345679"}
  inhouse:      {name: 自研ERP, appkey: "31415926"}
  cainiao:      {name: 菜鸟仓, appkey: virtualAppKey}
"""

APPS = {
    "21345678": {"name": "聚水潭", "scenarios": ["intercept_shipment", "modify_address", "order_status"],
                 "detail_whitelisted": True},
    "12345679": {"name": "旺店通", "scenarios": ["intercept_shipment", "modify_address"]},
    "31415926": {"name": "自研ERP", "scenarios": ["intercept_shipment", "modify_address", "order_status"]},
}

SETTINGS = """\
provider: {kind: sandbox, path: .reconciler/sandbox.db, world: world.yaml}
apply: {retries: 3, backoff_s: 0, max_backoff_s: 0}
"""


class Agency:
    """A config directory plus its sandbox, and the CLI to drive it."""

    def __init__(self, root: Path) -> None:
        self.dir = root
        (root / "shops").mkdir(parents=True, exist_ok=True)
        self.write("erps.yaml", ERPS)
        self.write("reconciler.yaml", SETTINGS)

    def write(self, rel: str, text: str | bytes) -> Path:
        p = self.dir / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(text, bytes):
            p.write_bytes(text)
        else:
            p.write_text(textwrap.dedent(text), encoding="utf-8")
        return p

    def shops(self, text: str, name: str = "a.yaml") -> Path:
        return self.write(f"shops/{name}", text)

    def world(self, shops: dict[str, Any], *, apps: dict[str, Any] | None = None,
              faults: list[dict[str, Any]] | None = None, **extra: Any) -> None:
        """Write the world and (re)load it into the sandbox."""
        world: dict[str, Any] = {"app": {"app_key": "30000001", "app_secret": "s3cret-for-tests"},
                                 "apps": APPS if apps is None else apps, "shops": shops, **extra}
        if faults:
            world["faults"] = faults
        self.write("world.yaml", yaml.safe_dump(world, allow_unicode=True))
        db = self.dir / ".reconciler" / "sandbox.db"
        if db.exists():
            r = self.run("sandbox", "load", str(self.dir / "world.yaml"))
            assert r.exit_code == 0, r.output

    def run(self, *args: str, input: str | None = None, env: dict[str, str] | None = None) -> Result:
        return CliRunner().invoke(main, ["-C", str(self.dir), *args], input=input, env=env, catch_exceptions=False)

    def platform(self) -> SandboxPlatform:
        return SandboxPlatform(self.dir / ".reconciler" / "sandbox.db")

    def bindings(self, shop: str) -> dict[str, str]:
        """The sandbox's bindings of a shop, scenario → appkey."""
        p = self.platform()
        try:
            body = p.get(shop)
        finally:
            p.close()
        return {b["scenario"]: b["appkey"] for b in body["bindings"]}

    def self_service(self, shop: str) -> bool:
        p = self.platform()
        try:
            return bool(p.get(shop)["buyer_self_service"])
        finally:
            p.close()


@pytest.fixture
def agency(tmp_path: Path) -> Iterator[Agency]:
    yield Agency(tmp_path / "configs")
