"""Waivers (``waivers.yaml``): problems the agency has acknowledged, each with a reason and
an end date. Pure: a plan or a drift report and the waivers → the same with every matching
problem or finding marked.

A waiver matches a problem of its shop, of its kind, and of its scenario when it names one.
Through its ``until`` (inclusive, China time) the problem keeps its place and its message,
with severity ``waived`` (the waiver's date, file:line and reason appended): it is shown
everywhere and fails nothing — plan does not exit 1 for it, drift does not exit 2, JUnit
counts it as skipped. The shop's changes it blocked stay withheld: a waiver acknowledges a
problem, it does not make the change safe. After its date the problem is what it was (an
error, for an error) and says which waiver ended. A waiver that matched nothing in the
shops a run looked at is a warning: the problem is gone (or the waiver is mistyped), remove it.

In drift, a waived cause also waives what follows from it in the same shop and scenario:
a config binding that cannot be applied (its ERP has not integrated the scenario) is also
a binding that is missing or differs, and both wait for the same ERP.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import date
from typing import TYPE_CHECKING, Any

from .model import Scenario, Waiver
from .plan import Plan, Problem
from .vocab import SEVERITY_ORDER, FindingKind, ProblemKind, Severity

if TYPE_CHECKING:
    from .drift import DriftReport, Finding

# Kinds that a plan reports (a waiver of another kind, say "differs", is for drift only).
PLAN_KINDS = frozenset(k.value for k in ProblemKind)
_FOLLOWS = (FindingKind.missing, FindingKind.differs)   # what a cannot-apply difference also is


def _one_line(text: str) -> str:
    return " ".join(text.split())


def said_waived(w: Waiver) -> str:
    return f"waived until {w.until.isoformat()} by {w.source}: {_one_line(w.reason)}"


def said_ended(w: Waiver) -> str:
    return f"the waiver {w.source} for it ended on {w.until.isoformat()}: fix the cause or extend the waiver"


def _matches(w: Waiver, shop: str | None, scenario: Scenario | None, kinds: Sequence[str]) -> bool:
    return w.shop == shop and (w.scenario is None or w.scenario == scenario) and w.kind in kinds


class _Book:
    """The waivers of the shops a run looked at, and which of them matched something."""

    def __init__(self, waivers: Sequence[Waiver], shops: Sequence[str], today: date) -> None:
        wanted = set(shops)
        self.by_shop: dict[str, list[Waiver]] = {}
        for w in waivers:
            if w.shop in wanted:
                self.by_shop.setdefault(w.shop, []).append(w)
        self.today = today
        self.used: set[int] = set()

    def find(self, shop: str | None, scenario: Scenario | None, kinds: Sequence[str]) -> Waiver | None:
        for w in self.by_shop.get(shop or "", ()):
            if _matches(w, shop, scenario, kinds):
                self.used.add(id(w))
                return w
        return None

    def current(self, w: Waiver) -> bool:
        return self.today <= w.until

    def unused(self, kinds: frozenset[str] | None = None) -> list[Waiver]:
        return [w for ws in self.by_shop.values() for w in ws
                if id(w) not in self.used and (kinds is None or w.kind in kinds)]


def unused_message(w: Waiver, *, today: date) -> str:
    ended = " (it has ended, too)" if w.until < today else ""
    on = f" {w.scenario.value}" if w.scenario else ""
    return (f"{w.name()} matches no {w.kind} problem of shop {w.shop}{on}{ended}: the problem is gone or the"
            " waiver is mistyped; remove it")


def waive_plan(plan: Plan, waivers: Sequence[Waiver], today: date) -> Plan:
    """The plan with every problem a waiver matches marked (see the module doc-string), and a
    warning for each waiver of a planned shop that matched no problem."""
    if not waivers:
        return plan
    book = _Book(waivers, plan.shops, today)
    if not book.by_shop:
        return plan
    problems: list[Problem] = []
    for p in plan.problems:
        w = book.find(p.shop, p.scenario, (p.kind,)) if p.severity in (Severity.error, Severity.warning) else None
        if w is None:
            problems.append(p)
        elif book.current(w):
            problems.append(replace(p, severity=Severity.waived, message=f"{p.message} ({said_waived(w)})"))
        else:
            problems.append(replace(p, message=f"{p.message} ({said_ended(w)})"))
    problems += [Problem(w.shop, w.scenario, Severity.warning, ProblemKind.unused_waiver, unused_message(w, today=today))
                 for w in book.unused(PLAN_KINDS)]
    problems.sort(key=lambda p: (p.shop or "", SEVERITY_ORDER[p.severity], p.scenario.value if p.scenario else "", p.kind,
                                 p.message))
    return replace(plan, problems=tuple(problems))


def waiver_data(w: Waiver) -> dict[str, Any]:
    return {"file": w.source.file, "line": w.source.line, "until": w.until.isoformat(), "kind": w.kind,
            "reason": _one_line(w.reason)}


def waive_drift(report: DriftReport, waivers: Sequence[Waiver], today: date) -> DriftReport:
    """The report with every finding a waiver matches marked, and a warning for each waiver of
    an audited shop that matched nothing."""
    if not waivers:
        return report
    book = _Book(waivers, [*report.shops, *report.unknown_shops()], today)
    if not book.by_shop:
        return report
    out: list[Finding] = []
    followed: dict[tuple[str | None, Scenario | None], Waiver] = {}
    for f in report.findings:
        kinds = (f.kind, f.cause[0]) if f.cause is not None else (f.kind,)
        w = book.find(f.shop, f.scenario, kinds)
        out.append(_marked(f, w, book))
        if w is not None and f.kind == FindingKind.cannot_apply:
            followed[(f.shop, f.scenario)] = w
    if followed:  # what follows from a waived cause in the same shop and scenario
        out = [_marked(f, followed[(f.shop, f.scenario)], book, follows=True)
               if f.waiver is None and f.kind in _FOLLOWS and (f.shop, f.scenario) in followed and "ended" not in f.message
               else f for f in out]
    warnings = tuple(unused_message(w, today=today) for w in book.unused())
    return replace(report, findings=tuple(out), warnings=(*report.warnings, *warnings))


def _marked(f: Finding, w: Waiver | None, book: _Book, *, follows: bool = False) -> Finding:
    if w is None:
        return f
    if not book.current(w):
        return f if follows else replace(f, message=f"{f.message} ({said_ended(w)})")
    why = f"{said_waived(w)}; it cannot be applied until then" if follows else said_waived(w)
    return replace(f, message=f"{f.message} ({why})", waiver=waiver_data(w))


def waived_counts(problems: Sequence[Problem]) -> Mapping[str, int]:
    """How many problems a plan shows as waived (for summaries)."""
    return {"waived": sum(1 for p in problems if p.severity == Severity.waived)}
