"""The plain readers of ``reconciler.yaml`` (``settings.plain``) and ``erps.yaml``
(``config._plain_erps``) read a plainly valid file without pydantic, into exactly what the
spec (``specs.Settings``, ``specs.ErpsFile``) validates it to; anything else they leave to
the spec. The runtime settings and their spec declare the same fields, defaults and ranges.
A plan of a plain configuration imports no pydantic at all."""

from __future__ import annotations

import dataclasses
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import annotated_types
import pytest
from clikit import cli_env
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError
from test_parse_cache import Agency_

from reconciler import settings as runtime
from reconciler import specs
from reconciler.config import _plain_erps
from reconciler.model import Erp, Scenario

PAIRS = [(runtime.SandboxSettings, specs.SandboxSettings), (runtime.TopSettings, specs.TopSettings),
         (runtime.SafetySettings, specs.SafetySettings), (runtime.ApplySettings, specs.ApplySettings),
         (runtime.HistorySettings, specs.HistorySettings), (runtime.StateSettings, specs.StateSettings),
         (runtime.Settings, specs.Settings)]


def _bounds(spec: type[BaseModel], name: str) -> dict[str, Any]:
    out: dict[str, Any] = {"ge": None, "gt": None, "le": None}
    for m in spec.model_fields[name].metadata:
        for key, cls in (("ge", annotated_types.Ge), ("gt", annotated_types.Gt), ("le", annotated_types.Le)):
            if isinstance(m, cls):
                out[key] = getattr(m, key)
    return out


@pytest.mark.parametrize(("ours", "spec"), PAIRS, ids=[p[0].__name__ for p in PAIRS])
def test_the_settings_and_their_spec_declare_the_same_fields(ours: type[Any], spec: type[BaseModel]) -> None:
    fields = {f.name: f for f in dataclasses.fields(ours) if f.name != "sessions_env_named"}
    assert list(fields) == list(spec.model_fields)
    for name, f in fields.items():
        info = spec.model_fields[name]
        if f.default is not dataclasses.MISSING:
            assert f.default == info.default, name
            assert {k: f.metadata.get(k) for k in ("ge", "gt", "le")} == _bounds(spec, name), name
        elif f.default_factory is not dataclasses.MISSING:
            made = f.default_factory()
            assert made == (runtime.from_spec(info.default) if isinstance(info.default, BaseModel) else info.default), name
        else:
            assert info.is_required(), name


def test_the_defaults_are_the_specs() -> None:
    assert runtime.from_spec(specs.Settings.model_validate({})) == runtime.Settings()
    assert runtime.plain(None) == runtime.plain({}) == runtime.Settings()


# --------------------------------------------------------------------------- reconciler.yaml

NUMBERS = [0, 1, -1, 0.5, 0.3, 1.0, 2, 10, 20, 64, 65, 1000, 3600, 3601, 86_400, 86_401, 100_000, 100_001, 10**400, -0.0,
           math.inf, -math.inf, math.nan, True, False, 1e308, 5e-324]
VALUES = st.one_of(st.sampled_from(NUMBERS), st.sampled_from(["", "x", ".reconciler/s.db", "sandbox", "top", "1"]), st.none(),
                   st.just([]), st.just({}))
SANDBOX = st.fixed_dictionaries({}, optional={"kind": st.sampled_from(["sandbox", "sandbox", "top", "Sandbox", 1, None]),
                                              "path": VALUES, "world": VALUES, "extra": VALUES})
SECTIONS = {
    "safety": st.fixed_dictionaries({}, optional={"max_change_share": VALUES, "min_managed": VALUES, "bogus": VALUES}),
    "apply": st.fixed_dictionaries({}, optional={"retries": VALUES, "backoff_s": VALUES, "max_backoff_s": VALUES}),
    "history": st.fixed_dictionaries({}, optional={"path": VALUES}),
    "state": st.fixed_dictionaries({}, optional={"url": VALUES, "lock_timeout_s": VALUES, "lock_lease_s": VALUES}),
}
TOP = st.fixed_dictionaries({"kind": st.just("top"), "url": st.sampled_from(["http://127.0.0.1:1/r", "ftp://x"]),
                             "app_key": st.just("30000001")}, optional={"qps": VALUES, "sessions_env": VALUES})
