"""The shops folder at any depth (issue 11, part 1) and files that are not what they seem
(issue 9, parts 6 and 7): every entry is read or reported, nothing outside the config
directory is read, nothing hangs, and no message echoes more than a short excerpt of a value.

Each test runs the real CLI (``validate``) from inside the config dir, so paths print
relative to it, with a subprocess timeout where a hang is the failure being tested for.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from reconciler.cli import main

ERPS = """\
erps:
  jushuitan:    {name: 聚水潭, appkey: "21345678"}
  wangdiantong: {name: 旺店通, appkey: "12345679"}
"""
KEY = "-----BEGIN PRIVATE KEY-----\n" + "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7" * 20 + "\n-----END PRIVATE KEY-----\n"


def shop(sid: str, erp: str = "jushuitan") -> str:
    return f'  - {{id: "{sid}", erp: {erp}, scenarios: {{intercept_shipment: {{}}}}}}\n'


def write(root: Path, rel: str, text: str | bytes) -> Path:
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        p.write_bytes(text)
    else:
        p.write_text(textwrap.dedent(text), encoding="utf-8")
    return p


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    d = tmp_path / "configs"
    write(d, "erps.yaml", ERPS)
    monkeypatch.chdir(d)
    return d


def validate(*args: str) -> Result:
    r = CliRunner().invoke(main, ["-C", ".", "validate", *args], catch_exceptions=False)
    assert "Traceback" not in r.output
    return r


def errors(r: Result) -> list[str]:
    lines = r.stderr.splitlines()
    return [ln.removeprefix("Error: ") for ln in lines]


def test_nested_folders_three_levels_yml_and_upper_case_suffixes(root: Path) -> None:
    write(root, "shops/a.yaml", "shops:\n" + shop("100001"))
    write(root, "shops/acme/b.yml", "shops:\n" + shop("100002"))
    write(root, "shops/acme/east/c.yaml", "shops:\n" + shop("100003"))
    write(root, "shops/acme/east/hz/d.YAML", "shops:\n" + shop("100004"))   # issue 9: x.YAML was ignored
    write(root, "shops/acme/east/hz/e.Yml", "shops:\n" + shop("100005"))
    write(root, "shops/acme/notes.txt", "shops: not read\n")
    r = validate()
    assert r.exit_code == 0, r.output
    assert r.stdout == "Configuration valid: 5 shop(s), 5 managed binding(s), 2 ERP(s).\n"


def test_hidden_files_and_folders_are_skipped(root: Path) -> None:
    write(root, "shops/a.yaml", "shops:\n" + shop("100001"))
    write(root, "shops/.a.yaml.swp", "not yaml: [")
    write(root, "shops/.git/x.yaml", "not yaml: [")
    write(root, "shops/acme/.drafts/y.yaml", "not yaml: [")
    r = validate()
    assert r.exit_code == 0, r.output
    assert "1 shop(s)" in r.stdout


def test_duplicate_ids_across_folders_name_both_files(root: Path) -> None:
    write(root, "shops/acme/a.yaml", "shops:\n" + shop("100001"))
    write(root, "shops/zeta/deep/b.yaml", "shops:\n" + shop("100002") + shop("100001"))
    r = validate()
    assert r.exit_code == 1
    assert errors(r) == [
        "shops/zeta/deep/b.yaml:3:10: shops[1].id: duplicate shop id '100001' (also at shops/acme/a.yaml:2)",
        "1 error(s) in the configuration",
    ]


def test_a_symlink_out_of_the_config_dir_is_an_error_and_is_not_read(root: Path, tmp_path: Path) -> None:
    outside = write(tmp_path, "elsewhere/x.yaml", "shops:\n" + shop("900001"))
    (root / "shops").mkdir()
    (root / "shops" / "x.yaml").symlink_to(outside)
    (root / "shops" / "client").symlink_to(outside.parent, target_is_directory=True)
    write(root, "shared/inside.yaml", "shops:\n" + shop("100001"))
    (root / "shops" / "inside.yaml").symlink_to(root / "shared" / "inside.yaml")  # inside: fine
    r = validate()
    assert r.exit_code == 1
    said = ("a symbolic link that leads out of the config directory: not read"
            " (files under shops/ must be inside the config directory)")
    assert errors(r) == [f"shops/client: {said}", f"shops/x.yaml: {said}", "2 error(s) in the configuration"]


def test_a_symlink_loop_is_reported_once(root: Path) -> None:
    write(root, "shops/a/x.yaml", "shops:\n" + shop("100001"))
    (root / "shops" / "a" / "again").symlink_to(root / "shops", target_is_directory=True)
    r = validate()
    assert r.exit_code == 1
    assert errors(r)[0] == "shops/a/again: a symbolic link to a folder already read (a loop): not read again"


def test_a_fifo_in_shops_is_an_error_and_does_not_hang(root: Path) -> None:
    write(root, "shops/a.yaml", "shops:\n" + shop("100001"))
    os.mkfifo(root / "shops" / "pipe.yaml")
    os.mkfifo(root / "shops" / "pipe.txt")   # not a shop file: ignored like any other
    proc = subprocess.run([sys.executable, "-m", "reconciler", "-C", str(root), "validate"], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 1
    assert f"{root}/shops/pipe.yaml: not a regular file (a FIFO, a device or a socket): only regular files are read" \
        in proc.stderr


@pytest.mark.parametrize("rel", ["shops/zero.yaml", "erps.yaml", "profiles.yaml", "waivers.yaml", "reconciler.yaml"])
def test_dev_zero_as_a_config_file_is_refused_at_once(root: Path, rel: str) -> None:
    write(root, "shops/a.yaml", "shops:\n" + shop("100001"))
    (root / rel).unlink(missing_ok=True)
    (root / rel).symlink_to("/dev/zero")
    proc = subprocess.run([sys.executable, "-m", "reconciler", "-C", str(root), "validate"], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 1
    if rel.startswith("shops/"):  # under shops/, a link out of the config dir is not even opened
        assert f"{root}/{rel}: a symbolic link that leads out of the config directory: not read" in proc.stderr
    else:
        assert f"{root}/{rel}: not a regular file (a FIFO, a device or a socket)" in proc.stderr
    assert "Traceback" not in proc.stderr and "MemoryError" not in proc.stderr


def test_a_shops_file_symlinked_to_a_private_key_does_not_print_the_key(root: Path, tmp_path: Path) -> None:
    key = write(root, "keys/id_rsa", KEY)      # inside the config dir, so it is read
    (root / "shops").mkdir()
    (root / "shops" / "a.yaml").symlink_to(key)
    write(root, "keys/token", "s3cret-token-value-123456\n")
    (root / "shops" / "b.yaml").symlink_to(root / "keys" / "token")
    r = validate()
    assert r.exit_code == 1
    assert "MIIEvQIB" not in r.output and "PRIVATE KEY" not in r.output and "s3cret-token" not in r.output
    said = errors(r)
    assert said[0].startswith("shops/a.yaml:1:1: expected a mapping with the key 'shops', got the string '-----BEG'… (1,0")
    assert said[1:] == ["shops/b.yaml:1:1: expected a mapping with the key 'shops', got the string 's3cret-t'… (25 characters)",
                        "2 error(s) in the configuration"]


def test_long_values_are_quoted_only_as_excerpts(root: Path) -> None:
    long = "x" * 5000
    write(root, "shops/a.yaml", f'shops:\n  - {{id: "{long}", name: 5, erp: "{long}", protect: "{long}"}}\n')
    r = validate()
    assert r.exit_code == 1
    assert long[:100] not in r.output
    assert all(len(line) < 400 for line in r.output.splitlines())


def test_a_shops_file_instead_of_a_folder_is_an_error(root: Path) -> None:
    write(root, "shops", "shops:\n" + shop("100001"))
    r = validate()
    assert r.exit_code == 1
    assert errors(r) == ["shops: is not a folder: shops are declared in YAML files inside a shops/ folder",
                         "1 error(s) in the configuration"]


def test_a_nul_byte_is_reported_where_it_is(root: Path) -> None:
    write(root, "shops/a.yaml", b'shops:\n  - id: "100001"\n    name: ab\x00c\n    erp: jushuitan\n')
    write(root, "shops/b.yaml", b'shops:\n  - id: "100002"\n    name: \x1b[31mred\n')
    r = validate()
    assert r.exit_code == 1
    assert errors(r) == [
        "shops/a.yaml:3:13: a control character (U+0000) is not allowed in YAML; remove it",
        "shops/b.yaml:3:11: a control character (U+001B) is not allowed in YAML; remove it",
        "2 error(s) in the configuration",
    ]


@pytest.mark.parametrize(("setting", "shown"), [
    ("timeout_s: .inf", "provider.timeout_s: must be a finite number, got .inf"),
    ("timeout_s: -.Inf", "provider.timeout_s: must be a finite number, got -.Inf"),
    ("qps: .nan", "provider.qps: must be a finite number, got .nan"),
    ("timeout_s: 1.0e+400", "provider.timeout_s: must be a finite number, got 1.0e+400"),
    ("timeout_s: 1.0e+30", "provider.timeout_s: must be at most 3600, got 1e+30"),
])
def test_non_finite_and_unbounded_numbers_are_errors(root: Path, setting: str, shown: str) -> None:
    write(root, "shops/a.yaml", "shops:\n" + shop("100001"))
    write(root, "reconciler.yaml", f'provider: {{kind: top, url: "http://127.0.0.1:1/router/rest", app_key: "30000001",'
                                   f" {setting}}}\n")
    r = validate()
    assert r.exit_code == 1
    assert [e.split(": ", 1)[1] for e in errors(r)[:-1]] == [shown]


@pytest.mark.parametrize("section", ["safety: {max_change_share: .nan}", "apply: {backoff_s: .inf}",
                                     "state: {lock_lease_s: .inf}", "state: {lock_timeout_s: 1.0e+300}"])
def test_non_finite_numbers_anywhere_in_the_settings(root: Path, section: str) -> None:
    write(root, "shops/a.yaml", "shops:\n" + shop("100001"))
    write(root, "reconciler.yaml", section + "\n")
    r = validate()
    assert r.exit_code == 1, r.output
    assert "1 error(s) in the configuration" in r.stderr


@pytest.mark.parametrize("appkey", ['"21345678\\n"', '"21345678\\r\\n"', '" 21345678"', '"２１３４５６７８"'])
def test_an_appkey_with_a_newline_or_other_characters_is_not_digits(root: Path, appkey: str) -> None:
    write(root, "shops/a.yaml", f'shops:\n  - {{id: "100001", scenarios: {{intercept_shipment: {{appkey: {appkey}}}}}}}\n')
    r = validate()
    assert r.exit_code == 1
    assert "is not a string of digits (or virtualAppKey)" in r.stderr


@pytest.mark.parametrize("shop_id", ['"100001\\n"', '"100001 "', '"-100001"'])
def test_a_shop_id_with_a_newline_is_not_digits(root: Path, shop_id: str) -> None:
    write(root, "shops/a.yaml", f'shops:\n  - {{id: {shop_id}, erp: jushuitan}}\n')
    r = validate()
    assert r.exit_code == 1
    assert "shops[0].id: must be a string of digits" in r.stderr


@pytest.mark.parametrize(("raw", "read"), [("0x186A1", "the number 100001"), ("-100001", "a number"),
                                           ("1_000", "the number 1000"), ("1:30", "the number 90"),
                                           ("+100001", "the number 100001"),
                                           ("1.5", "a number"), ("1.0e+3", "the number 1000.0")])
def test_hints_never_suggest_an_invalid_value(root: Path, raw: str, read: str) -> None:
    write(root, "shops/a.yaml", f"shops:\n  - {{id: {raw}, erp: jushuitan}}\n")
    r = validate()
    assert r.exit_code == 1
    assert errors(r)[0] == (f"shops/a.yaml:2:10: shops[0].id: must be a quoted string of digits (YAML read {raw} as {read};"
                            f" '{raw}' is not a string of digits either)")
    assert f'write "{raw}"' not in r.stderr


def test_a_digits_only_number_still_gets_the_quoting_hint(root: Path) -> None:
    write(root, "shops/a.yaml", "shops:\n  - {id: 100001, erp: jushuitan}\n")
    assert 'must be a quoted string of digits (YAML read 100001 as a number); write "100001"' in validate().stderr


def test_a_5000_digit_number_is_an_error_not_a_crash(root: Path) -> None:
    write(root, "shops/a.yaml", "shops:\n  - {id: " + "1" * 5000 + ", erp: jushuitan, name: " + "2" * 200 + "}\n")
    r = validate()
    assert r.exit_code == 1
    assert "a number of 5,000 characters is not a value of ours" in r.stderr
    assert "2" * 100 not in r.stderr


@pytest.mark.parametrize("key", ["sessions_file", "app_secret_file"])
@pytest.mark.parametrize("kind", ["fifo", "dev-zero"])
def test_secret_files_that_are_not_regular_files_are_refused_at_once(root: Path, key: str, kind: str) -> None:
    write(root, "shops/a.yaml", "shops:\n" + shop("100001"))
    target = root / "secret.yaml"
    if kind == "fifo":
        os.mkfifo(target)
    else:
        target.symlink_to("/dev/zero")
    write(root, "reconciler.yaml", 'provider: {kind: top, url: "http://127.0.0.1:9/router/rest", app_key: "30000001",'
                                   f" {key}: secret.yaml, sessions_env: NONE_SET}}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECONCILER_")}
    env["RECONCILER_APP_SECRET"] = "x"
    env["NONE_SET"] = '{"100001": "sess"}'
    proc = subprocess.run([sys.executable, "-m", "reconciler", "-C", str(root), "plan"], capture_output=True, text=True,
                          timeout=60, env=env)
    assert proc.returncode == 1, proc.stderr
    assert "not a regular file" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


def test_secret_looking_values_are_masked_in_messages(root: Path) -> None:
    write(root, "shops/a.yaml", 'shops:\n  - {id: "100001", erp: jushuitan, protect: "token=s3cr3t-v4lue"}\n')
    r = validate()
    assert r.exit_code == 1
    assert "s3cr3t" not in r.output
    assert "shops[0].protect: expected true or false, got the string 'token=***'" in r.stderr
