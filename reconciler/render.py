"""Pure renderers: a Plan → text (Terraform-like), JSON (the contract's plan format) or
Markdown (for a pull request); a drift report → text, JSON, Markdown or JUnit XML; history
entries → text or JSON.

Renderers never do I/O and never see secrets; the same input renders to the same bytes.
Markdown escapes every value that comes from users or the platform (shop and ERP names,
messages): ``md`` in Markdown text, ``html`` inside the ``<details>`` HTML; and a Markdown
document is cut to a size budget (``MARKDOWN_BUDGET``, UTF-8 bytes, well under GitHub's
65,536-character comment limit) with a count of what was left out.
"""

from __future__ import annotations

import html as _html
import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import click

from .drift import DriftReport, Finding
from .history import FORMAT_VERSION as HISTORY_FORMAT_VERSION
from .history import Entry
from .model import SCENARIOS
from .plan import Action, Change, Plan, Problem

SYMBOL = {Action.bind: "+", Action.rotate: "~", Action.unbind: "-", Action.update: "~"}
COLOUR = {Action.bind: "green", Action.rotate: "yellow", Action.unbind: "red", Action.update: "cyan"}
SEV_COLOUR = {"error": "red", "warning": "yellow", "info": "blue"}


def _plain(text: str) -> str:
    return text


def value_label(change: Change, side: str, erp_names: Mapping[str, str], *, name: Callable[[str], str] = _plain,
                key: Callable[[str], str] = _plain, text: Callable[[str], str] = _plain, unbound: str = "unbound") -> str:
    """One side of a change for people: ``jushuitan (21345678)``, ``unbound``, ``buyer_self_service=true``.
    The callables escape or mark up each part (Markdown uses them)."""
    v = dict(change.before if side == "before" else change.after)
    if "appkey" in v:
        appkey = v["appkey"]
        if appkey is None:
            return unbound
        erp = erp_names.get(str(appkey))
        return f"{name(erp)} ({key(str(appkey))})" if erp else key(str(appkey))
    return text(", ".join(f"{k}={str(x).lower() if isinstance(x, bool) else x}" for k, x in sorted(v.items())))


def _style(text: str, colour: str | None, enabled: bool, bold: bool = False) -> str:
    return click.style(text, fg=colour, bold=bold) if enabled else text


def problem_line(p: Problem, colour: bool = False) -> str:
    where = " ".join(x for x in (p.shop, p.scenario.value if p.scenario else None) if x) or "plan"
    sev = _style(f"{p.severity:<7}", SEV_COLOUR[p.severity], colour)
    return f"  {sev} {where}: {p.message}"


def summary_line(plan: Plan) -> str:
    s = plan.summary
    errors = len(plan.errors)
    warnings = sum(1 for p in plan.problems if p.severity == "warning")
    return (f"Plan: {s['bind']} to bind, {s['rotate']} to rotate, {s['unbind']} to unbind, {s['update']} to update;"
            f" {errors} error(s), {warnings} warning(s).")


def plan_text(plan: Plan, *, erp_names: Mapping[str, str], shop_names: Mapping[str, str | None] | None = None,
              colour: bool = False) -> str:
    lines: list[str] = []
    shop_names = shop_names or {}
    by_shop = plan.by_shop()
    if not plan.changes:
        if plan.errors:
            lines.append("No changes can be applied; some shops have errors (see Problems).")
        else:
            lines.append("No changes. The platform matches the configuration.")
    for shop, changes in by_shop.items():
        title = f"shop {shop}" + (f" {shop_names[shop]}" if shop_names.get(shop) else "")
        lines.append(_style(f"  # {title}", None, colour, bold=True))
        for c in changes:
            sym = _style(SYMBOL[c.action], COLOUR[c.action], colour)
            lines.append(f"  {sym} {c.scenario.value:<19} {c.action.value:<7} "
                         f"{value_label(c, 'before', erp_names)} → {value_label(c, 'after', erp_names)}")
            if c.reason:
                lines.append(f"        why: {c.reason}")
        lines.append("")
    if plan.problems:
        if lines and lines[-1] != "":
            lines.append("")
        lines.append("Problems:")
        lines += [problem_line(p, colour) for p in plan.problems]
        lines.append("")
    lines.append(summary_line(plan))
    return "\n".join(lines) + "\n"


