"""plan --format html, drift --format html (and drift --html FILE): one self-contained page,
every name escaped. What the page does in a browser is tests/test_html_browser.py.

Shop names are merchant-controlled text and ERP names come from the configuration: the
page must show them as text, never as markup. The page must load nothing: no element with
a src or href, no CSS url(), and a Content-Security-Policy that allows its own script alone.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

from conftest import ERPS, Agency

from reconciler.drift import DriftReport, Finding
from reconciler.model import Scenario
from reconciler.plan import Change, Names, Plan, Problem
from reconciler.render import drift_html, labels_of, plan_html
from reconciler.vocab import Action, Category, FindingKind, ProblemKind, Severity

EVIL = "<script>window.__pwned=1</script><img src=x onerror=window.__pwned=2></style><b>&amp;"
EVIL_ERP = "evil</style><script>x()</script>"
SHOPS = f"""\
shops:
  - id: "100001"
    name: {EVIL!r}
    erp: jushuitan
    scenarios:
      intercept_shipment: {{}}
      modify_address: {{erp: {EVIL_ERP!r}}}
  - id: "100002"
    name: 二号店
    erp: wangdiantong
    scenarios:
      intercept_shipment: {{}}
      order_status: {{}}
"""
OUR_TAGS = {"html", "head", "meta", "title", "style", "body", "header", "h1", "h2", "span", "p", "main", "section",
            "div", "b", "ul", "li", "i", "figure", "figcaption", "input", "select", "option", "table", "thead",
            "tbody", "tr", "th", "td", "small", "em", "details", "summary", "code", "footer", "script"}
LOADING = {"src", "href", "srcset", "action", "formaction", "poster", "data", "background", "xlink:href", "ping"}


@dataclass
class Page:
    tags: list[tuple[str, dict[str, str | None]]]
    text: str
    scripts: list[str]
    styles: list[str]


class _Reader(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.page = Page([], "", [], [])
        self._in: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.page.tags.append((tag, dict(attrs)))
        self._in = tag if tag in ("script", "style") else None

    def handle_endtag(self, tag: str) -> None:
        self._in = None

    def handle_data(self, data: str) -> None:
        if self._in == "script":
            self.page.scripts.append(data)
        elif self._in == "style":
            self.page.styles.append(data)
        else:
            self.page.text += data


def read(html: str) -> Page:
    r = _Reader()
    r.feed(html)
    r.close()
    return r.page


def assert_self_contained(html: str) -> Page:
    """Only our elements, none that loads anything or handles an event, one style and one
    script, and a CSP that lets only that script run."""
    page = read(html)
    assert {t for t, _ in page.tags} <= OUR_TAGS, {t for t, _ in page.tags} - OUR_TAGS
    for tag, attrs in page.tags:
        assert not LOADING & set(attrs), (tag, attrs)
        assert not [a for a in attrs if a.startswith("on")], (tag, attrs)
    assert [t for t, _ in page.tags].count("script") == 1 and [t for t, _ in page.tags].count("style") == 1
    assert "url(" not in page.styles[0] and "@import" not in page.styles[0]
    csp = next(a["content"] for t, a in page.tags if t == "meta" and a.get("http-equiv") == "Content-Security-Policy")
    digest = base64.b64encode(hashlib.sha256(page.scripts[0].encode()).digest()).decode()
    assert csp is not None and f"script-src 'sha256-{digest}'" in csp and "default-src 'none'" in csp
    assert not re.search(r"https?://", page.scripts[0] + page.styles[0])
    return page


def hostile(agency: Agency) -> None:
    agency.write("erps.yaml", ERPS + f'  {EVIL_ERP!r}: {{name: 坏, appkey: "31415926"}}\n')
    agency.shops(SHOPS)
    agency.world({"100001": {"name": EVIL}, "100002": {"bindings": {"intercept_shipment": "21345678"}}})


def test_plan_html_escapes_hostile_names_and_loads_nothing(agency: Agency) -> None:
    hostile(agency)
    r = agency.run("plan", "--format", "html")
    assert r.exit_code == 1, r.output      # 100002: wangdiantong has not integrated order_status
    html = r.stdout
    page = assert_self_contained(html)
    assert EVIL in page.text and EVIL_ERP in page.text       # shown, as text
    assert "<script>window" not in html and "<img" not in html and "</style><" not in html.split("</head>")[1]
    assert "&lt;script&gt;window.__pwned=1&lt;/script&gt;&lt;img src=x onerror=window.__pwned=2&gt;" in html
    assert "evil&lt;/style&gt;&lt;script&gt;x()&lt;/script&gt;" in html


def test_drift_html_escapes_hostile_names_and_loads_nothing(agency: Agency) -> None:
    hostile(agency)
    out = agency.dir.parent / "drift.html"
    r = agency.run("drift", "--format", "html", "--html", str(out))
    assert r.exit_code == 2, r.output
    assert out.read_text(encoding="utf-8").replace(" ", "")[:200] == r.stdout.replace(" ", "")[:200]
    page = assert_self_contained(r.stdout)
    assert EVIL in page.text
    assert "<script>window" not in r.stdout and "<img" not in r.stdout


def test_plan_html_counts_match_the_json(agency: Agency) -> None:
    hostile(agency)
    data = json.loads(agency.run("plan", "--format", "json").stdout)
    page = read(agency.run("plan", "--format", "html").stdout)
    totals = {a["data-total"]: int(a["data-n"] or 0) for t, a in page.tags if "data-total" in a}
    assert {k: totals[k] for k in data["summary"]} == data["summary"]
    assert totals["errors"] == sum(1 for p in data["problems"] if p["severity"] == "error")
    rows = [a["data-st"] for t, a in page.tags if t == "tr" and "data-st" in a]
    assert len(rows) == len({c["shop"] for c in data["changes"]} | {p["shop"] for p in data["problems"] if p["shop"]})
    assert rows == ["changes", "withheld"]


def test_drift_html_counts_match_the_json(agency: Agency) -> None:
    hostile(agency)
    data = json.loads(agency.run("drift", "--format", "json").stdout)
    page = read(agency.run("drift", "--format", "html").stdout)
    totals = {a["data-total"]: int(a["data-n"] or 0) for t, a in page.tags if "data-total" in a}
    s = data["summary"]
    assert (totals["shops"], totals["with_findings"], totals["drift"], totals["unmanaged"], totals["broken"],
            totals["unknown-shop"], totals["error"]) == (s["shops"], s["shops_with_findings"], s["drift"], s["unmanaged"],
                                                         s["broken"], s["unknown_shops"], s["errors"])
    assert [a["data-st"] for t, a in page.tags if t == "tr" and "data-st" in a] == [x["status"] for x in data["shops"]]


# --------------------------------------------------------------------------- the renderer on hand-built values

JUS, WDT = "21345678", "12345679"
ERP_NAMES = {JUS: "jushuitan", WDT: "wangdiantong"}


def _plan() -> Plan:
    changes = (
        Change("1", Scenario.intercept_shipment, Action.bind, {"appkey": None}, {"appkey": JUS}, "config says erp jushuitan, a:3"),
        Change("1", Scenario.order_status, Action.bind, {"appkey": None}, {"appkey": JUS}, "config says erp jushuitan, a:3"),
        Change("2", Scenario.intercept_shipment, Action.rotate, {"appkey": WDT}, {"appkey": JUS}, "config says erp jushuitan, a:9"),
        Change("3", Scenario.modify_address, Action.update, {"buyer_self_service": False}, {"buyer_self_service": True},
               "config says buyer_self_service: true, a:20"),
    )
    problems = (Problem(None, None, Severity.error, ProblemKind.unsafe, "plan would rotate <everything>"),)
    return Plan(changes=changes, problems=problems, managed=9, shops=("1", "2", "3", "4"),
                names=Names(erps=ERP_NAMES, shops={"1": "一号店", "2": "二号店"}))


def test_charts_per_erp_scenario_and_label_and_each_why_once() -> None:
    labels = {"1": {"client": "acme"}, "2": {"client": "<b>globex</b>", "tier": "gold"}}
    html = plan_html(_plan(), labels=labels, generated_at="2026-05-01T00:00:00+00:00")
    page = assert_self_contained(html)
    captions = [page_text for page_text in re.findall(r"<figcaption>(.*?)</figcaption>", html)]
    assert captions == ["Changes by ERP", "Changes by scenario", "Changes by label client", "Changes by label tier"]
    bars = re.findall(r'<span class="bl">(.*?)</span>.*?<span class="bn">(.*?)</span>', html)
    assert bars[:2] == [("jushuitan", "3"), ("(no ERP: a setting)", "1")]
    assert ("client=&lt;b&gt;globex&lt;/b&gt;", "1") in bars and ("client not set", "1") in bars
    assert "Plan made 2026-05-01T00:00:00+00:00" in page.text
    assert page.text.count("config says erp jushuitan, a:3") == 1       # two changes, one reason: said once
    assert "plan would rotate <everything>" in page.text                 # plan-wide problems, escaped
    assert plan_html(_plan(), labels=labels, generated_at="x") == plan_html(_plan(), labels=labels, generated_at="x")


def test_a_plan_without_changes_says_so() -> None:
    html = plan_html(Plan(changes=(), shops=("1",)))
    assert "No changes: the platform matches the configuration." in read(html).text
    assert "<figure" not in html


def test_drift_html_on_hand_built_values() -> None:
    findings = (
        Finding("1", Scenario.intercept_shipment, Category.drift, FindingKind.differs, "bound to x; the config wants y",
                expected={"appkey": JUS}, actual={"appkey": WDT}, source="a:3"),
        Finding("9", None, Category.unknown_shop, FindingKind.unknown_shop, "unknown"),
        Finding(None, None, Category.error, FindingKind.audit_failed, "cannot list the platform's shops"),
    )
    report = DriftReport(shops=("1", "2"), findings=findings, shop_names={"1": EVIL, "2": None}, shard="2/4",
                         erp_names=ERP_NAMES)
    html = drift_html(report)
    page = assert_self_contained(html)
    assert "Drift audit of shard 2/4" in page.text
    assert "cannot list the platform's shops" in page.text and "9" in re.findall(r"<code>(.*?)</code>", html)
    assert EVIL in page.text and "<img" not in html


@dataclass(frozen=True)
class _Shop:
    id: str
    labels: dict[str, str] | None = None


def test_labels_of_reads_shop_labels_when_the_model_has_them() -> None:
    assert labels_of([_Shop("1", {"client": "acme"}), _Shop("2"), _Shop("3", {})]) == {"1": {"client": "acme"}}  # type: ignore[list-item]


def test_the_package_ships_its_templates() -> None:
    root = Path(__file__).resolve().parent.parent
    assert "templates/*" in (root / "pyproject.toml").read_text(encoding="utf-8")
    assert {p.name for p in (root / "reconciler" / "render" / "templates").iterdir()} >= {
        "report.html.j2", "report.css", "report.js"}


def test_the_configuration_directory_is_said_once() -> None:
    where = "/srv/agency/configs/shops"
    changes = (Change("1", Scenario.intercept_shipment, Action.bind, {"appkey": None}, {"appkey": JUS},
                      f"config says erp jushuitan, {where}/a.yaml:3", source=f"{where}/a.yaml:3"),
               Change("2", Scenario.intercept_shipment, Action.bind, {"appkey": None}, {"appkey": JUS},
                      f"config says erp jushuitan, {where}/b/c.yaml:9", source=f"{where}/b/c.yaml:9"))
    text = read(plan_html(Plan(changes=changes, shops=("1", "2")))).text
    assert f"Configuration files are named relative to {where}/" in text
    assert "config says erp jushuitan, a.yaml:3" in text and "config says erp jushuitan, b/c.yaml:9" in text
    assert text.count("/srv/agency") == 1


def test_a_text_plan_does_not_import_jinja2(tmp_path: Path) -> None:
    """Jinja2 is for the HTML page only: a plan printed as text never imports it (start-up time)."""
    import subprocess
    import sys

    a = Agency(tmp_path / "configs")
    a.shops('shops:\n  - {id: "100001", erp: jushuitan, scenarios: {intercept_shipment: {}}}\n')
    a.world({"100001": {"bindings": {"intercept_shipment": "21345678"}}})
    code = ("import sys\n"
            f"sys.argv = ['reconciler', '-C', {str(a.dir)!r}, 'plan']\n"
            "from reconciler.cli import main\n"   # (the click group raises SystemExit; the console script's run() ends the process)
            "try:\n    main()\n"
            "except SystemExit as e:\n    print('exit', e.code)\n"
            "print(sorted(m for m in ('jinja2', 'markupsafe', 'deepdiff', 'httpx') if m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "No changes" in r.stdout, r.stdout
    assert r.stdout.strip().splitlines()[-2:] == ["exit 0", "[]"], r.stdout
