"""Reading plain shop files line by line (``reconciler.scan``) is an optimisation only.

``scan.shops`` must give exactly what composing the file as YAML and reading its nodes
(``fastpath.shops``, itself held to the step-by-step path by tests/test_fastpath.py) gives —
shops, sources and lines — or None. Random files in the block form, with the YAML corners a
line reader gets wrong when it is careless (plain scalars YAML resolves to bools, numbers,
nulls or dates; ``: `` and `` #`` inside values; quotes, escapes, comments, blank lines,
indentation, tabs, CRLF, anchors, line separators, multi-line scalars, flow collections,
duplicate and unknown keys), and a table of hand-written cases. It must also accept the
plain ones (else the test proves nothing, and plan is slow).
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconciler import fastpath, scan
from reconciler.model import Erp, Scenario
from reconciler.yamlio import compose

ERPS = {"jushuitan": Erp(name="聚水潭", appkey="21345678"), "wangdiantong": Erp(name="旺店通", appkey="12345679"),
        "cainiao": Erp(name="菜鸟仓", appkey="virtualAppKey")}
FILE = "shops/a.yaml"


def composed(raw: bytes) -> list[object] | None:
    """What the YAML path makes of a file: None when it cannot be composed or is not plain."""
    node, issues = compose(raw, FILE)
    if node is None:
        return None
    shops = fastpath.shops(node.node, FILE, ERPS)
    if shops is not None:
        assert not issues
    return shops  # type: ignore[return-value]


def same(text: str) -> list[object] | None:
    raw = text.encode()
    scanned = scan.shops(raw, FILE, ERPS)
    if scanned is not None:
        assert scanned == composed(raw), text
    return scanned  # type: ignore[return-value]


# --------------------------------------------------------------------------- random files

class mostly:
    """A plain value 7 times in 8, else an odd one; only plain ones in a plain file."""

    def __init__(self, plain: st.SearchStrategy[str], odd: list[str]) -> None:
        self.plain, self.odd = plain, st.integers(0, 7).flatmap(lambda n: plain if n else st.sampled_from(odd))

    def __call__(self, draw: st.DrawFn, only_plain: bool) -> str:
        return draw(self.plain if only_plain else self.odd)


ODD_SCALARS = ["yes", "No", "ON", "off", "true", "null", "Null", "~", "", "123", "0x1f", "0o17", "1_000", "1.5", ".inf",
               "-.5", "+1", "2020-01-01", "2020-01-01 10:00:00", "<<", "=", "a: b", "a:", "a #b", "a#b", "-x", "- x", "?x",
               ":x", "[a]", "{a: 1}", "{}", "[]", "a, b", "!!str x", "!x y", "&a x", "*a", "|", ">", "%x", "@x", "`x",
               '"a\\"b"', '"a\\nb"', "'it''s'", "'a' b", '"a" b', '"a" # c', "'a' # c", "a # c", "a  #c", '"a', "'a",
               "a\u2028b", "a\u0085b", "a\u00a0b", "\ufeffa", "a\x07b", "a\tb", "a  ", '"a #b"', "'#'", '"\'"', "'\"'",
               "店铺 #1", "店铺: 1", "a\\b", "a'b", 'a"b', "x,y", "x]y", "x}", "a" * 300]
ids = mostly(st.integers(100000, 100999).map(lambda n: st.sampled_from([f'"{n}"', f"'{n}'"])).flatmap(lambda s: s),
             ["100003", '"1000x"', '""', '"100001"', "'100001'", *ODD_SCALARS])
names = mostly(st.sampled_from(["店铺", "店铺 A", '"店 A"', "'x: y'", "Shop-1", "a.b", "a#b", '"店 #1"', "x{y}"]),
               ODD_SCALARS)
erp_names = mostly(st.sampled_from(["jushuitan", "wangdiantong", "cainiao", '"jushuitan"', "'wangdiantong'"]),
                   ["kingdee", *ODD_SCALARS])
bools = mostly(st.sampled_from(["true", "false", "yes", "No", "on", "OFF", "True", "FALSE"]),
               ["1", '"true"', "y", "n", "tRUE", *ODD_SCALARS])
label_keys = mostly(st.sampled_from(["team", "tier", "a.b", "x_1", "Z-9"]), ["yes", "1", "1.5", "null", "_x", "-x", "a b"])
label_values = mostly(st.sampled_from(["east", "gold", '"a b"', "'1'", "店"]), ['""', *ODD_SCALARS])
scenario_keys = mostly(st.sampled_from([s.value for s in Scenario]), ["bogus", "appkey", "Intercept_shipment"])
OWN = {"intercept_shipment": (), "modify_address": ("buyer_self_service",), "order_status": ("erp_detail_button",)}
comments = st.sampled_from(["", "", "", "", "  # note", " #x", "  #"])
spaces = st.sampled_from(["", "", "", " ", "  "])


@st.composite
def block(draw: st.DrawFn, indent: int, pairs: list[tuple[str, str]]) -> list[str]:
    """Lines of a block mapping at ``indent``: each ``key: value``, with comments and blank lines."""
    out = []
    for key, value in pairs:
        if draw(st.integers(0, 15)) == 0:
            out.append(draw(st.sampled_from(["", " " * indent + "# a comment", "   ", "#"])))
        out.append(f"{' ' * indent}{key}:{' ' if value else ''}{value}{draw(comments) if value else ''}{draw(spaces)}")
    return out


@st.composite
def scenario(draw: st.DrawFn, indent: int, plain: bool, name: str) -> list[str]:
    pairs = []
    if draw(st.booleans()):
        erp = erp_names(draw, plain)
        if plain and "cainiao" in erp and name != "modify_address":
            erp = "jushuitan"   # virtualAppKey: modify_address only
        pairs.append(("erp", erp))
    for key in OWN.get(name, ()):
        if draw(st.booleans()):
            pairs.append((key, bools(draw, plain)))
    if not plain and draw(st.integers(0, 11)) == 0:
        pairs.append(draw(st.sampled_from([("appkey", '"21345678"'), ("state", "bound"), ("color", "red"),
                                           ("buyer_self_service", "true"), ("erp_detail_button", "true"), ("erp", "x")])))
    style = draw(st.integers(0, 5))
    if pairs and (style < 4 or plain):   # a block under the scenario
        inner = indent + draw(st.sampled_from([2, 2, 4, 1]))
        return [f"{' ' * indent}{name}:", *draw(block(inner, pairs))]
    if pairs:                  # a flow mapping: YAML only
        return [f"{' ' * indent}{name}: {{{', '.join(f'{k}: {v}' for k, v in pairs)}}}"]
    ends = [' {}', '', ' ~', ' null', ' NULL'] + ([] if plain else [' {}  # x', ' []'])
    return [f"{' ' * indent}{name}:{draw(st.sampled_from(ends))}"]


@st.composite
def shop(draw: st.DrawFn, column: int, dash: str, plain: bool) -> list[str]:
    key_column = column + len(dash)
    pairs: list[tuple[str, str]] = [("id", ids(draw, plain))]
    if draw(st.booleans()):
        pairs.append(("name", names(draw, plain)))
    if plain or draw(st.integers(0, 4)) > 0:   # (a plain shop's scenarios need its ERP)
        erp = erp_names(draw, plain)
        pairs.append(("erp", "wangdiantong" if plain and "cainiao" in erp else erp))
    if draw(st.integers(0, 5)) == 0:
        pairs.append(("protect", bools(draw, plain)))
    if not plain and draw(st.integers(0, 19)) == 0:
        pairs.append(draw(st.sampled_from([("profile", "std"), ("color", "red"), ("id", '"100500"'), ("name", "again")])))
    order = draw(st.permutations(pairs)) if draw(st.integers(0, 5)) == 0 else pairs
    lines = draw(block(key_column, order))
    lines[0] = f"{' ' * column}{dash}{lines[0].lstrip(' ')}" if lines[0].strip() else lines[0]
    if not lines[0].strip():
        lines = [f"{' ' * column}{dash}{lines[1].lstrip(' ')}", *lines[2:]]
    inner = key_column + draw(st.sampled_from([2, 2, 4, 1]))
    if draw(st.integers(0, 3)) == 0:
        labels = [(label_keys(draw, plain), label_values(draw, plain)) for _ in range(draw(st.integers(0, 3)))]
        if plain:
            labels = list(dict(labels).items())   # each key once
        if labels:
            lines += [f"{' ' * key_column}labels:", *draw(block(inner, labels))]
        else:
            lines.append(f"{' ' * key_column}labels: {draw(st.sampled_from(['{}'] if plain else ['{}', '', '[]', '{team: a}']))}".rstrip())
    if draw(st.integers(0, 7)) > 0:
        lines.append(f"{' ' * key_column}scenarios:{draw(st.sampled_from(['', '', '  # c'] if plain else ['', ' {}', '  # c']))}")
        if plain:   # each scenario once, at least one
            chosen = draw(st.permutations([s.value for s in Scenario]))[:draw(st.integers(1, 3))]
        else:
            chosen = [scenario_keys(draw, plain) for _ in range(draw(st.integers(0, 3)))]
        for name in chosen:
            lines += draw(scenario(inner, plain, name))
    return lines


@st.composite
def shop_file(draw: st.DrawFn, plain: bool | None = None) -> str:
    if plain is None:
        plain = draw(st.booleans())
    column = draw(st.sampled_from([2, 2, 0, 4, 1]))
    dash = draw(st.sampled_from(["- ", "- ", "-  ", "-   "]))
    lines = [draw(st.sampled_from(["", "", "# shops of acme"] if plain else ["", "---", "%YAML 1.1\n---"])), "shops:"]
    for _ in range(draw(st.integers(1 if plain else 0, 4))):
        lines += draw(shop(column, dash, plain))
    text = "\n".join(x for x in lines if x != "" or draw(st.booleans())) + draw(st.sampled_from(["\n", "\n", "", "\n\n"]))
    corruption = 0 if plain else draw(st.integers(0, 5))
    if corruption == 1:
        text = text.replace("\n", "\r\n")
    elif corruption == 2:
        text = text.replace("  ", "\t", 1)
    elif corruption == 3 and "\n" in text:
        cut = draw(st.integers(0, len(text) - 1))
        text = text[:cut] + draw(st.sampled_from(["  ", " ", "\n  x", "&a ", "*a", ": ", " #", "-", "\u2028", "'", '"', "\n"])) + text[cut:]
    elif corruption == 4:
        text += draw(st.sampled_from(["other: 1\n", "  x: 1\n", "...\n", "---\nshops: []\n", "  - id: \"100999\"\n"]))
    return text


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(text=shop_file())
def test_the_line_reading_is_the_yaml_reading_or_declines(text: str) -> None:
    same(text)


def test_it_accepts_the_plain_files() -> None:
    """Random files of only plain values, which the YAML path reads in one pass: read line by line too."""
    accepted = declined = 0

    @settings(max_examples=300, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(text=shop_file(plain=True))
    def count(text: str) -> None:
        nonlocal accepted, declined
        if composed(text.encode()) is None:
            return
        if same(text) is None:
            declined += 1
        else:
            accepted += 1

    count()
    assert accepted >= 100 and declined <= accepted // 10, (accepted, declined)   # (declined: "- # comment" lines)


# --------------------------------------------------------------------------- by hand

PLAIN = """\
shops:
  - id: "100001"
    name: 店铺 1
    erp: jushuitan
    protect: yes
    labels:
      team: east
      tier: "gold"
    scenarios:
      intercept_shipment: {}
      modify_address:
        erp: cainiao
        buyer_self_service: true
      order_status:
        erp_detail_button: off
  - id: '100002'
    erp: wangdiantong
    scenarios:
      order_status: ~