def plan_json(plan: Plan) -> str:
    return plan.to_json()


# --------------------------------------------------------------------------- Markdown helpers

MARKDOWN_BUDGET = 50_000
# Escaped wherever user text goes: emphasis, code, links/images ([ ]), HTML and entities (< > &),
# table cells (|), strikethrough (~), GitHub math ($) and issue references (#). Text is never
# placed at the start of a line, so list and heading markers (- + . #) need no escape there.
_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>&|~$#])")
_SAFE_CODE = re.compile(r"^[A-Za-z0-9_.:/+@-]+$")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def md(text: object) -> str:
    """User or platform text as literal Markdown (safe in a table cell, on one line)."""
    flat = " ".join(_CONTROL.sub("", str(text)).split())
    return _MD_SPECIAL.sub(r"\\\1", flat)


def html(text: object) -> str:
    """Text inside HTML (``<summary>``), where Markdown is not parsed."""
    return _html.escape(" ".join(_CONTROL.sub("", str(text)).split()), quote=True)


def code(text: object) -> str:
    """An identifier (shop id, scenario, appkey) as code when it is plain, else escaped text."""
    t = str(text)
    return f"`{t}`" if _SAFE_CODE.match(t) else md(t)


def _size(text: str) -> int:
    return len(text.encode("utf-8"))


class _Budget:
    """Collects Markdown blocks until the next one would not fit; counts what was left out."""

    def __init__(self, limit: int, reserve: int = 600) -> None:
        self.limit = limit - reserve   # room for the closing note
        self.parts: list[str] = []
        self.used = 0
        self.full = False

    def add(self, block: str) -> bool:
        if self.full or self.used + _size(block) > self.limit:
            self.full = True
            return False
        self.parts.append(block)
        self.used += _size(block)
        return True

    def text(self) -> str:
        return "".join(self.parts)


def _cut_note(parts: Iterable[str], limit: int) -> str:
    """The note ending a Markdown report that was cut; empty when nothing was (``parts``: what was left out, or "")."""
    what = ", ".join(p for p in parts if p)
    if not what:
        return ""
    return (f"\n> [!NOTE]\n> Cut to fit a comment ({limit:,} bytes): {what} not shown."
            " The full output: run the same command with `--format text` or `--format json`.\n")


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


# --------------------------------------------------------------------------- plan → Markdown


def _md_value(change: Change, side: str, erp_names: Mapping[str, str]) -> str:
    return value_label(change, side, erp_names, name=md, key=code, text=md, unbound="*unbound*")


def _shop_title(shop: str, name: str | None) -> str:
    return f"<code>{html(shop)}</code>" + (f" {html(name)}" if name else "")


def _counts(changes: Sequence[Change], problems: Sequence[Problem]) -> str:
    acts = [f"{sum(1 for c in changes if c.action is a)} to {a.value}" for a in Action
            if any(c.action is a for c in changes)]
    sevs = [_plural(sum(1 for p in problems if p.severity == s), s) for s in ("error", "warning")
            if any(p.severity == s for p in problems)]
    return ", ".join(acts + sevs) or "no changes"


def _problem_md(p: Problem, *, with_shop: bool) -> str:
    where = " ".join(x for x in ((code(p.shop) if with_shop and p.shop else None),
                                 (code(p.scenario.value) if p.scenario else None)) if x)
    return f"- **{p.severity}** {where + ': ' if where else ''}{md(p.message)}\n"


