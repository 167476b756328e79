"""`reconciler validate` on bad configurations: one fixture directory per case.

Each case is a small config dir under ``tests/fixtures/config/<case>/`` (run one by hand:
``cd tests/fixtures/config/<case> && reconciler -C . validate``). The test runs the real
CLI from inside the case dir, so files print as ``shops/a.yaml``, and compares stderr line
by line: every problem as ``file:line:column: key.path: message``, all of them in one run,
then the count; exit 1 (0 when there are only warnings); never a traceback.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from reconciler.cli import main

FIXTURES = Path(__file__).parent / "fixtures" / "config"


def validate(config_dir: str, *, env: dict[str, str | None] | None = None) -> Result:
    args = ["validate"] if config_dir == "" else ["-C", config_dir, "validate"]
    result = CliRunner().invoke(main, args, env=env, catch_exceptions=False)
    assert "Traceback" not in result.output
    return result


def stderr_lines(result: Result) -> list[str]:
    lines = result.stderr.splitlines()
    if lines and lines[0].startswith("Error: "):
        lines[0] = lines[0].removeprefix("Error: ")
    return lines


ALIASES_A = [
    "shops/a.yaml:2:4: a: YAML anchors (&a) are not allowed; write the value out",
    "shops/a.yaml:3:4: b: YAML anchors (&b) are not allowed; write the value out",
    *(f"shops/a.yaml:3:{8 + 4 * i}: b[{i}]: YAML aliases (*a) are not allowed; write the value out" for i in range(9)),
    "shops/a.yaml:4:4: c: YAML anchors (&c) are not allowed; write the value out",
    *(f"shops/a.yaml:4:{8 + 4 * i}: c[{i}]: YAML aliases (*b) are not allowed; write the value out" for i in range(8)),
    # 20 listed; the rest summed up at the last one (i[8], line 10) rather than printed one by one
    "shops/a.yaml:10:40: … and 61 more anchor(s) or alias(es) up to here",
]

CASES: dict[str, tuple[int, list[str]]] = {
    "yaml_syntax_error": (1, [
        "shops/a.yaml:4:56: YAML syntax error: did not find expected node content (while parsing a flow node)",
        "1 error(s) in the configuration",
    ]),
    "yaml_tab_indent": (1, [
        "shops/a.yaml:3:1: YAML syntax error: a tab character; YAML is indented with spaces",
        "1 error(s) in the configuration",
    ]),
    "duplicate_keys": (1, [
        "shops/a.yaml:7:7: shops[0].scenarios.intercept_shipment: duplicate key 'intercept_shipment' (first at line 5)",
        "shops/a.yaml:8:5: shops[0].erp: duplicate key 'erp' (first at line 3)",
        "2 error(s) in the configuration",
    ]),
    "unknown_keys": (1, [
        "shops/a.yaml:3:5: shops[0].naem: unknown key 'naem'; did you mean 'name'?",
        "shops/a.yaml:7:7: shops[0].scenarios.order_staus: unknown key 'order_staus'; did you mean 'order_status'?",
        "shops/a.yaml:8:7: shops[0].scenarios.refund: unknown key 'refund';"
        " expected one of: intercept_shipment, modify_address, order_status",
        "shops/a.yaml:9:24: shops[0].scenarios.modify_address.buyer_self_servce:"
        " unknown key 'buyer_self_servce'; did you mean 'buyer_self_service'?",
        "4 error(s) in the configuration",
    ]),
    "appkey_octal": (1, [
        "shops/a.yaml:4:36: shops[0].scenarios.intercept_shipment.appkey: must be a quoted string of digits"
        ' (YAML read 01234567 as the number 342391); write "01234567"',
        "1 error(s) in the configuration",
    ]),
    "appkey_number": (1, [
        'erps.yaml:2:34: erps.jushuitan.appkey: must be a quoted string of digits (YAML read 21345678 as a number); write "21345678"',
        'shops/a.yaml:2:9: shops[0].id: must be a quoted string of digits (YAML read 100001 as a number); write "100001"',
        "shops/a.yaml:6:32: shops[0].scenarios.modify_address.appkey: must be a quoted string of digits"
        ' (YAML read 12345678 as a number); write "12345678"',
        "3 error(s) in the configuration",
    ]),
    "appkey_not_digits": (1, [
        "shops/a.yaml:4:36: shops[0].scenarios.intercept_shipment.appkey: appkey '2134-5678' is not a string of digits (or virtualAppKey)",
        # PyYAML reads 1.5e3 (no sign in the exponent) as a string: caught by the digits rule
        "shops/a.yaml:5:30: shops[0].scenarios.order_status.appkey: appkey '1.5e3' is not a string of digits (or virtualAppKey)",
        "2 error(s) in the configuration",
    ]),
    "virtual_appkey_outside_modify_address": (1, [
        "shops/a.yaml:3:10: shops[0].erp: ERP 'cainiao' is virtualAppKey (Cainiao warehouses),"
        " valid for modify_address only, not intercept_shipment",
        "shops/a.yaml:10:30: shops[1].scenarios.order_status.appkey: virtualAppKey is only valid for modify_address (Cainiao warehouses)",
        "2 error(s) in the configuration",
    ]),
    "unknown_erp": (1, [
        "shops/a.yaml:3:10: shops[0].erp: unknown ERP 'jushuitn'; did you mean 'jushuitan'?",
        "shops/a.yaml:6:27: shops[0].scenarios.order_status.erp: unknown ERP 'kingdee';"
        " erps.yaml defines: cainiao, jushuitan, wangdiantong",
        "2 error(s) in the configuration",
    ]),
    "duplicate_shop_ids": (1, [
        "shops/b.yaml:4:9: shops[1].id: duplicate shop id '100001' (also at shops/a.yaml:2)",
        "shops/b.yaml:7:9: shops[2].id: duplicate shop id '100003' (also at shops/b.yaml:2)",
        "2 error(s) in the configuration",
    ]),
    "scenario_without_erp": (1, [
        f"shops/a.yaml:{line}:7: shops[0].scenarios.{sc}: no ERP to bind: set erp on the shop or on the scenario,"
        " or appkey, or state: unbound"
        for line, sc in ((5, "intercept_shipment"), (6, "order_status"), (7, "modify_address"))
    ] + ["3 error(s) in the configuration"]),
    "anchors_aliases": (1, [
        *ALIASES_A,
        "shops/b.yaml:2:5: shops[0]: YAML anchors (&shop) are not allowed; write the value out",
        "shops/b.yaml:6:5: shops[1]: YAML aliases (*shop) are not allowed; write the value out",
        "23 error(s) in the configuration",
    ]),
    "not_utf8": (1, [
        # GBK bytes; the column counts characters (d2 bb happens to decode as one)
        "shops/a.yaml:3:12: not UTF-8: byte 0xba cannot be decoded; save the file as UTF-8",
        "1 error(s) in the configuration",
    ]),
    "not_utf8_after_text": (1, [
        "shops/a.yaml:3:14: not UTF-8: byte 0xff cannot be decoded; save the file as UTF-8",
        "1 error(s) in the configuration",
    ]),
    "bom": (1, [
        "shops/a.yaml:1:1: file starts with a UTF-8 byte-order mark; save it as UTF-8 without BOM",
        "1 error(s) in the configuration",
    ]),
    "empty_file": (1, [
        "shops/a.yaml:1:1: expected a mapping with the key 'shops', got an empty file",
        "shops/b.yaml:1:1: expected a mapping with the key 'shops', got an empty file",
        "2 error(s) in the configuration",
    ]),
    "file_is_list": (1, [
        "shops/a.yaml:1:1: expected a mapping with the key 'shops', got a list",
        "1 error(s) in the configuration",
    ]),
    "file_is_scalar": (1, [
        "shops/a.yaml:1:1: expected a mapping with the key 'shops', got the string 'shops'",
        "1 error(s) in the configuration",
    ]),
    "settings_unknown_provider_kind": (1, [
        "reconciler.yaml:2:9: provider.kind: unknown kind 'sandbx'; did you mean 'sandbox'?",
        "1 error(s) in the configuration",
    ]),
    "settings_bad_keys": (1, [
        'reconciler.yaml:4:12: provider.app_key: must be a quoted string of digits (YAML read 30000001 as a number); write "30000001"',
        "reconciler.yaml:5:3: provider.app_secret: unknown key 'app_secret': secrets never go in the configuration;"
        " name the environment variable (app_secret_env, sessions_env) or the file (app_secret_file, sessions_file) that holds them",
        "reconciler.yaml:7:3: safety.max_change_shar: unknown key 'max_change_shar'; did you mean 'max_change_share'?",
        "reconciler.yaml:8:16: safety.min_managed: must be at least 0, got -1",
        "reconciler.yaml:9:18: apply.retries: expected a whole number, got the string '3'",
        "reconciler.yaml:10:1: histroy: unknown key 'histroy'; did you mean 'history'?",
        "6 error(s) in the configuration",
    ]),
    "buyer_self_service_outside_modify_address": (1, [
        "shops/a.yaml:5:28: shops[0].scenarios.intercept_shipment.buyer_self_service: buyer_self_service applies to modify_address only",
        "shops/a.yaml:6:22: shops[0].scenarios.order_status.buyer_self_service: buyer_self_service applies to modify_address only",
        "shops/a.yaml:7:24: shops[0].scenarios.modify_address.erp_detail_button: erp_detail_button applies to order_status only",
        "shops/a.yaml:11:60: shops[1].scenarios.modify_address.buyer_self_service:"
        " buyer self-service needs modify_address bound; it cannot be true with state: unbound",
        "4 error(s) in the configuration",
    ]),
    "erp_and_appkey": (1, [
        "shops/a.yaml:4:27: shops[0].scenarios.intercept_shipment: give either erp or appkey, not both",
        "1 error(s) in the configuration",
    ]),
    "unbound_with_erp": (1, [
        "shops/a.yaml:6:21: shops[0].scenarios.order_status: state: unbound takes no erp or appkey",
        "shops/a.yaml:7:31: shops[0].scenarios.modify_address.state: expected 'bound' or 'unbound', got the string 'unbond'",
        "2 error(s) in the configuration",
    ]),
    "non_string_keys": (1, [
        'erps.yaml:3:3: erps.1688: a key must be a quoted string (YAML read 1688 as a number); write "1688"',
        'erps.yaml:3:16: erps.1688.name: must be a quoted string (YAML read 1688 as a number); write "1688"',
        'shops/a.yaml:6:7: shops[0].scenarios.yes: a key must be a quoted string (YAML read yes as the boolean true); write "yes"',
        "3 error(s) in the configuration",
    ]),
    "yaml_tags": (1, [
        "shops/a.yaml:3:11: shops[0].name: YAML tags (!!binary) are not allowed; write a plain value",
        "shops/a.yaml:4:10: shops[0].erp: YAML tags (!env) are not allowed; write a plain value",
        "shops/a.yaml:6:27: shops[0].scenarios.intercept_shipment:"
        " YAML tags (!!python/object:os.system) are not allowed; write a plain value",
        "3 error(s) in the configuration",
    ]),
    # Warnings only: reported the same way, and the configuration is valid.
    "appkey_not_8_digits": (0, [
        "shops/a.yaml:4:36: warning: shops[0].scenarios.intercept_shipment.appkey:"
        " appkey '1234567' has 7 digits; ERP appkeys are usually 8",
        "shops/a.yaml:5:32: warning: shops[0].scenarios.modify_address.appkey: appkey '123456789' has 9 digits; ERP appkeys are usually 8",
    ]),
    "erps_missing": (1, [
        'erps.yaml: missing: the ERP catalog is required (erps: {name: {name: ..., appkey: "..."}})',
        "1 error(s) in the configuration",
    ]),
    # Several files, several kinds of error: all reported in one run, in file order. The shop
    # that uses the broken ERP entry (wangdiantong) is not reported again; shop 100001 of
    # a.yaml is invalid, yet its id still counts for the duplicate check of b.yaml.
    # A shop with schema errors still has its references checked: fixing the first error
    # must not reveal new ones.
    "invalid_shop_still_checked": (1, [
        "shops/a.yaml:3:14: shops[0].protect: expected true or false, got the string 'yes please'",
        "shops/a.yaml:4:10: shops[0].erp: unknown ERP 'jushuitann'; did you mean 'jushuitan'?",
        "shops/a.yaml:6:36: shops[0].scenarios.intercept_shipment.appkey: virtualAppKey is only valid for modify_address"
        " (Cainiao warehouses)",
        "shops/a.yaml:7:27: shops[0].scenarios.order_status.erp: ERP 'cainiao' is virtualAppKey (Cainiao warehouses),"
        " valid for modify_address only, not order_status",
        "shops/a.yaml:8:29: shops[0].scenarios.modify_address.erp: unknown ERP 'nope'; erps.yaml defines: cainiao,"
        " jushuitan, wangdiantong",
        "shops/a.yaml:8:55: shops[0].scenarios.modify_address.buyer_self_service: expected true or false, got the number 3",
        # an id YAML read as a number: reported, and the shop's references still checked
        'shops/a.yaml:9:9: shops[1].id: must be a quoted string of digits (YAML read 300002 as a number); write "300002"',
        "shops/a.yaml:10:10: shops[1].erp: unknown ERP 'jushuitn'; did you mean 'jushuitan'?",
        "shops/a.yaml:12:33: shops[1].scenarios.intercept_shipment.erp: ERP 'cainiao' is virtualAppKey (Cainiao warehouses),"
        " valid for modify_address only, not intercept_shipment",
        "9 error(s) in the configuration",
    ]),
    "many_errors_many_files": (1, [
        "erps.yaml:3:37: erps.wangdiantong.appkey: must be a quoted string of digits"
        ' (YAML read 12345679 as a number); write "12345679"',
        "erps.yaml:4:39: warning: erps.inhouse.appkey: appkey '314159' has 6 digits; ERP appkeys are usually 8",
        "reconciler.yaml:1:27: provider.pth: unknown key 'pth'; did you mean 'path'?",
        "shops/a.yaml:6:30: shops[0].scenarios.order_status.appkey: must be a quoted string of digits"
        ' (YAML read 01234567 as the number 342391); write "01234567"',
        "shops/a.yaml:8:10: shops[1].erp: unknown ERP 'jushuitn'; did you mean 'jushuitan'?",
        "shops/b.yaml:2:9: shops[0].id: duplicate shop id '100001' (also at shops/a.yaml:2)",
        "shops/b.yaml:7:14: shops[1].protect: expected true or false, got the string 'yes please'",
        "shops/c.yaml:4:1: YAML syntax error: did not find expected ',' or ']' (while parsing a flow sequence at line 3, column 10)",
        "7 error(s) in the configuration",
    ]),
}


def test_every_fixture_dir_has_a_case() -> None:
    assert sorted(p.name for p in FIXTURES.iterdir() if p.is_dir()) == sorted(CASES)


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_config_is_reported_with_locations(case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    code, expected = CASES[case]
    monkeypatch.chdir(FIXTURES / case)
    result = validate(".")
    assert stderr_lines(result) == expected
    assert result.exit_code == code
    if code == 0:
        assert result.stdout == f"Configuration valid: 1 shop(s), 3 managed binding(s), 3 ERP(s), {len(expected)} warning(s).\n"
    else:
        assert result.stdout == ""


def test_missing_config_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = validate("does-not-exist")
    assert stderr_lines(result) == [
        "does-not-exist: config directory does not exist (set -C/--config-dir or RECONCILER_CONFIG_DIR)",
        "1 error(s) in the configuration",
    ]
    assert result.exit_code == 1
    result = validate("", env={"RECONCILER_CONFIG_DIR": "from-env"})
    assert stderr_lines(result)[0] == "from-env: config directory does not exist (set -C/--config-dir or RECONCILER_CONFIG_DIR)"
    assert result.exit_code == 1


def test_config_dir_is_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "configs").write_text("erps: {}\n")
    result = validate("", env={"RECONCILER_CONFIG_DIR": None})  # None unsets it: the default, ./configs
    assert stderr_lines(result) == [
        "configs: is not a directory; the config directory holds erps.yaml and shops/",
        "1 error(s) in the configuration",
    ]
    assert result.exit_code == 1
