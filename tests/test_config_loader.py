"""``load_config`` in-process: what a valid directory resolves to, and the loader's edges."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

from reconciler.config import load_config
from reconciler.errors import ConfigError
from reconciler.model import Scenario
from reconciler.settings import Settings

ERPS = """\
erps:
  jushuitan:    {name: 聚水潭, appkey: "21345678"}
  wangdiantong: {name: 旺店通, appkey: "12345679"}
  cainiao:      {name: 菜鸟仓, appkey: virtualAppKey}
"""


def write(root: Path, rel: str, text: str) -> None:
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(textwrap.dedent(text), encoding="utf-8")


def test_valid_config_resolves_every_way_of_naming_an_appkey(tmp_path: Path) -> None:
    write(tmp_path, "erps.yaml", ERPS)
    write(tmp_path, "shops/b.yml", """\
        shops:
          - id: "100002"
            scenarios:
              intercept_shipment: {appkey: "01234567"}
        """)
    write(tmp_path, "shops/a.yaml", """\
        # comment
        shops:
          - id: "100001"
            name: 一号店
            erp: jushuitan
            protect: true
            scenarios:
              intercept_shipment:
              modify_address: {erp: cainiao, buyer_self_service: true}
              order_status: {state: unbound}
        """)
    write(tmp_path, "shops/notes.txt", "not a shop file")
    config = load_config(tmp_path)
    assert config.warnings == []
    assert config.settings == Settings()
    assert [s.id for s in config.shops] == ["100001", "100002"]
    one, two = config.shops
    assert (one.name, one.erp, one.protect, str(one.source)) == ("一号店", "jushuitan", True, f"{tmp_path}/shops/a.yaml:3")
    b = one.bindings
    assert list(b) == [Scenario.intercept_shipment, Scenario.modify_address, Scenario.order_status]
    assert (b[Scenario.intercept_shipment].appkey, b[Scenario.intercept_shipment].erp) == ("21345678", "jushuitan")
    assert b[Scenario.intercept_shipment].source.line == 5  # the shop's erp: the value it came from
    assert (b[Scenario.modify_address].appkey, b[Scenario.modify_address].buyer_self_service) == ("virtualAppKey", True)
    assert b[Scenario.modify_address].source.line == 9
    assert b[Scenario.order_status].appkey is None
    assert two.bindings[Scenario.intercept_shipment].appkey == "01234567"  # quoted: leading zero kept
    assert config.erp_names_by_appkey() == {"21345678": "jushuitan", "12345679": "wangdiantong", "virtualAppKey": "cainiao"}


def test_settings_file_with_only_comments_means_defaults(tmp_path: Path) -> None:
    write(tmp_path, "erps.yaml", ERPS)
    write(tmp_path, "reconciler.yaml", "# every section is optional\n")
    write(tmp_path, "shops/a.yaml", "shops: []\n")
    assert load_config(tmp_path).settings == Settings()


def test_no_shops_dir_is_a_warning(tmp_path: Path) -> None:
    write(tmp_path, "erps.yaml", ERPS)
    config = load_config(tmp_path)
    assert [str(w) for w in config.warnings] == [f"{tmp_path}/shops: warning: no shops/ directory: no shop is managed"]


def test_shop_filter_keeps_validating_everything(tmp_path: Path) -> None:
    write(tmp_path, "erps.yaml", ERPS)
    write(tmp_path, "shops/a.yaml", 'shops:\n  - {id: "1", erp: jushuitan, scenarios: {intercept_shipment: {}}}\n'
                                    '  - {id: "2", erp: jushuitan, scenarios: {intercept_shipment: {}}}\n')
    assert [s.id for s in load_config(tmp_path, shops={"2"}).shops] == ["2"]
    with pytest.raises(ConfigError) as e:
        load_config(tmp_path, shops={"3"})
    assert [str(i) for i in e.value.issues] == [f"{tmp_path}: --shop 3: no such shop in the configuration"]


def test_alias_bomb_is_refused_without_expanding_it(tmp_path: Path) -> None:
    # 30 levels of 10 aliases: expanded, 10^30 strings. Refused from the event stream.
    lines = ['l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]" for i in range(1, 31)]
    write(tmp_path, "erps.yaml", "\n".join(lines) + "\n")
    with pytest.raises(ConfigError) as e:
        load_config(tmp_path)
    messages = [i.message for i in e.value.issues if i.severity == "error"]
    assert len(messages) == 21
    assert messages[-1] == "… and 311 more anchor(s) or alias(es) up to here"  # 31 anchors + 300 aliases - 20 listed


def test_shop_entries_that_are_not_files_are_errors_not_silently_unmanaged(tmp_path: Path) -> None:
    # Issue 11: shops/ is read at any depth, so a folder named dir.yaml is a folder like any
    # other (its shops are read); an entry that is not a regular file is an error (issue 9).
    write(tmp_path, "erps.yaml", ERPS)
    write(tmp_path, "shops/a.yaml", 'shops: [{id: "100001", erp: jushuitan, scenarios: {intercept_shipment: {}}}]\n')
    write(tmp_path, "shops/dir.yaml/b.yaml", 'shops: [{id: "100002", erp: jushuitan, scenarios: {intercept_shipment: {}}}]\n')
    (tmp_path / "shops" / "gone.yaml").symlink_to(tmp_path / "nowhere.yaml")
    (tmp_path / "shops" / ".#a.yaml").symlink_to(tmp_path / "nowhere.yaml")  # an editor's lock file: ignored
    os.mkfifo(tmp_path / "shops" / "pipe.yaml")
    with pytest.raises(ConfigError) as e:
        load_config(tmp_path)
    assert [str(i) for i in e.value.issues] == [
        f"{tmp_path}/shops/gone.yaml: cannot read: No such file or directory (a symbolic link to nothing)",
        f"{tmp_path}/shops/pipe.yaml: not a regular file (a FIFO, a device or a socket): only regular files are read",
    ]
    (tmp_path / "shops" / "gone.yaml").unlink()
    (tmp_path / "shops" / "pipe.yaml").unlink()
    assert [s.id for s in load_config(tmp_path).shops] == ["100001", "100002"]


def test_validate_checks_the_top_provider_settings_with_their_lines(tmp_path: Path) -> None:
    write(tmp_path, "erps.yaml", ERPS)
    write(tmp_path, "reconciler.yaml", """\
        provider:
          kind: top
          url: 127.0.0.1:8765
          app_key: "30000001"
          methods: {get: "bad name", foo: x.y}
        """)
    with pytest.raises(ConfigError) as e:
        load_config(tmp_path)
    assert [str(i) for i in e.value.issues if i.severity == "error"] == [
        f"{tmp_path}/reconciler.yaml:3:8: provider.url: must be an http:// or https:// URL"
        " (like http://127.0.0.1:8765/router/rest), not '127.0.0.1:8765'",
        f"{tmp_path}/reconciler.yaml:5:12: provider.methods: unknown method 'foo'; rename one of: get, bind, unbind,"
        " selfservice, check; get: 'bad name' is not a method name (like erp.binding.get)",
    ]