"""


def test_a_plain_file_is_read_line_by_line_with_its_lines() -> None:
    shops = same(PLAIN)
    assert shops is not None
    first = shops[0]
    assert first.id == "100001" and first.name == "店铺 1" and first.protect is True  # type: ignore[attr-defined]
    assert first.labels == {"team": "east", "tier": "gold"}  # type: ignore[attr-defined]
    assert first.source.line == 2  # type: ignore[attr-defined]
    b = first.bindings  # type: ignore[attr-defined]
    assert b[Scenario.intercept_shipment].source.line == 4 and b[Scenario.intercept_shipment].appkey == "21345678"
    assert b[Scenario.modify_address].appkey == "virtualAppKey" and b[Scenario.modify_address].source.line == 12
    assert b[Scenario.modify_address].buyer_self_service_source.line == 13
    assert b[Scenario.order_status].erp_detail_button is False
    assert shops[1].bindings[Scenario.order_status].source.line == 17  # type: ignore[attr-defined]


@pytest.mark.parametrize("change", [
    ("name: 店铺 1", "name: yes"), ("name: 店铺 1", "name: 1.5"), ("name: 店铺 1", "name: 2020-01-01"),
    ("name: 店铺 1", "name: ~"), ("name: 店铺 1", "name:"), ("name: 店铺 1", "name: a: b"), ("name: 店铺 1", "name: 'a"),
    ("name: 店铺 1", 'name: "a\\tb"'), ("name: 店铺 1", "name: |\n      a"), ("name: 店铺 1", "name: a\n      b"),
    ("name: 店铺 1", "name: &x a"), ("name: 店铺 1", "name: !!str a"), ("name: 店铺 1", "name: [a]"),
    ('id: "100001"', "id: 100001"), ('id: "100001"', 'id: "100002"'), ("team: east", "yes: east"), ("team: east", "1: east"),
    ("team: east", "team: 1"), ("team: east", "team: ''"), ("protect: yes", "protect: 1"), ("protect: yes", "protect: y"),
    ("protect: yes", 'protect: "yes"'), ("erp: jushuitan", "erp: kingdee"), ("erp: cainiao", "erp: cainiao\n        erp: cainiao"),
    ("      intercept_shipment: {}", "      intercept_shipment: {erp: jushuitan}"),
    ("      intercept_shipment: {}", "      intercept_shipment: []"), ("      intercept_shipment: {}", "      bogus: {}"),
    ("    erp: wangdiantong", "    erp: cainiao"), ("    name: 店铺 1", "     name: 店铺 1"), ("    name: 店铺 1", "   name: 店铺 1"),
    ("  - id: '100002'", "  -\n    id: '100002'"), ("  - id: '100002'", "  - - id: '100002'"),
    ("shops:", "---\nshops:"), ("shops:", "shops:\nother: 1"), ("labels:", "labels: {}\n    labels:"),
    ("    scenarios:\n      intercept", "    scenarios:\n    intercept"), ("      tier", "        tier"), ("      tier", "     tier"),
    ("  - id: '100002'", "   - id: '100002'"), ("  - id: '100002'", " - id: '100002'"), ("      order_status:\n", "       order_status:\n"),
    ("    erp: wangdiantong", "     erp: wangdiantong"), ("tier: \"gold\"", "tier: \"go\\\"ld\""),
])
def test_what_the_line_reading_leaves_to_yaml(change: tuple[str, str]) -> None:
    old, new = change
    assert old in PLAIN
    assert scan.shops(PLAIN.replace(old, new, 1).encode(), FILE, ERPS) is None
    same(PLAIN.replace(old, new, 1))


@pytest.mark.parametrize("change", [
    ("name: 店铺 1", "name: 店铺 1   # the flagship"), ("name: 店铺 1", "name: a#b"), ("name: 店铺 1", 'name: "a # b"'),
    ("name: 店铺 1", "name: 'a: b'  # c"), ("name: 店铺 1", "name: x{y}[z],w"), ("name: 店铺 1", "name: a:b"),
    ("shops:", "# the shops\n\nshops:"), ("  - id: '100002'", "\n  # next\n  - id: '100002'"),
    ("\n  ", "\n"), ("\n  ", "\n    "), ("shops:", "shops: # c"), ("      order_status: ~", "      order_status:"),
    ("      order_status: ~", "      order_status: NULL"), ("protect: yes", "protect: ON"), ("team: east", "team: 'yes'"),
    ("        erp_detail_button", "          erp_detail_button"),
])
def test_what_the_line_reading_takes(change: tuple[str, str]) -> None:
    old, new = change
    text = PLAIN.replace(old, new) if old == "\n  " else PLAIN.replace(old, new, 1)   # (all lines re-indented)
    assert same(text) is not None, text


def test_bytes_that_are_not_utf8_or_hold_odd_characters_are_left_to_yaml() -> None:
    for raw in (PLAIN.encode("utf-16"), b"\xef\xbb\xbf" + PLAIN.encode(), PLAIN.encode().replace("店".encode(), b"\xff"),
                PLAIN.replace("店铺 1", "店铺\u2028").encode(), PLAIN.replace("店铺 1", "a\x00").encode(), b"", b"shops:\n"):
        assert scan.shops(raw, FILE, ERPS) is None


def test_a_long_run_of_spaces_is_read_in_linear_time() -> None:
    """A value with a run of 2,000,000 spaces inside and after it: read (as YAML reads it) in a
    bounded time. A lazy ``(.*?) *`` in the line pattern tried every split of the run: hours."""
    import subprocess
    import sys

    code = ("from reconciler import scan; from reconciler.model import Erp\n"
            "raw = ('shops:\\n  - id: \"100001\"\\n    name: x' + ' ' * 2_000_000 + 'y' + ' ' * 2_000_000 + '\\n'"
            " + '    erp: jushuitan\\n').encode()\n"
            "shops = scan.shops(raw, 'f.yaml', {'jushuitan': Erp('j', '21345678')})\n"
            "assert shops is not None and shops[0].name == 'x' + ' ' * 2_000_000 + 'y', shops\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