DOCS = st.fixed_dictionaries({}, optional={"provider": st.one_of(SANDBOX, TOP, VALUES), **{k: st.one_of(v, VALUES)
                                                                                           for k, v in SECTIONS.items()},
                                           "unknown": VALUES})


def spec_reading(data: Any) -> runtime.Settings | None:
    try:
        return runtime.from_spec(specs.Settings.model_validate(data))  # type: ignore[no-any-return]
    except ValidationError:
        return None


@settings(max_examples=800, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(DOCS)
def test_a_plain_settings_file_reads_as_the_spec_reads_it(data: dict[str, Any]) -> None:
    ours = runtime.plain(data)
    if ours is not None:
        assert ours == spec_reading(data), data
        assert all(type(getattr(ours.safety, f)) is float for f in ("max_change_share",))


def test_the_plain_settings_reader_takes_the_plain_files() -> None:
    taken = 0

    @settings(max_examples=300, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
    @given(DOCS)
    def count(data: dict[str, Any]) -> None:
        nonlocal taken
        expected = spec_reading(data)
        provider = data.get("provider")
        if expected is not None and not (isinstance(provider, dict) and provider.get("kind") == "top"):
            assert runtime.plain(data) == expected, data   # valid and not top: always taken
            taken += 1

    count()
    assert taken >= 15   # (derandomized: the same 300 documents every run)


def test_every_field_with_every_kind_of_value() -> None:
    """Each field of each plain section alone, with each value of the pool: the plain reader
    takes exactly what the spec takes, and reads it the same."""
    pool = [*NUMBERS, "", "x", "sandbox", "top", None, [], {}, "0.5", 2**63]
    cases = 0
    for section, cls in [("provider", runtime.SandboxSettings), *((k, runtime._SECTIONS[k]) for k in SECTIONS)]:
        for f in dataclasses.fields(cls):
            for value in pool:
                doc = {section: {"kind": "sandbox", f.name: value} if section == "provider" else {f.name: value}}
                expected = spec_reading(doc)
                assert runtime.plain(doc) == expected, doc
                if expected is not None:
                    got = getattr(getattr(expected, section), f.name)
                    assert type(got) is type(getattr(runtime.plain(doc), section).__getattribute__(f.name)), doc
                cases += 1
    assert cases > 400


def test_the_spec_reading_keeps_what_the_plain_reader_does_not() -> None:
    top = {"provider": {"kind": "top", "url": "http://127.0.0.1:1/r", "app_key": "30000001", "sessions_env": "MINE",
                        "methods": {"get": "x.y"}}}
    assert runtime.plain(top) is None
    read = spec_reading(top)
    assert isinstance(read, runtime.Settings) and isinstance(read.provider, runtime.TopSettings)
    assert read.provider.sessions_env_named and read.provider.methods == {"get": "x.y"}
    top["provider"].pop("sessions_env")
    again = spec_reading(top)
    assert again is not None and not again.provider.sessions_env_named  # type: ignore[union-attr]


# --------------------------------------------------------------------------- erps.yaml

ENTRY = st.fixed_dictionaries({}, optional={"name": st.sampled_from(["聚水潭", "", None, 1, True, [], "x"]),
                                            "appkey": st.sampled_from(["21345678", "virtualAppKey", "", 21345678, None,
                                                                       "12.5", []]),
                                            "extra": st.just(1)})
ERPS = st.one_of(st.fixed_dictionaries({"erps": st.dictionaries(st.sampled_from(["jst", "wdt", "菜鸟", 1, True]), ENTRY,
                                                                 max_size=4)},
                                       optional={"other": st.just(1)}),
                 st.sampled_from([None, [], {}, {"erps": None}, {"erps": []}, "erps"]))


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ERPS)
def test_a_plain_catalog_reads_as_the_spec_reads_it(data: Any) -> None:
    try:
        expected: dict[str, Erp] | None = {n: Erp(e.name, e.appkey) for n, e in specs.ErpsFile.model_validate(data).erps.items()}
    except ValidationError:
        expected = None
    ours = _plain_erps(data)
    assert ours == expected   # every valid catalog is plain: the two agree on all of them


# --------------------------------------------------------------------------- no pydantic

# the command in this process, then which modules it imported
IMPORTS = """
import atexit, sys
atexit.register(lambda: print("pydantic imported:", "pydantic" in sys.modules, file=sys.stderr, flush=True))
sys.argv = ["reconciler", *sys.argv[1:]]
from reconciler.cli import run
run()
"""


@pytest.mark.parametrize("command", [["plan"], ["validate"], ["drift"]])
def test_a_plain_configuration_is_planned_without_pydantic(tmp_path: Path, command: list[str]) -> None:
    Agency_(tmp_path)   # (with a profile: the profile's users are read step by step)
    (tmp_path / "profiles.yaml").unlink()
    for f in (tmp_path / "shops").rglob("*.y*ml"):
        f.write_text(f.read_text(encoding="utf-8").replace("  profile: std\n", "  erp: inhouse\n"), encoding="utf-8")
    (tmp_path / "reconciler.yaml").write_text("provider: {kind: sandbox, path: .reconciler/sandbox.db}\n"
                                              "safety: {max_change_share: 0.5, min_managed: 1}\n", encoding="utf-8")
    for _ in range(2):   # cold, then from the parse cache
        done = subprocess.run([sys.executable, "-c", IMPORTS, "-C", str(tmp_path), *command], capture_output=True, text=True,
                              env=cli_env(), timeout=120, check=False)
        assert "Traceback" not in done.stderr, done.stderr
        assert done.stderr.rstrip().endswith("pydantic imported: False"), done.stdout + done.stderr
    (tmp_path / "reconciler.yaml").write_text("provider: {kind: sandbox, path: 7}\n", encoding="utf-8")  # not plain: the spec
    done = subprocess.run([sys.executable, "-c", IMPORTS, "-C", str(tmp_path), *command], capture_output=True, text=True,
                          env=cli_env(), timeout=120, check=False)
    assert done.returncode == 1 and "reconciler.yaml:1:" in done.stdout + done.stderr, done.stdout + done.stderr
    assert done.stderr.rstrip().endswith("pydantic imported: True")


# --------------------------------------------------------------------------- the sandbox's app check

BODY = st.fixed_dictionaries({"exists": st.sampled_from([True, False, 1, None, "true"]),
                              "integrated": st.sampled_from([True, False, 0, None])},
                             optional={"name": st.sampled_from(["聚水潭", None, "", 7, b"x", "n" * 1000, "n" * 1001]),
                                       "detail_whitelisted": st.sampled_from([True, False, 1, None]),
                                       "syncs_order_status": st.sampled_from([True, False, 0, "no"])})


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(BODY, st.sampled_from(list(Scenario)))
def test_the_sandbox_checks_an_app_check_answer_as_the_wire_does(body: dict[str, Any], scenario: Scenario) -> None:
    """The embedded provider reads the sandbox's ``erp.app.check`` answer without the wire's
    pydantic models: it accepts exactly the answers they accept, into the same AppCheck."""
    from reconciler.errors import MalformedAnswer
    from reconciler.providers import wire
    from reconciler.providers.sandbox import _app_check

    def outcome(read: Any) -> Any:
        try:
            return read("21345678", scenario, body)
        except MalformedAnswer:
            return "malformed"

    ours = outcome(_app_check)
    assert ours == outcome(lambda a, s, b: wire.app_check("erp.app.check", a, s, b)), body
