"""A plan or a drift report → one self-contained HTML page, for the people who review without
the CLI: the approver of a merge, the agency's account manager, the merchant.

The page is rendered by Jinja2 with autoescaping on for every template, so each value —
shop names are merchant-controlled text — is escaped where it lands (text or attribute);
no markup is built by string concatenation here. The page loads nothing: its CSS and
script are inline, and a Content-Security-Policy forbids every other source and every
script but its own (by hash), so even markup that slipped through could neither run nor
fetch anything. It works as a plain document too: without the script only the filter is
gone.

What it shows: totals; bar charts of the changes (or findings) per ERP, per scenario and
per value of each shop label (when the configuration gives shops labels); a filterable
table of shops with each shop's changes and their why (or its findings).

This module builds plain view values (``_View``) from the plan or report; the templates in
``templates/`` only lay them out. Pure: the same input renders to the same bytes.
"""

from __future__ import annotations

import base64
import hashlib
import posixpath
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import cache
from typing import TYPE_CHECKING, Any

from ..drift import DriftReport, Finding
from ..plan import Change, Plan, Problem, target_label
from ..vocab import Action, Category, Severity, show
from .common import CONTROL, Labels, plural

if TYPE_CHECKING:  # Jinja2 loads only when a page is rendered: a text plan never pays its import
    from jinja2 import Environment
    from markupsafe import Markup

MAX_BARS = 12        # a chart shows the largest groups; the rest is one "other" bar
NO_ERP = "(no ERP: a setting)"
ACTION_ORDER = tuple(Action)
CATEGORY_ORDER = (Category.drift, Category.broken, Category.unmanaged, Category.error)
_SAID = {Category.drift: "drifted", Category.broken: "cannot work", Category.unmanaged: "unmanaged",
         Category.unknown_shop: "unknown shops", Category.error: "errors"}


def _t(text: object) -> str:
    """User or platform text for the page: control characters out, on one line (escaping is Jinja's)."""
    return " ".join(CONTROL.sub("", str(text)).split())


# --------------------------------------------------------------------------- view values


@dataclass(frozen=True)
class Segment:
    kind: str        # the CSS class: an action or a category
    count: int
    pct: float       # of the chart's largest bar


@dataclass(frozen=True)
class Bar:
    label: str
    total: int
    segments: tuple[Segment, ...]
    filter: str      # what clicking the bar types into the shop filter


@dataclass(frozen=True)
class Chart:
    title: str
    bars: tuple[Bar, ...]


@dataclass(frozen=True)
class Item:
    """One line of a shop's details: a change (with its why) or a finding or problem."""

    kind: str        # CSS class: action, category or severity
    tag: str         # what it is: "rotate", "differs", "error"
    scenario: str
    text: str        # before → after, or the message
    why: str = ""


@dataclass(frozen=True)
class Row:
    shop: str
    name: str
    status: str              # CSS class and filter value
    summary: str             # "2 to bind, 1 to rotate" / "2 drift, 1 broken"
    problems: str            # "1 error, 2 warnings"
    severe: bool             # the problems include an error
    details: str             # what the details hold: "3 changes, 1 problem" / "3 findings"
    erps: str
    labels: str
    items: tuple[Item, ...]  # consecutive items with the same ``why`` show it once, above them


@dataclass(frozen=True)
class _View:
    kind: str                                  # "plan" | "drift"
    title: str
    status: str
    subtitle: tuple[str, ...]
    totals: tuple[tuple[str, str, int], ...]   # (key, label, count)
    notes: tuple[Item, ...]                    # plan-wide problems, audit errors
    charts: tuple[Chart, ...]
    legend: tuple[tuple[str, str], ...]        # (CSS class, label)
    statuses: tuple[tuple[str, str], ...]      # the status filter's options
    rows: tuple[Row, ...]
    total_shops: int
    unknown: tuple[str, ...] = ()
    empty: str = ""


# --------------------------------------------------------------------------- charts


def _chart(title: str, groups: Mapping[str, Counter[str]], order: Sequence[str], *, filters: Mapping[str, str] | None = None) -> Chart:
    """Bars per group, largest first, each split by ``order`` (actions or categories)."""
    ranked = sorted(groups.items(), key=lambda kv: (-sum(kv[1].values()), kv[0]))
    if len(ranked) > MAX_BARS:
        rest: Counter[str] = Counter()
        for _, c in ranked[MAX_BARS - 1:]:
            rest.update(c)
        ranked = [*ranked[:MAX_BARS - 1], (f"{len(ranked) - MAX_BARS + 1} others", rest)]
    top = max((sum(c.values()) for _, c in ranked), default=0) or 1
    bars = tuple(
        Bar(label=_t(name), total=sum(c.values()),
            segments=tuple(Segment(k, c[k], round(100 * c[k] / top, 2)) for k in order if c[k]),
            filter=_t((filters or {}).get(name, "")))
        for name, c in ranked)
    return Chart(title=title, bars=bars)


