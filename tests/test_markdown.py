"""plan --format markdown: a compact summary, a <details> per shop, escaped user text, and a
size budget that keeps it postable as a GitHub comment."""

from __future__ import annotations

import re

from conftest import ERPS, Agency

from reconciler.model import Scenario
from reconciler.plan import Action, Change, Names, Plan, Problem
from reconciler.render import MARKDOWN_BUDGET, plan_markdown

GITHUB_COMMENT_LIMIT = 65_536
EVIL = '<img src=x onerror=alert(1)> | **bold** [link](javascript:alert(1)) `tick` $x$ #1 &amp; ~s~'

SHOPS = f"""\
shops:
  - id: "100001"
    name: {EVIL!r}
    erp: jushuitan
    scenarios:
      intercept_shipment: {{}}
      modify_address: {{erp: "evil|<b>erp</b>"}}
  - id: "100002"
    name: 二号店
    erp: wangdiantong
    scenarios:
      intercept_shipment: {{}}
      order_status: {{}}
"""


def _cells(row: str) -> int:
    """The number of cells of a table row: pipes not escaped with a backslash."""
    return len(re.findall(r"(?<!\\)\|", row)) - 1


def test_shop_and_erp_names_are_escaped(agency: Agency) -> None:
    agency.write("erps.yaml", ERPS + '  "evil|<b>erp</b>": {name: 坏, appkey: "31415926"}\n')
    agency.shops(SHOPS)
    agency.world({"100001": {}, "100002": {}})
    r = agency.run("plan", "--format", "markdown")
    assert r.exit_code == 1, r.output       # 100002: 旺店通 has not integrated order_status
    md = r.stdout
    # inside <summary> (HTML): entities; no raw tag, no Markdown
    assert ("<details><summary><code>100001</code> &lt;img src=x onerror=alert(1)&gt; | **bold**"
            " [link](javascript:alert(1)) `tick` $x$ #1 &amp;amp; ~s~ — 2 to bind</summary>") in md
    # no HTML tag other than ours survives anywhere (a backslash-escaped < is literal text)
    assert set(re.findall(r"(?<!\\)<(/?[a-z]+)", md)) == {"details", "/details", "summary", "/summary", "code", "/code"}
    # in table cells: Markdown escaped, pipes escaped, so every row keeps its 5 cells
    assert "| `modify_address` | bind | *unbound* | evil\\|\\<b\\>erp\\</b\\> (`31415926`) |" in md
    rows = [line for line in md.splitlines() if line.startswith("| ")]
    assert rows and all(_cells(row) == 5 for row in rows), rows
    assert "- **error** `100002` `order_status`: ERP wangdiantong (12345679) has not integrated order\\_status" in md


def test_summary_and_one_section_per_shop(agency: Agency) -> None:
    agency.shops(SHOPS.replace("order_status: {}", "modify_address: {}").replace(repr(EVIL), "一号店"))
    agency.write("erps.yaml", ERPS + '  "evil|<b>erp</b>": {name: 坏, appkey: "31415926"}\n')
    agency.world({"100001": {}, "100002": {"bindings": {"intercept_shipment": "21345678"}}})
    r = agency.run("plan", "--format", "markdown")
    assert r.exit_code == 0, r.output
    md = r.stdout
    assert md.startswith("### reconciler plan\n\n**3** to bind · **1** to rotate · **0** to unbind · **0** to update,"
                         " in 2 shops of 2 planned; 0 errors, 0 warnings.\n\nPlan checksum `sha256:")
    assert md.count("<details>") == md.count("</details>") == 2
    assert "<details><summary><code>100002</code> 二号店 — 1 to bind, 1 to rotate</summary>" in md
    assert "| `intercept_shipment` | rotate | jushuitan (`21345678`) | wangdiantong (`12345679`) |" in md
    assert "Cut to fit" not in md
    assert agency.run("plan", "--format", "markdown").stdout == md          # byte for byte
    assert agency.run("apply", "--auto-approve").exit_code == 0
    r = agency.run("plan", "--format", "markdown")
    assert r.stdout.startswith("### reconciler plan\n\n**No changes.** The platform matches the configuration"
                               " (2 shops planned; 0 errors, 0 warnings).\n")
    assert "<details>" not in r.stdout


def test_a_long_plan_is_cut_with_a_count_of_what_was_left_out(agency: Agency) -> None:
    ids = [str(300000 + i) for i in range(1200)]
    agency.shops("shops:\n" + "".join(
        f'  - id: "{s}"\n    name: 店铺{s}\n    erp: jushuitan\n'
        "    scenarios: {intercept_shipment: {}, modify_address: {}, order_status: {}}\n" for s in ids))
    agency.world({s: {} for s in ids})
    r = agency.run("plan", "--format", "markdown")
    assert r.exit_code == 0, r.output
    md = r.stdout
    assert len(md.encode("utf-8")) <= MARKDOWN_BUDGET < GITHUB_COMMENT_LIMIT
    shown = md.count("<details>")
    assert shown == md.count("</details>") and 50 < shown < 1200
    assert (f"> Cut to fit a comment (50,000 bytes): {1200 - shown} shops ({3 * (1200 - shown)} changes) not shown."
            in md)
    assert md.startswith("### reconciler plan\n\n**3600** to bind")   # the summary counts everything


def test_errors_come_first_and_are_cut_too() -> None:
    problems = tuple(Problem(f"{400000 + i}", Scenario.order_status, "error", "not-integrated",
                             "ERP <x> has not integrated order_status " + "·" * 200) for i in range(1000))
    changes = tuple(Change(f"{500000 + i}", Scenario.intercept_shipment, Action.bind, {"appkey": None},
                           {"appkey": "21345678"}, "why") for i in range(10))
    plan = Plan(changes=changes, problems=problems, managed=1010, shops=tuple(sorted({c.shop for c in changes})),
                names=Names(erps={"21345678": "jushuitan"}))
    md = plan_markdown(plan, limit=20_000)
    assert len(md.encode("utf-8")) <= 20_000
    errors_shown = md.count("- **error** `4")
    assert 10 < errors_shown < 1000
    assert f"{1000 - errors_shown} errors of the error list, " in md
    assert md.index("#### Errors") < md.index("> Cut to fit")
    assert "&lt;x&gt;" not in md and "\\<x\\>" in md
