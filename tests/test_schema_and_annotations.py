"""Editors and CI (issue 11, part 5): ``reconciler schema`` writes JSON Schemas (draft 2020-12)
that the example configuration and an import satisfy and an unknown key does not;
``import`` names the schema for editors; ``validate --format json|github``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from click.testing import CliRunner, Result
from conftest import Agency

from reconciler.cli import main

EXAMPLE = Path(__file__).resolve().parent.parent / "configs"
KINDS = ("shops", "erps", "profiles", "waivers", "reconciler")


def as_json(path: Path) -> Any:
    """A YAML file as an editor's YAML language server sees it (YAML 1.2: a date is a string)."""
    return json.loads(json.dumps(yaml.safe_load(path.read_text(encoding="utf-8")), default=str))


def schemas(config_dir: Path, out: Path) -> dict[str, dict[str, Any]]:
    r = CliRunner().invoke(main, ["-C", str(config_dir), "schema", "--out", str(out)])
    assert r.exit_code == 0, r.output
    found = {k: json.loads((out / f"{k}.schema.json").read_text(encoding="utf-8")) for k in KINDS}
    for s in found.values():
        jsonschema.Draft202012Validator.check_schema(s)
        assert s["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    return found


def problems(schema: dict[str, Any], data: Any) -> list[str]:
    return sorted(e.message for e in jsonschema.Draft202012Validator(schema).iter_errors(data))


def test_the_example_configuration_satisfies_the_schemas(tmp_path: Path) -> None:
    s = schemas(EXAMPLE, tmp_path / "schemas")
    assert problems(s["erps"], as_json(EXAMPLE / "erps.yaml")) == []
    assert problems(s["reconciler"], as_json(EXAMPLE / "reconciler.yaml")) == []
    files = sorted((EXAMPLE / "shops").rglob("*.yaml"))
    assert files
    for f in files:
        assert problems(s["shops"], as_json(f)) == [], f
    # the schema knows the example's ERP names and the scenarios, with descriptions
    erp = s["shops"]["$defs"]["ShopSpec"]["properties"]["erp"]
    assert {"type": "string", "enum": ["cainiao", "inhouse", "jushuitan", "wangdiantong"]} in erp["anyOf"]
    assert sorted(s["shops"]["$defs"]["ScenariosSpec"]["properties"]) == ["intercept_shipment", "modify_address",
                                                                          "order_status"]
    assert "拦截发货" in s["shops"]["$defs"]["ScenariosSpec"]["properties"]["intercept_shipment"]["description"]


def test_unknown_keys_and_wrong_types_do_not_satisfy_them(tmp_path: Path) -> None:
    s = schemas(EXAMPLE, tmp_path / "schemas")
    assert problems(s["shops"], {"shops": [{"id": "100001", "naem": "x"}]}) == \
        ["Additional properties are not allowed ('naem' was unexpected)"]
    assert problems(s["shops"], {"shops": [{"id": 100001}]}) == ["100001 is not of type 'string'"]
    assert problems(s["shops"], {"shops": [{"id": "100001", "scenarios": {"refund": {}}}]}) == \
        ["Additional properties are not allowed ('refund' was unexpected)"]
    assert problems(s["shops"], {"shops": [{"id": "100001", "erp": "kingdee"}]}) != []
    assert problems(s["shops"], {"shops": [{"id": "1", "scenarios": {"order_status": {"appkey": "2134-5678"}}}]}) != []
    assert problems(s["erps"], {"erps": {"x": {"appkey": "1", "url": "y"}}}) != []
    assert problems(s["reconciler"], {"provider": {"kind": "top", "url": "http://x", "app_key": "1", "app_secret": "no"}}) != []
    assert problems(s["waivers"], {"waivers": [{"shop": "1", "kind": "protected", "until": "2027-01-31", "reason": "r"}]}) != []
    assert problems(s["waivers"], {"waivers": [{"shop": "1", "kind": "missing", "until": "2027-01-31"}]}) == \
        ["'reason' is a required property"]


def test_profiles_and_waivers_files_satisfy_their_schemas(tmp_path: Path) -> None:
    d = tmp_path / "configs"
    shutil.copytree(EXAMPLE, d, ignore=shutil.ignore_patterns(".reconciler"))
    (d / "profiles.yaml").write_text("profiles:\n  std-jst:\n    erp: jushuitan\n    labels: {tier: gold}\n"
                                     "    scenarios: {intercept_shipment: {}, modify_address: {buyer_self_service: true}}\n",
                                     encoding="utf-8")
    (d / "shops" / "acme").mkdir()
    (d / "shops" / "acme" / "a.yaml").write_text('shops:\n  - {id: "300001", profile: std-jst, labels: {client: acme}}\n',
                                                 encoding="utf-8")
    (d / "waivers.yaml").write_text('waivers:\n  - {shop: "100004", scenario: order_status, kind: not-integrated,'
                                    ' until: 2027-01-31, reason: "ticket 4411"}\n', encoding="utf-8")
    s = schemas(d, d / "schemas")
    assert problems(s["profiles"], as_json(d / "profiles.yaml")) == []
    assert problems(s["waivers"], as_json(d / "waivers.yaml")) == []
    assert problems(s["shops"], as_json(d / "shops" / "acme" / "a.yaml")) == []
    assert problems(s["shops"], {"shops": [{"id": "1", "profile": "nope"}]}) != []   # the profile names are known
    assert problems(s["shops"], {"shops": [{"id": "1", "labels": {"bad key": "x"}}]}) != []


def test_schema_without_a_readable_configuration_still_writes_generic_schemas(tmp_path: Path) -> None:
    r = CliRunner().invoke(main, ["-C", str(tmp_path / "nowhere"), "schema", "--out", str(tmp_path / "s")])
    assert r.exit_code == 0, r.output
    assert "could not be read" in r.stdout
    s = json.loads((tmp_path / "s" / "shops.schema.json").read_text(encoding="utf-8"))
    assert problems(s, {"shops": [{"id": "1", "erp": "anything"}]}) == []


def test_the_import_names_the_schema_and_satisfies_it(agency: Agency) -> None:
    agency.shops('shops:\n  - {id: "100001", erp: jushuitan, scenarios: {intercept_shipment: {}}}\n')
    agency.world({"100001": {}, "300001": {"name": "新店 \"A\"", "buyer_self_service": True,
                                           "bindings": {"intercept_shipment": "21345678", "modify_address": "virtualAppKey",
                                                        "order_status": "99999999"}}},
                 apps={"21345678": {"name": "聚水潭", "scenarios": ["intercept_shipment", "modify_address", "order_status"]},
                       "99999999": {"name": "x", "scenarios": ["order_status"]}})
    assert agency.run("schema").exit_code == 0   # default: schemas/ in the config dir
    r = agency.run("import", "--shop", "300001", "--out", str(agency.dir / "shops" / "acme" / "new.yaml"),
                   "--label", "client=acme")
    assert r.exit_code == 0, r.output
    written = agency.dir / "shops" / "acme" / "new.yaml"
    first = written.read_text(encoding="utf-8").splitlines()[0]
    assert first == "# yaml-language-server: $schema=../../schemas/shops.schema.json"
    schema_file = (written.parent / first.split("=", 1)[1]).resolve()
    assert schema_file == (agency.dir / "schemas" / "shops.schema.json").resolve()
    assert problems(json.loads(schema_file.read_text(encoding="utf-8")), as_json(written)) == []
    assert agency.run("validate").exit_code == 0


# --------------------------------------------------------------------------- validate --format


def validate(root: Path, *args: str) -> Result:
    return CliRunner().invoke(main, ["-C", str(root), "validate", *args])


@pytest.fixture
def broken(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    shutil.copytree(EXAMPLE, tmp_path / "c", ignore=shutil.ignore_patterns(".reconciler"))
    (tmp_path / "c" / "shops" / "bad.yaml").write_text(
        'shops:\n  - id: "900001"\n    erp: jushuitn\n    scenarios: {order_status: {appkey: "1234"}}\n'
        '  - {id: 900002, name: "a,b:c%"}\n', encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    return Path("c")


def test_validate_json(broken: Path) -> None:
    r = validate(broken, "--format", "json")
    assert r.exit_code == 1
    data = json.loads(r.stdout)
    assert (data["format_version"], data["valid"]) == (1, False)
    assert data["errors"] == [
        {"file": "c/shops/bad.yaml", "line": 3, "column": 10, "path": "shops[0].erp",
         "message": "unknown ERP 'jushuitn'; did you mean 'jushuitan'?"},
        {"file": "c/shops/bad.yaml", "line": 5, "column": 10, "path": "shops[1].id",
         "message": 'must be a quoted string of digits (YAML read 900002 as a number); write "900002"'},
    ]
    assert data["warnings"] == [{"file": "c/shops/bad.yaml", "line": 4, "column": 40, "path": "shops[0].scenarios.order_status.appkey",
                                 "message": "appkey '1234' has 4 digits; ERP appkeys are usually 8"}]
    ok = validate(EXAMPLE, "--format", "json")
    assert ok.exit_code == 0
    assert json.loads(ok.stdout) | {"summary": None} == {"format_version": 1, "valid": True, "errors": [], "warnings": [],
                                                        "summary": None}


def test_validate_github_annotations(broken: Path) -> None:
    r = validate(broken, "--format", "github")
    assert r.exit_code == 1
    assert r.stdout.splitlines() == [
        "::error file=c/shops/bad.yaml,line=3,col=10::shops[0].erp: unknown ERP 'jushuitn'; did you mean 'jushuitan'?",
        "::error file=c/shops/bad.yaml,line=5,col=10::shops[1].id: must be a quoted string of digits (YAML read 900002 as a"
        ' number); write "900002"',
        "::warning file=c/shops/bad.yaml,line=4,col=40::shops[0].scenarios.order_status.appkey: appkey '1234' has 4 digits;"
        " ERP appkeys are usually 8",
        "2 error(s) in the configuration",
    ]
    ok = validate(EXAMPLE, "--format", "github")
    assert ok.exit_code == 0 and ok.stdout.startswith("Configuration valid: 12 shop(s)")


def test_github_annotations_escape_what_github_would_parse(tmp_path: Path) -> None:
    shutil.copytree(EXAMPLE, tmp_path / "c,d", ignore=shutil.ignore_patterns(".reconciler"))
    (tmp_path / "c,d" / "shops" / "x.yaml").write_text('shops:\n  - {id: "1", erp: "a%b\\ncd"}\n', encoding="utf-8")
    r = validate(tmp_path / "c,d", "--format", "github")
    line = r.stdout.splitlines()[0]
    assert line.startswith(f"::error file={str(tmp_path).replace(':', '%3A')}/c%2Cd/shops/x.yaml,line=2,col=20::")
    assert "unknown ERP 'a%25b'… (6 characters)" in line   # one line: the value is cut at its newline


def test_github_escaping_rules() -> None:
    from reconciler.cli.core import _gh

    assert _gh("a%b\r\nc:d,e") == "a%25b%0D%0Ac:d,e"
    assert _gh("a%b\r\nc:d,e", prop=True) == "a%25b%0D%0Ac%3Ad%2Ce"
