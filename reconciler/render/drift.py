"""A drift report → text, JSON, Markdown or JUnit XML."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping
from typing import Any

from ..drift import Cause, DriftReport, Finding
from ..model import SCENARIOS
from ..vocab import Category, show
from .common import CONTROL, MARKDOWN_BUDGET, Budget, code, cut_note, md, plural, style

DRIFT_SYMBOL = {Category.drift: "~", Category.unmanaged: "?", Category.broken: "!", Category.unknown_shop: "?",
                Category.error: "x"}
DRIFT_COLOUR = {Category.drift: "yellow", Category.unmanaged: "cyan", Category.broken: "red", Category.unknown_shop: "cyan",
                Category.error: "red"}


CAUSES_SHOWN = 20        # causes listed before the shops (then: "and N more")
CAUSE_SHOPS_SHOWN = 5    # shop ids named per cause in text and Markdown (JSON names all)


def drift_summary_line(report: DriftReport) -> str:
    c = report.counts()
    if not report.active:
        waived = f" ({report.waived} waived)" if report.waived else ""
        return f"No drift: the platform matches the configuration for {plural(len(report.shops), 'shop')}{waived}."
    with_findings = sum(1 for fs in report.by_shop().values() if any(not f.waived for f in fs))
    return (f"Drift: {with_findings} of {plural(len(report.shops), 'shop')} with findings;"
            f" {c['drift']} differ, {c['unmanaged']} unmanaged, {c['broken']} cannot work,"
            f" {c['unknown-shop']} unknown shop(s), {plural(c['error'], 'error')}"
            + (f"; {report.waived} waived." if report.waived else "."))


def _finding_line(f: Finding, colour: bool) -> str:
    sym = style("-", None, colour) if f.waived else style(DRIFT_SYMBOL[f.category], DRIFT_COLOUR[f.category], colour)
    sc = f.scenario.value if f.scenario else "(shop)"
    kind = f"{f.kind} (waived)" if f.waived else str(f.kind)
    line = f"  {sym} {sc:<19} {kind:<22} {f.message}"
    return line + (f"\n        config: {f.source}" if f.source and f.category == Category.drift else "")


def _shops(ids: tuple[str, ...], limit: int = CAUSE_SHOPS_SHOWN) -> str:
    more = f", … {len(ids) - limit} more" if len(ids) > limit else ""
    return ", ".join(ids[:limit]) + more


def _shared(causes: list[Cause]) -> bool:
    """Whether grouping says anything the shop-by-shop list does not (a cause of two shops or more)."""
    return any(len(c.shops) > 1 for c in causes)


def _causes_text(causes: list[Cause], colour: bool) -> list[str]:
    if not _shared(causes):
        return []
    lines = ["By cause:"]
    for c in causes[:CAUSES_SHOWN]:
        sym = style(DRIFT_SYMBOL[c.category], DRIFT_COLOUR[c.category], colour)
        lines.append(f"  {sym} {c.text}: {plural(len(c.shops), 'shop')}" + (f" ({_shops(c.shops)})" if c.shops else ""))
    if len(causes) > CAUSES_SHOWN:
        lines.append(f"  … and {len(causes) - CAUSES_SHOWN} more cause(s) (--format json lists every one)")
    return [*lines, ""]


def drift_text(report: DriftReport, *, colour: bool = False) -> str:
    lines: list[str] = _causes_text(report.causes(), colour)
    for shop, findings in report.by_shop().items():
        if not findings:
            continue
        name = report.shop_names.get(shop)
        lines.append(style(f"  # shop {shop}" + (f" {name}" if name else ""), None, colour, bold=True))
        lines += [_finding_line(f, colour) for f in findings]
        lines.append("")
    unknown = report.unknown_shops()
    if unknown:
        lines.append(f"Shops the platform knows but the configuration does not ({len(unknown)});"
                     " onboard with: reconciler import --shop ID")
        lines += [f"  {style('?', 'cyan', colour)} {s}" for s in unknown]
        lines.append("")
    for f in report.general():
        lines.append(f"  {style('error', 'red', colour)} {f.message}")
    if report.general():
        lines.append("")
    lines += [f"  {style('warning', 'yellow', colour)} {w}" for w in report.warnings]
    if report.warnings:
        lines.append("")
    lines.append(drift_summary_line(report))
    return "\n".join(lines) + "\n"


def drift_json(report: DriftReport) -> str:
    return json.dumps(report.to_data(), ensure_ascii=False, indent=2, sort_keys=True) + "\n"


def _drift_value(v: Mapping[str, Any] | None, erp_names: Mapping[str, str]) -> str:
    return show(v, erp_names, name=md, key=code, text=md, unbound="*unbound*")


def drift_markdown(report: DriftReport, *, limit: int = MARKDOWN_BUDGET) -> str:
    """For an issue or a chat: the summary, then a table per shop with findings."""
    erp_names = report.erp_names
    budget = Budget(limit)
    budget.add(f"### reconciler drift{f' (shard {report.shard})' if report.shard else ''}\n\n"
               f"{md(drift_summary_line(report))}\n\n")
    left_shops = left_findings = 0
    for f in report.general():
        budget.add(f"- **error** {md(f.message)}\n")
    for w in report.warnings:
        budget.add(f"- **warning** {md(w)}\n")
    causes = report.causes()
    if _shared(causes):
        rows = ["#### By cause\n\n| cause | shops |\n|---|---|\n"]
        rows += [f"| {md(c.text)} | {len(c.shops)}: {md(_shops(c.shops))} |\n" for c in causes[:CAUSES_SHOWN]]
        if len(causes) > CAUSES_SHOWN:
            rows.append(f"| … and {len(causes) - CAUSES_SHOWN} more cause(s) | |\n")
        budget.add("".join(rows) + "\n")
    for shop, findings in report.by_shop().items():
        if not findings:
            continue
        name = report.shop_names.get(shop)
        rows = [f"#### {code(shop)}" + (f" {md(name)}" if name else "") + "\n\n",
                "| scenario | finding | config | platform | details |\n|---|---|---|---|---|\n"]
        rows += [f"| {code(f.scenario.value) if f.scenario else '*shop*'} | {md(f.kind)}{' *(waived)*' if f.waived else ''} |"
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
    return budget.text() + cut_note((
        f"{plural(left_shops, 'shop')} ({plural(left_findings, 'finding')})" if left_shops else "",
        plural(left_unknown, "unknown shop") if left_unknown else ""), limit)


def _xml_text(text: str) -> str:
    return CONTROL.sub("", text)


def drift_junit(report: DriftReport) -> str:
    """JUnit XML: one test case per shop × scenario (failures are drift, errors are failed reads),
    one per unknown shop, one per error of the audit itself."""
    suite = ET.Element("testsuite", {"name": "reconciler drift"})
    tests = failures = errors = skipped = 0

    def case(classname: str, name: str, found: Iterable[Finding]) -> None:
        nonlocal tests, failures, errors, skipped
        every = list(found)
        fs = [f for f in every if not f.waived]
        tc = ET.SubElement(suite, "testcase", {"classname": _xml_text(classname), "name": _xml_text(name)})
        tests += 1
        if not fs:
            if every:  # only waived findings: skipped, saying until when and why
                skipped += 1
                el = ET.SubElement(tc, "skipped", {"message": _xml_text(every[0].message)})
                el.text = _xml_text("\n".join(f"{f.kind}: {f.message}" for f in every))
            return
        is_error = any(f.category == Category.error for f in fs)
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
             [f for f in report.findings if f.category == Category.unknown_shop and f.shop == shop])
    for f in report.general():
        case("reconciler", f.kind, [f])
    for k, v in (("tests", tests), ("failures", failures), ("errors", errors), ("skipped", skipped)):
        suite.set(k, str(v))
    root = ET.Element("testsuites", {"name": "reconciler drift", "tests": str(tests), "failures": str(failures),
                                     "errors": str(errors), "skipped": str(skipped)})
    root.append(suite)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"