def _plan_shop_md(shop: str, name: str | None, changes: Sequence[Change], problems: Sequence[Problem],
                  erp_names: Mapping[str, str]) -> str:
    lines = [f"<details><summary>{_shop_title(shop, name)} — {html(_counts(changes, problems))}</summary>\n\n"]
    if changes:
        lines.append("| scenario | action | before | after | why |\n|---|---|---|---|---|\n")
        lines += [f"| {code(c.scenario.value)} | {c.action.value} | {_md_value(c, 'before', erp_names)} |"
                  f" {_md_value(c, 'after', erp_names)} | {md(c.reason)} |\n" for c in changes]
        lines.append("\n")
    lines += [_problem_md(p, with_shop=False) for p in problems]
    if problems:
        lines.append("\n")
    lines.append("</details>\n\n")
    return "".join(lines)


def plan_markdown(plan: Plan, *, erp_names: Mapping[str, str], shop_names: Mapping[str, str | None] | None = None,
                  limit: int = MARKDOWN_BUDGET) -> str:
    """A pull-request comment: the summary, every error, and a collapsible section per shop."""
    names = shop_names or {}
    s = plan.summary
    errors = plan.errors
    warnings = [p for p in plan.problems if p.severity == "warning"]
    changes = plan.by_shop()
    problems: dict[str, list[Problem]] = {}
    for p in plan.problems:
        if p.shop:
            problems.setdefault(p.shop, []).append(p)
    shops = sorted(set(changes) | set(problems))
    head = ["### reconciler plan\n\n"]
    if plan.changes:
        head.append(f"**{s['bind']}** to bind · **{s['rotate']}** to rotate · **{s['unbind']}** to unbind ·"
                    f" **{s['update']}** to update, in {_plural(len(changes), 'shop')} of {len(plan.shops)} planned;"
                    f" {_plural(len(errors), 'error')}, {_plural(len(warnings), 'warning')}.\n\n")
    elif errors:
        head.append(f"**No changes can be applied;** some shops have errors ({_plural(len(plan.shops), 'shop')}"
                    f" planned; {_plural(len(errors), 'error')}, {_plural(len(warnings), 'warning')}).\n\n")
    else:
        head.append(f"**No changes.** The platform matches the configuration ({_plural(len(plan.shops), 'shop')} planned;"
                    f" {_plural(len(errors), 'error')}, {_plural(len(warnings), 'warning')}).\n\n")
    head.append(f"Plan checksum `{plan.checksum_ or plan.checksum}`\n\n")
    budget = _Budget(limit)
    budget.add("".join(head))
    left_errors = 0
    if errors:
        budget.add("#### Errors\n\n")
        for p in errors:
            if not budget.add(_problem_md(p, with_shop=True)):
                left_errors += 1
        budget.add("\n")
    left_shops = left_changes = 0
    if shops:
        budget.add("#### Shops\n\n")
    for shop in shops:
        block = _plan_shop_md(shop, names.get(shop), changes.get(shop, []), problems.get(shop, []), erp_names)
        if not budget.add(block):
            left_shops += 1
            left_changes += len(changes.get(shop, []))
    return budget.text() + _cut_note((
        f"{_plural(left_errors, 'error')} of the error list" if left_errors else "",
        f"{_plural(left_shops, 'shop')} ({_plural(left_changes, 'change')})" if left_shops else ""), limit)


# --------------------------------------------------------------------------- drift → text, JSON, Markdown, JUnit

DRIFT_SYMBOL = {"drift": "~", "unmanaged": "?", "broken": "!", "unknown-shop": "?", "error": "x"}
DRIFT_COLOUR = {"drift": "yellow", "unmanaged": "cyan", "broken": "red", "unknown-shop": "cyan", "error": "red"}