def _label_charts(what: str, per_shop: Mapping[str, Counter[str]], labels: Labels, order: Sequence[str]) -> list[Chart]:
    keys = sorted({k for shop in per_shop for k in labels.get(shop, {})})
    charts = []
    for key in keys:
        groups: dict[str, Counter[str]] = {}
        for shop, counts in per_shop.items():
            value = labels.get(shop, {}).get(key)
            groups.setdefault(f"{key}={value}" if value is not None else f"{key} not set", Counter()).update(counts)
        charts.append(_chart(f"{what} by label {_t(key)}", groups, order,
                             filters={g: g for g in groups if "=" in g}))
    return charts


def _label_text(labels: Mapping[str, str]) -> str:
    return " ".join(f"{_t(k)}={_t(v)}" for k, v in sorted(labels.items()))


# --------------------------------------------------------------------------- plan


def _erp(values: Mapping[str, Any], erps: Mapping[str, str]) -> str | None:
    key = values.get("appkey")
    return None if key is None else erps.get(str(key), str(key))


def _change_erp(c: Change, erps: Mapping[str, str]) -> str:
    """The ERP a change is about: the one it binds or rotates to, or the one it unbinds."""
    return _erp(c.after, erps) or _erp(c.before, erps) or NO_ERP


def _change_item(c: Change, erps: Mapping[str, str]) -> Item:
    """``bind jushuitan (21345678)``, ``rotate A → B``, ``unbind A``, ``update buyer_self_service=false → true``."""
    if c.action is Action.bind:
        text = show(c.after, erps)
    elif c.action is Action.unbind:
        text = show(c.before, erps)
    else:
        text = f"{show(c.before, erps)} → {show(c.after, erps)}"
    return Item(kind=c.action.value, tag=c.action.value, scenario=c.scenario.value, text=_t(text), why=_t(c.reason))


def _problem_item(p: Problem, *, why: str = "") -> Item:
    return Item(kind=p.severity.value, tag=f"{p.severity} {p.kind}:", scenario=p.scenario.value if p.scenario else "",
                text=_t(p.message), why=why)


def _counts_text(changes: Sequence[Change]) -> str:
    c = Counter(ch.action for ch in changes)
    return ", ".join(f"{c[a]} to {a.value}" for a in ACTION_ORDER if c[a])


def _problems_text(problems: Sequence[Problem]) -> str:
    c = Counter(p.severity for p in problems)
    return ", ".join([plural(c[s], s.value) for s in (Severity.error, Severity.warning) if c[s]]
                     + ([f"{c[Severity.waived]} waived"] if c[Severity.waived] else []))


def _plan_row(shop: str, plan: Plan, changes: Sequence[Change], problems: Sequence[Problem], labels: Labels) -> Row:
    erps = plan.names.erps
    name = _t(plan.names.shop(shop) or "")
    errors = [p for p in problems if p.severity == Severity.error]
    status = "withheld" if errors else ("changes" if changes else ("warnings" if problems else "ok"))
    erp_names = sorted({_change_erp(c, erps) for c in changes} - {NO_ERP})
    label_text = _label_text(labels.get(shop, {}))
    summary = _counts_text(changes) or ("withheld" if errors else "no change")
    details = ", ".join(x for x in (plural(len(changes), "change") if changes else "",
                                    plural(len(problems), "problem") if problems else "") if x)
    return Row(shop=_t(shop), name=name, status=status, summary=summary, problems=_problems_text(problems),
               severe=bool(errors), details=details, erps=", ".join(erp_names), labels=label_text,
               items=(*(_change_item(c, erps) for c in changes), *(_problem_item(p, why="problems of this shop") for p in problems)))


def _plan_subtitle(plan: Plan, generated_at: str | None) -> tuple[str, ...]:
    if plan.created_at or plan.target:
        made = [f"Saved plan made {plan.created_at or '(time not recorded)'}"]
        if plan.tool_version:
            made.append(f"by reconciler {plan.tool_version}")
        made.append(f"for {target_label(plan.target)}")
        lines = [" ".join(made)]
    else:
        lines = [f"Plan made {generated_at}" if generated_at else "Plan"]
    return (*lines, f"{plural(len(plan.shops), 'shop')} planned · checksum {plan.checksum}")


