"""The one-pass reading of plain shop files (``reconciler.fastpath``) is an optimisation only.

Random shop files, plain and not (quoted and unquoted ids, names YAML reads as numbers,
booleans or null, known, unknown and virtual ERPs, labels good and bad, scenarios empty,
null, with their own ERP or settings, unknown keys, duplicate keys, flow and block style):

* when the one-pass reading accepts a file, the configuration loads exactly as when the file
  takes the step-by-step path (forced by appending a shop only that path reads, whose lines
  come after every other), shops, sources and lines included;
* it never accepts a file the step-by-step path finds an error or a warning in;
* it does accept the plain ones (the test would otherwise prove nothing).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconciler import fastpath
from reconciler.config import load_config
from reconciler.errors import ConfigError
from reconciler.model import Erp, Scenario, Source
from reconciler.yamlio import loader

ERPS = """\
erps:
  jushuitan:    {name: 聚水潭, appkey: "21345678"}
  wangdiantong: {name: 旺店通, appkey: "12345679"}
  cainiao:      {name: 菜鸟仓, appkey: virtualAppKey}
"""
SPECS = ("jushuitan", "wangdiantong", "cainiao")
SPEC_OBJECTS = {"jushuitan": Erp(name="聚水潭", appkey="21345678"), "wangdiantong": Erp(name="旺店通", appkey="12345679"),
                "cainiao": Erp(name="菜鸟仓", appkey="virtualAppKey")}
# the forcing shop: ``state: bound`` is read only by the step-by-step path
FORCE = '  - id: "999999999"\n    erp: jushuitan\n    scenarios: {intercept_shipment: {state: bound}}\n'

def mostly(plain: st.SearchStrategy[str], odd: list[str]) -> st.SearchStrategy[str]:
    """Plain values 15 times in 16 (so that whole files are often plain), else an odd one."""
    return st.integers(0, 15).flatmap(lambda n: plain if n else st.sampled_from(odd))


ids = mostly(st.integers(100000, 100999).map(lambda n: f'"{n}"'), ["100003", '"1000x"', '""', "'100004'", '"100001"'])
names = mostly(st.sampled_from(["店铺", '"店 A"', "'x: y'", "|\n      多行", '""']), ["123", "yes", "null", ""])
erps = mostly(st.sampled_from([*SPECS, '"jushuitan"']), ["kingdee", "123", "null"])
bools = mostly(st.sampled_from(["true", "false", "yes", "No", "on"]), ["1", '"true"', "null"])
labels = mostly(st.sampled_from(["{team: a}", "{team: a, tier: gold}", "{}"]), ["{'bad key': a}", "{team: 1}", "[a]", "{team: ''}"])
scenario_names = mostly(st.sampled_from(["intercept_shipment", "modify_address", "order_status"]), ["bogus"])


OWN = {"intercept_shipment": (), "modify_address": ("buyer_self_service",), "order_status": ("erp_detail_button",)}


@st.composite
def scenario(draw: st.DrawFn) -> str:
    name = draw(scenario_names)
    parts = []
    if draw(st.booleans()):
        parts.append(f"erp: {draw(erps)}")
    for key in OWN.get(name, ()):
        if draw(st.booleans()):
            parts.append(f"{key}: {draw(bools)}")
    if draw(st.integers(0, 11)) == 0:  # what only the step-by-step path reads, or nobody
        parts.append(draw(st.sampled_from(['appkey: "21345678"', "state: bound", "color: red",
                                           "buyer_self_service: true", "erp_detail_button: true"])))
    body = "{" + ", ".join(parts) + "}" if parts else draw(st.sampled_from(["{}", "", "null", "~"]))
    return f"      {name}: {body}".rstrip()


@st.composite
def shop(draw: st.DrawFn) -> str:
    lines = [f"  - id: {draw(ids)}"]
    if draw(st.booleans()):
        lines.append(f"    name: {draw(names)}")
    if draw(st.integers(0, 4)) > 0:
        lines.append(f"    erp: {draw(erps)}")
    if draw(st.integers(0, 3)) == 0:
        lines.append(f"    protect: {draw(bools)}")
    if draw(st.integers(0, 3)) == 0:
        lines.append(f"    labels: {draw(labels)}")
    if draw(st.integers(0, 19)) == 0:
        lines.append(draw(st.sampled_from(["    profile: std", "    erp: jushuitan", "    colour: red"])))
    if draw(st.integers(0, 5)) > 0:
        lines.append("    scenarios:")
        lines += draw(st.lists(scenario(), min_size=0, max_size=3, unique_by=lambda line: line.split(":")[0]))
        if lines[-1] == "    scenarios:":
            lines[-1] = "    scenarios: {}"
    return "\n".join(lines) + "\n"


def load(root: Path) -> tuple[object, ...]:
    try:
        c = load_config(root)
    except ConfigError as e:
        return ("error", str(e))
    return ("ok", [s for s in c.shops if s.id != "999999999"], [w for w in c.warnings if "999999999" not in w.message])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(shop(), min_size=1, max_size=5), st.booleans())
def test_one_pass_equals_step_by_step(shops: list[str], comment: bool) -> None:
    text = ("# a comment\n\n" if comment else "") + "shops:\n" + "".join(shops)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "shops").mkdir()
        (root / "erps.yaml").write_text(ERPS, encoding="utf-8")
        (root / "shops" / "a.yaml").write_text(text, encoding="utf-8")
        try:
            node = yaml.compose(text, Loader=loader())
        except yaml.YAMLError:
            return
        accepted = fastpath.shops(node, str(root / "shops" / "a.yaml"), SPEC_OBJECTS) is not None
        plain = load(root)
        if accepted:
            assert plain[0] == "ok" and plain[2] == [], plain  # never a file with an error or a warning
        (root / "shops" / "a.yaml").write_text(text + FORCE, encoding="utf-8")
        stepwise = load(root)
        if plain[0] == "ok":
            assert stepwise == plain


PLAIN = """\
shops:
  - id: "100001"
    name: 店
    erp: jushuitan
    labels: {team: a}
    protect: yes
    scenarios:
      intercept_shipment:
      modify_address: {erp: cainiao, buyer_self_service: true}
      order_status: {erp_detail_button: false}
  - {id: "100002", erp: wangdiantong, scenarios: {intercept_shipment: {}}}