def drift_summary_line(report: DriftReport) -> str:
    c = report.counts()
    if not report.findings:
        return f"No drift: the platform matches the configuration for {_plural(len(report.shops), 'shop')}."
    with_findings = sum(1 for fs in report.by_shop().values() if fs)
    return (f"Drift: {with_findings} of {_plural(len(report.shops), 'shop')} with findings;"
            f" {c['drift']} differ, {c['unmanaged']} unmanaged, {c['broken']} cannot work,"
            f" {c['unknown-shop']} unknown shop(s), {_plural(c['error'], 'error')}.")


def _finding_line(f: Finding, colour: bool) -> str:
    sym = _style(DRIFT_SYMBOL[f.category], DRIFT_COLOUR[f.category], colour)
    sc = f.scenario.value if f.scenario else "(shop)"
    line = f"  {sym} {sc:<19} {f.kind:<22} {f.message}"
    return line + (f"\n        config: {f.source}" if f.source and f.category == "drift" else "")


def drift_text(report: DriftReport, *, colour: bool = False) -> str:
    lines: list[str] = []
    for shop, findings in report.by_shop().items():
        if not findings:
            continue
        name = report.shop_names.get(shop)
        lines.append(_style(f"  # shop {shop}" + (f" {name}" if name else ""), None, colour, bold=True))
        lines += [_finding_line(f, colour) for f in findings]
        lines.append("")
    unknown = report.unknown_shops()
    if unknown:
        lines.append(f"Shops the platform knows but the configuration does not ({len(unknown)});"
                     " onboard with: reconciler import --shop ID")
        lines += [f"  {_style('?', 'cyan', colour)} {s}" for s in unknown]
        lines.append("")
    for f in report.general():
        lines.append(f"  {_style('error', 'red', colour)} {f.message}")
    if report.general():
        lines.append("")
    lines.append(drift_summary_line(report))
    return "\n".join(lines) + "\n"


def drift_json(report: DriftReport) -> str:
    return json.dumps(report.to_data(), ensure_ascii=False, indent=2, sort_keys=True) + "\n"


def _drift_value(v: Mapping[str, Any] | None, erp_names: Mapping[str, str]) -> str:
    if v is None:
        return ""
    if "appkey" in v:
        key = v["appkey"]
        if key is None:
            return "*unbound*"
        name = erp_names.get(str(key))
        return f"{md(name)} ({code(key)})" if name else code(key)
    return md(", ".join(f"{k}={str(x).lower() if isinstance(x, bool) else x}" for k, x in sorted(v.items())))


def drift_markdown(report: DriftReport, *, erp_names: Mapping[str, str], limit: int = MARKDOWN_BUDGET) -> str:
    """For an issue or a chat: the summary, then a table per shop with findings."""
    budget = _Budget(limit)
    budget.add(f"### reconciler drift{f' (shard {report.shard})' if report.shard else ''}\n\n"
               f"{md(drift_summary_line(report))}\n\n")
    left_shops = left_findings = 0
    for f in report.general():
        budget.add(f"- **error** {md(f.message)}\n")
    for shop, findings in report.by_shop().items():
        if not findings:
            continue
        name = report.shop_names.get(shop)
        rows = [f"#### {code(shop)}" + (f" {md(name)}" if name else "") + "\n\n",
                "| scenario | finding | config | platform | details |\n|---|---|---|---|---|\n"]
        rows += [f"| {code(f.scenario.value) if f.scenario else '*shop*'} | {md(f.kind)} |"
                 f" {_drift_value(f.expected, erp_names)} | {_drift_value(f.actual, erp_names)} | {md(f.message)} |\n"
                 for f in findings]
        if not budget.add("".join(rows) + "\n"):
            left_shops += 1
            left_findings += len(findings)
    unknown = report.unknown_shops()
    left_unknown = 0
    if unknown and budget.add(f"#### Not in the configuration ({len(unknown)})\n\n"
                              "Onboard with `reconciler import --shop ID`:\n\n"):
        for s in unknown:
            if not budget.add(f"- {code(s)}\n"):
                left_unknown += 1
    else:
        left_unknown = len(unknown)
    return budget.text() + _cut_note((
        f"{_plural(left_shops, 'shop')} ({_plural(left_findings, 'finding')})" if left_shops else "",
        _plural(left_unknown, "unknown shop") if left_unknown else ""), limit)


