"""import writes what a hostile platform says only through the YAML emitter, or refuses it
(issue: "import writes platform text into YAML unescaped")."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from hostile import HostileGateway, ok

from reconciler.cli import main

SECRET = "s3cret-hostile"


def _config(root: Path, url: str) -> Path:
    cfg = root / "configs"
    (cfg / "shops").mkdir(parents=True)
    (cfg / "erps.yaml").write_text('erps:\n  jushuitan: {name: 聚水潭, appkey: "21345678"}\n', encoding="utf-8")
    (cfg / "shops" / "a.yaml").write_text("shops: []\n", encoding="utf-8")
    (cfg / "sessions.yaml").write_text('"100001": "sess-1"\n"100002": "sess-2"\n', encoding="utf-8")
    (cfg / "reconciler.yaml").write_text(
        f'provider: {{kind: top, url: "{url}", app_key: "30000001", app_secret_env: HOSTILE_SECRET,'
        ' sessions_file: sessions.yaml}\napply: {retries: 0}\n', encoding="utf-8")
    return cfg


def _get(shop_id: Any, bindings: Any, name: Any = "店") -> Any:
    return lambda params: ok("erp.binding.get", {"shop_id": shop_id, "shop_name": name, "bindings": bindings,
                                                 "buyer_self_service": False, "detail_whitelisted": False})


def _import(cfg: Path, *shops: str) -> Any:
    args = ["-C", str(cfg), "import", *(a for s in shops for a in ("--shop", s))]
    return CliRunner().invoke(main, args, env={"HOSTILE_SECRET": SECRET})


@pytest.mark.parametrize("shop_id, bindings", [
    pytest.param("100001", [{"scenario": "intercept_shipment", "appkey": "2134\n  - id: \"999999\"\n#", "revision": 1}],
                 id="appkey-with-newlines-injecting-a-shop"),
    pytest.param("100001", [{"scenario": "intercept_shipment", "appkey": "abc", "revision": 1}], id="appkey-not-digits"),
    pytest.param("100001", [{"scenario": "order_status", "appkey": "virtualAppKey", "revision": 1}],
                 id="virtualAppKey-outside-modify_address"),
    pytest.param("10000x", [], id="shop-id-not-digits"),
    pytest.param("100009", [], id="another-shop's-id"),
])
def test_a_platform_answer_the_config_cannot_hold_is_not_imported(tmp_path: Path, shop_id: str, bindings: Any) -> None:
    with HostileGateway({"erp.binding.get": _get(shop_id, bindings)}) as gw:
        cfg = _config(tmp_path, gw.url)
        r = _import(cfg, "100001")
    assert r.exit_code == 1, r.output
    assert "not imported" in r.stderr and "Traceback" not in r.output
    assert not (cfg / "shops" / "imported.yaml").exists()


@pytest.mark.parametrize("name", ["a\n  - id: \"999999\"", "x\u2028y", "\x85\x00\x1b[31m", "it's \"quoted\" \\ # not a comment",
                                  "yes", "0123", "- list", "{a: b}", "&anchor *alias", "店名 🛒"])
def test_shop_names_are_emitted_so_they_read_back_exactly(tmp_path: Path, name: str) -> None:
    bindings = [{"scenario": "intercept_shipment", "appkey": "21345678", "revision": 1}]
    with HostileGateway({"erp.binding.get": _get("100001", bindings, name)}) as gw:
        cfg = _config(tmp_path, gw.url)
        r = _import(cfg, "100001")
    assert r.exit_code == 0, r.output
    data = yaml.safe_load((cfg / "shops" / "imported.yaml").read_text(encoding="utf-8"))
    assert data == {"shops": [{"id": "100001", "name": name, "erp": "jushuitan",
                               "scenarios": {"intercept_shipment": {}}}]}
    assert CliRunner().invoke(main, ["-C", str(cfg), "validate"]).exit_code == 0
