"""A Plan → text (Terraform-like), JSON (the contract's plan format) or Markdown (a pull
request comment). Names shown beside ids come from the plan itself (``Plan.names``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ..plan import Change, Plan, Problem, target_label
from ..vocab import Action, ProblemKind, Severity, show
from .common import MARKDOWN_BUDGET, Budget, code, cut_note, html, md, plural, style

SYMBOL = {Action.bind: "+", Action.rotate: "~", Action.unbind: "-", Action.update: "~"}
COLOUR = {Action.bind: "green", Action.rotate: "yellow", Action.unbind: "red", Action.update: "cyan"}
SEV_COLOUR = {Severity.error: "red", Severity.warning: "yellow", Severity.info: "blue", Severity.waived: "magenta"}


def problem_line(p: Problem, colour: bool = False) -> str:
    where = " ".join(x for x in (p.shop, p.scenario.value if p.scenario else None) if x) or "plan"
    sev = style(f"{p.severity:<7}", SEV_COLOUR[p.severity], colour)
    return f"  {sev} {where}: {p.message}"


def summary_line(plan: Plan) -> str:
    s = plan.summary
    errors = len(plan.errors)
    warnings = len(plan.warnings)
    waived = sum(1 for p in plan.problems if p.severity == Severity.waived)
    return (f"Plan: {s['bind']} to bind, {s['rotate']} to rotate, {s['unbind']} to unbind, {s['update']} to update;"
            f" {errors} error(s), {warnings} warning(s)" + (f", {waived} waived." if waived else "."))


def provenance(plan: Plan) -> str | None:
    """A saved plan's origin for people: when, by which version, for which platform; None for a plan only printed."""
    if plan.created_at is None and plan.target is None:
        return None
    return (f"Saved plan made {plan.created_at or '(time not recorded)'}"
            + (f" by reconciler {plan.tool_version}" if plan.tool_version else "")
            + f" for {target_label(plan.target)}; checksum {plan.checksum}")


def value(change: Change, side: str, erp_names: Mapping[str, str]) -> str:
    """One side of a change for people (``vocab.show``)."""
    return show(change.before if side == "before" else change.after, erp_names)


def plan_text(plan: Plan, *, colour: bool = False) -> str:
    lines: list[str] = []
    shop_names = plan.names.shops
    erp_names = plan.names.erps
    by_shop = plan.by_shop()
    made = provenance(plan)
    if made:
        lines += [made, ""]
    if not plan.changes:
        if plan.errors:
            lines.append("No changes can be applied; some shops have errors (see Problems).")
        elif _held(plan):
            lines.append("No changes can be applied; the changes of shops with waived problems stay withheld (see Problems).")
        else:
            lines.append("No changes. The platform matches the configuration.")
    for shop, changes in by_shop.items():
        title = f"shop {shop}" + (f" {shop_names[shop]}" if shop_names.get(shop) else "")
        lines.append(style(f"  # {title}", None, colour, bold=True))
        for c in changes:
            sym = style(SYMBOL[c.action], COLOUR[c.action], colour)
            lines.append(f"  {sym} {c.scenario.value:<19} {c.action.value:<7} "
                         f"{value(c, 'before', erp_names)} → {value(c, 'after', erp_names)}")
            if c.reason:
                lines.append(f"        why: {c.reason}")
        lines.append("")
    if plan.notes:
        if lines and lines[-1] != "":
            lines.append("")
        lines.append("Then, on the platform:")
        lines += [f"  - {n}" for n in plan.notes]
        lines.append("")
    if plan.problems:
        if lines and lines[-1] != "":
            lines.append("")
        lines.append("Problems:")
        lines += [problem_line(p, colour) for p in plan.problems]
        lines.append("")
    lines.append(summary_line(plan))
    return "\n".join(lines) + "\n"


def _held(plan: Plan) -> bool:
    """Changes withheld by problems that are waived (so not errors any more)."""
    return any(p.kind == ProblemKind.withheld for p in plan.problems)