"""


def test_a_plain_file_takes_one_pass() -> None:
    shops = fastpath.shops(yaml.compose(PLAIN, Loader=loader()), "a.yaml", SPEC_OBJECTS)
    assert shops is not None and [s.id for s in shops] == ["100001", "100002"]
    assert [(b.appkey, b.source.line) for b in shops[0].bindings.values()] == [
        ("21345678", 4), ("virtualAppKey", 9), ("21345678", 4)]
    assert shops[0].bindings[Scenario.modify_address].buyer_self_service_source == Source(file="a.yaml", line=9)
    assert shops[0].protect is True and shops[0].labels == {"team": "a"}


@pytest.mark.parametrize("change", [
    ("erp: jushuitan\n    labels", "profile: std\n    labels"),            # a profile
    ("intercept_shipment:\n", "intercept_shipment: {appkey: '21345678'}\n"),  # an appkey
    ("protect: yes", "protect: 1"),                                         # not a boolean
    ("name: 店", "name: 123"),                                              # a number
    ('id: "100002"', "id: 100002"),                                         # an unquoted id
    ("erp: wangdiantong", "erp: kingdee"),                                  # an unknown ERP
    ("{erp: cainiao, buyer", "{erp: cainiao, erp: jushuitan, buyer"),        # a duplicate key
    ("erp_detail_button: false", "erp_detail_button: !!bool false"),        # a tag (still a bool: fine)
])
def test_what_is_not_plain_takes_the_step_by_step_path(change: tuple[str, str]) -> None:
    text = PLAIN.replace(*change)
    assert text != PLAIN
    shops = fastpath.shops(yaml.compose(text, Loader=loader()), "a.yaml", SPEC_OBJECTS)
    assert (shops is not None) == change[1].endswith("!!bool false")