def _xml_text(text: str) -> str:
    return _CONTROL.sub("", text)


def drift_junit(report: DriftReport) -> str:
    """JUnit XML: one test case per shop × scenario (failures are drift, errors are failed reads),
    one per unknown shop, one per error of the audit itself."""
    suite = ET.Element("testsuite", {"name": "reconciler drift"})
    tests = failures = errors = 0

    def case(classname: str, name: str, found: Iterable[Finding]) -> None:
        nonlocal tests, failures, errors
        fs = list(found)
        tc = ET.SubElement(suite, "testcase", {"classname": _xml_text(classname), "name": _xml_text(name)})
        tests += 1
        if not fs:
            return
        is_error = any(f.category == "error" for f in fs)
        tag = "error" if is_error else "failure"
        errors += is_error
        failures += not is_error
        el = ET.SubElement(tc, tag, {"type": _xml_text(", ".join(sorted({f.kind for f in fs}))),
                                     "message": _xml_text(fs[0].message)})
        el.text = _xml_text("\n".join(f"{f.kind}: {f.message}" + (f" (config: {f.source})" if f.source else "")
                                      for f in fs))

    for shop, findings in report.by_shop().items():
        name = report.shop_names.get(shop)
        cls = f"shop.{shop}" + (f" {name}" if name else "")
        whole = [f for f in findings if f.scenario is None]
        for sc in SCENARIOS:
            case(cls, sc.value, [*whole, *(f for f in findings if f.scenario is sc)])
    for shop in report.unknown_shops():
        case(f"shop.{shop}", "declared in the configuration",
             [f for f in report.findings if f.category == "unknown-shop" and f.shop == shop])
    for f in report.general():
        case("reconciler", f.kind, [f])
    for k, v in (("tests", tests), ("failures", failures), ("errors", errors), ("skipped", 0)):
        suite.set(k, str(v))
    root = ET.Element("testsuites", {"name": "reconciler drift", "tests": str(tests), "failures": str(failures),
                                     "errors": str(errors)})
    root.append(suite)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


# --------------------------------------------------------------------------- history → text, JSON


def _history_value(v: Any) -> str:
    if isinstance(v, dict) and len(v) == 1:
        k, x = next(iter(v.items()))
        if k == "appkey":
            return "unbound" if x is None else str(x)
        return f"{k}={str(x).lower() if isinstance(x, bool) else x}"
    return "" if v is None else json.dumps(v, ensure_ascii=False, sort_keys=True)


def history_text(entries: Sequence[Entry], *, colour: bool = False) -> str:
    if not entries:
        return "No recorded changes.\n"
    outcome_colour = {"applied": "green", "failed": "red", "refused": "yellow", "rolled-back": "yellow",
                      "rollback-failed": "red"}
    lines = []
    for e in entries:
        git = f" {e.git_branch or ''}@{e.git_commit[:10]}" if e.git_commit else ""
        lines.append(f"{e.time}  run {e.run}  {e.actor}{git}  {e.shop} {e.scenario or '-':<19} {e.action:<7}"
                     f" {_history_value(e.before)} → {_history_value(e.after)}  "
                     + _style(e.outcome, outcome_colour.get(e.outcome), colour)
                     + (f": {e.error}" if e.error else ""))
    return "\n".join(lines) + "\n"


def history_json(entries: Sequence[Entry]) -> str:
    return json.dumps({"format_version": HISTORY_FORMAT_VERSION, "entries": [e.to_data() for e in entries]},
                      ensure_ascii=False, indent=2, sort_keys=True) + "\n"