def plan_json(plan: Plan) -> str:
    return plan.to_json()



# --------------------------------------------------------------------------- plan → Markdown


def _md_value(change: Change, side: str, erp_names: Mapping[str, str]) -> str:
    return show(change.before if side == "before" else change.after, erp_names, name=md, key=code, text=md,
                unbound="*unbound*")


def _shop_title(shop: str, name: str | None) -> str:
    return f"<code>{html(shop)}</code>" + (f" {html(name)}" if name else "")


def _counts(changes: Sequence[Change], problems: Sequence[Problem]) -> str:
    acts = [f"{sum(1 for c in changes if c.action is a)} to {a.value}" for a in Action
            if any(c.action is a for c in changes)]
    sevs = [plural(sum(1 for p in problems if p.severity == s), s) for s in (Severity.error, Severity.warning)
            if any(p.severity is s for p in problems)]
    waived = sum(1 for p in problems if p.severity == Severity.waived)
    sevs += [f"{waived} waived"] if waived else []
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


def plan_markdown(plan: Plan, *, limit: int = MARKDOWN_BUDGET) -> str:
    """A pull-request comment: the summary, every error, and a collapsible section per shop."""
    names = plan.names.shops
    erp_names = plan.names.erps
    s = plan.summary
    errors = plan.errors
    warnings = plan.warnings
    changes = plan.by_shop()
    problems: dict[str, list[Problem]] = {}
    for p in plan.problems:
        if p.shop:
            problems.setdefault(p.shop, []).append(p)
    shops = sorted(set(changes) | set(problems))
    head = ["### reconciler plan\n\n"]
    if plan.changes:
        head.append(f"**{s['bind']}** to bind · **{s['rotate']}** to rotate · **{s['unbind']}** to unbind ·"
                    f" **{s['update']}** to update, in {plural(len(changes), 'shop')} of {len(plan.shops)} planned;"
                    f" {plural(len(errors), 'error')}, {plural(len(warnings), 'warning')}.\n\n")
    elif errors or _held(plan):
        why = "errors" if errors else "waived problems"
        head.append(f"**No changes can be applied;** some shops have {why} ({plural(len(plan.shops), 'shop')}"
                    f" planned; {plural(len(errors), 'error')}, {plural(len(warnings), 'warning')}).\n\n")
    else:
        head.append(f"**No changes.** The platform matches the configuration ({plural(len(plan.shops), 'shop')} planned;"
                    f" {plural(len(errors), 'error')}, {plural(len(warnings), 'warning')}).\n\n")
    head.append(f"Plan checksum `{plan.checksum}`\n\n")
    if plan.created_at is not None or plan.target is not None:
        head.append(f"Saved plan made {md(plan.created_at or '(time not recorded)')}"
                    + (f" by reconciler {md(plan.tool_version)}" if plan.tool_version else "")
                    + f" for {md(target_label(plan.target))}\n\n")
    budget = Budget(limit)
    budget.add("".join(head))
    left_errors = 0
    if errors:
        budget.add("#### Errors\n\n")
        for p in errors:
            if not budget.add(_problem_md(p, with_shop=True)):
                left_errors += 1
        budget.add("\n")
    if plan.notes:
        budget.add("#### Then, on the platform\n\n" + "".join(f"- {md(n)}\n" for n in plan.notes) + "\n")
    left_shops = left_changes = 0
    if shops:
        budget.add("#### Shops\n\n")
    for shop in shops:
        block = _plan_shop_md(shop, names.get(shop), changes.get(shop, []), problems.get(shop, []), erp_names)
        if not budget.add(block):
            left_shops += 1
            left_changes += len(changes.get(shop, []))
    return budget.text() + cut_note((
        f"{plural(left_errors, 'error')} of the error list" if left_errors else "",
        f"{plural(left_shops, 'shop')} ({plural(left_changes, 'change')})" if left_shops else ""), limit)