def _plan_view(plan: Plan, labels: Labels, generated_at: str | None) -> _View:
    by_shop = plan.by_shop()
    problems: dict[str, list[Problem]] = {}
    for p in plan.problems:
        if p.shop:
            problems.setdefault(p.shop, []).append(p)
    shops = sorted(set(by_shop) | set(problems))
    rows = tuple(_plan_row(s, plan, by_shop.get(s, []), problems.get(s, []), labels) for s in shops)
    erps = plan.names.erps
    per_erp: dict[str, Counter[str]] = {}
    per_scenario: dict[str, Counter[str]] = {}
    per_shop: dict[str, Counter[str]] = {}
    for c in plan.changes:
        per_erp.setdefault(_change_erp(c, erps), Counter())[c.action.value] += 1
        per_scenario.setdefault(c.scenario.value, Counter())[c.action.value] += 1
        per_shop.setdefault(c.shop, Counter())[c.action.value] += 1
    order = [a.value for a in ACTION_ORDER]
    charts = [_chart("Changes by ERP", per_erp, order, filters={e: e for e in per_erp if e != NO_ERP}),
              _chart("Changes by scenario", per_scenario, order),
              *_label_charts("Changes", per_shop, labels, order)]
    s = plan.summary
    withheld = plan.withheld
    totals = (*((a.value, f"to {a.value}", s[a.value]) for a in ACTION_ORDER),
              ("shops", "shops changing", len(by_shop)), ("errors", "errors", len(plan.errors)),
              ("warnings", "warnings", len(plan.warnings)), ("withheld", "shops withheld", len(withheld)))
    status = "error" if plan.errors else ("changes" if plan.changes else "clean")
    return _View(
        kind="plan", title="reconciler plan", status=status, subtitle=_plan_subtitle(plan, generated_at), totals=totals,
        notes=(*(_problem_item(p) for p in plan.problems if not p.shop),
               *(Item(kind="info", tag="then:", scenario="", text=_t(n), why="") for n in plan.notes)),
        charts=tuple(c for c in charts if c.bars),
        legend=tuple((a.value, a.value) for a in ACTION_ORDER),
        statuses=(("changes", "with changes"), ("withheld", "withheld by errors"), ("warnings", "warnings only")),
        rows=rows, total_shops=len(plan.shops),
        empty="No changes: the platform matches the configuration." if not rows else "")


# --------------------------------------------------------------------------- drift


def _finding_erp(f: Finding, erps: Mapping[str, str]) -> str:
    for side in (f.actual, f.expected):
        if side and side.get("appkey") is not None:
            return _erp(side, erps) or NO_ERP
    return NO_ERP


def _finding_item(f: Finding, erps: Mapping[str, str]) -> Item:
    """A finding's message already says both sides; its ``why`` is where the config says otherwise."""
    where = f"config: {f.source}" if f.source else ("not in the config" if f.category == Category.unmanaged else "")
    return Item(kind="waived" if f.waived else f.category.value, tag=f"{f.kind}{' (waived)' if f.waived else ''}:",
                scenario=f.scenario.value if f.scenario else "", text=_t(f.message), why=_t(where))


def _drift_row(shop: str, name: str, findings: Sequence[Finding], erps: Mapping[str, str], labels: Labels) -> Row:
    active = [f for f in findings if not f.waived]
    status = "error" if any(f.category == Category.error for f in active) else ("drift" if active else "clean")
    c = Counter(f.category for f in active)
    summary = ", ".join(f"{c[k]} {k.value}" for k in CATEGORY_ORDER if c[k]) or "clean"
    erp_names = sorted({_finding_erp(f, erps) for f in findings} - {NO_ERP})
    label_text = _label_text(labels.get(shop, {}))
    return Row(shop=_t(shop), name=_t(name), status=status, summary=summary, problems="", severe=status == "error",
               details=plural(len(findings), "finding"), erps=", ".join(erp_names),
               labels=label_text, items=tuple(_finding_item(f, erps) for f in findings))


