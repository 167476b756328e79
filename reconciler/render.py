"""Pure renderers: a Plan → text (Terraform-like) or JSON (the contract's plan format).

Renderers never do I/O and never see secrets; the same plan renders to the same bytes.
"""

from __future__ import annotations

from collections.abc import Mapping

import click

from .plan import Action, Change, Plan, Problem

SYMBOL = {Action.bind: "+", Action.rotate: "~", Action.unbind: "-", Action.update: "~"}
COLOUR = {Action.bind: "green", Action.rotate: "yellow", Action.unbind: "red", Action.update: "cyan"}
SEV_COLOUR = {"error": "red", "warning": "yellow", "info": "blue"}


def value_label(change: Change, side: str, erp_names: Mapping[str, str]) -> str:
    v = dict(change.before if side == "before" else change.after)
    if "appkey" in v:
        key = v["appkey"]
        if key is None:
            return "unbound"
        name = erp_names.get(str(key))
        return f"{name} ({key})" if name else str(key)
    return ", ".join(f"{k}={str(x).lower() if isinstance(x, bool) else x}" for k, x in sorted(v.items()))


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