def _drift_view(report: DriftReport, labels: Labels, generated_at: str | None) -> _View:
    erps = report.erp_names
    per = report.by_shop()
    rows = tuple(_drift_row(s, report.shop_names.get(s) or "", fs, erps, labels) for s, fs in per.items())
    per_erp: dict[str, Counter[str]] = {}
    per_scenario: dict[str, Counter[str]] = {}
    per_shop: dict[str, Counter[str]] = {}
    for shop, fs in per.items():
        for f in fs:
            per_erp.setdefault(_finding_erp(f, erps), Counter())[f.category.value] += 1
            per_scenario.setdefault(f.scenario.value if f.scenario else "(whole shop)", Counter())[f.category.value] += 1
            per_shop.setdefault(shop, Counter())[f.category.value] += 1
    order = [c.value for c in CATEGORY_ORDER]
    charts = [_chart("Findings by ERP", per_erp, order, filters={e: e for e in per_erp if e != NO_ERP}),
              _chart("Findings by scenario", per_scenario, order),
              *_label_charts("Findings", per_shop, labels, order)]
    counts = report.counts()
    totals = (("shops", "shops audited", len(report.shops)),
              ("with_findings", "shops with findings", sum(1 for fs in per.values() if fs)),
              *((c.value, _SAID[c], counts[c]) for c in (*CATEGORY_ORDER[:3], Category.unknown_shop, Category.error)))
    sub = [f"Drift audit{f' of shard {report.shard}' if report.shard else ''}" + (f" made {generated_at}" if generated_at else "")]
    return _View(
        kind="drift", title="reconciler drift", status=report.status, subtitle=tuple(sub), totals=totals,
        notes=tuple(_finding_item(f, erps) for f in report.general()), charts=tuple(c for c in charts if c.bars),
        legend=tuple((c.value, c.value) for c in CATEGORY_ORDER),
        statuses=(("drift", "with findings"), ("error", "could not be read"), ("clean", "clean")),
        rows=rows, total_shops=len(report.shops), unknown=tuple(_t(s) for s in report.unknown_shops()),
        empty="No shops audited." if not rows else "")


# --------------------------------------------------------------------------- shorter paths


def _common_dir(sources: Iterable[str | None]) -> str:
    """The directory every ``file:line`` source lies under (so it is said once), or ""."""
    dirs = {posixpath.dirname(s.rsplit(":", 1)[0]) for s in sources if s}
    if not dirs:
        return ""
    try:
        base = posixpath.commonpath(sorted(dirs))
    except ValueError:  # relative and absolute mixed
        return ""
    return base if base not in ("", "/", ".") else ""


def _relative(view: _View, base: str) -> _View:
    """The view with ``base/`` left out of every path it shows (the subtitle says it once)."""
    if not base:
        return view
    cut = base + "/"

    def item(i: Item) -> Item:
        return replace(i, text=i.text.replace(cut, ""), why=i.why.replace(cut, ""))

    rows = tuple(replace(r, items=tuple(item(i) for i in r.items)) for r in view.rows)
    return replace(view, rows=rows, notes=tuple(item(i) for i in view.notes),
                   subtitle=(*view.subtitle, f"Configuration files are named relative to {_t(base)}/"))


# --------------------------------------------------------------------------- the page


@cache
def _env() -> Environment:
    from jinja2 import Environment, PackageLoader, StrictUndefined

    return Environment(loader=PackageLoader("reconciler.render", "templates"), autoescape=True,
                       undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)


@cache
def _assets() -> tuple[Markup, Markup, str]:
    """The page's inline CSS and script, and the script's CSP hash (the only script allowed to run)."""
    from markupsafe import Markup

    env = _env()
    assert env.loader is not None
    css = env.loader.get_source(env, "report.css")[0]
    js = env.loader.get_source(env, "report.js")[0]
    digest = base64.b64encode(hashlib.sha256(js.encode("utf-8")).digest()).decode("ascii")
    return Markup(css), Markup(js), f"'sha256-{digest}'"  # our own static files, not user text


def _page(view: _View) -> str:
    css, js, script_hash = _assets()
    return _env().get_template("report.html.j2").render(v=view, css=css, js=js, script_hash=script_hash)


def plan_html(plan: Plan, *, labels: Labels | None = None, generated_at: str | None = None) -> str:
    """The plan as one self-contained HTML page."""
    view = _plan_view(plan, labels or {}, generated_at)
    return _page(_relative(view, _common_dir(c.source for c in plan.changes)))


def drift_html(report: DriftReport, *, labels: Labels | None = None, generated_at: str | None = None) -> str:
    """The drift report as one self-contained HTML page."""
    view = _drift_view(report, labels or {}, generated_at)
    return _page(_relative(view, _common_dir(f.source for f in report.findings)))
