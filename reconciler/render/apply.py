"""An apply run → the summary people read at the end of ``apply``."""

from __future__ import annotations

from ..apply import ApplyResult, ShopOutcome
from ..plan import Plan
from ..vocab import PERMISSION_HINT, Exit, WriteFate
from .plan import value


def _failed_shop(o: ShopOutcome, erp_names: dict[str, str]) -> list[str]:
    assert o.failed is not None
    c = o.failed
    lines = [f"Shop {o.shop}: FAILED at {c.scenario.value} {c.action.value}"
             f" ({value(c, 'before', erp_names)} → {value(c, 'after', erp_names)}): {o.error}"]
    if o.fate:
        lines.append(f"  the answer to that write was lost or could not be believed: {o.fate.value}")
    whole = "" if o.rollback_errors else " (the shop is as it was before this run)"
    if o.rolled_back:
        lines.append(f"  rolled back: {', '.join(f'{r.scenario.value} {r.action.value}' for r in o.rolled_back)}{whole}")
    elif not o.rollback_errors:
        lines.append("  nothing of this shop had been changed" if o.fate in (None, WriteFate.not_landed)
                     else "  the shop is as it was before this run")
    lines += [f"  ROLLBACK FAILED, the shop needs attention: {r}" for r in o.rollback_errors]
    if "permission-denied" in str(o.error):   # the help article's answer to 子账号 without the permission
        lines.append(f"  {PERMISSION_HINT}")
    return lines


def apply_summary(result: ApplyResult, plan: Plan) -> str:
    """What was applied, what failed and was put back, what was withheld or not started."""
    erp_names = dict(plan.names.erps)
    ok = result.ok
    lines = [f"Applied {result.applied} change(s) in {len(ok)} shop(s)."]
    for o in result.failed:
        lines += _failed_shop(o, erp_names)
    lines += [f"Shop {shop}: withheld (see the plan's errors)." for shop in result.withheld]
    if result.not_started:
        why = "Stopped (the platform error above concerns every shop)" if result.fatal else "Interrupted"
        lines.append(f"{why}: {len(result.not_started)} shop(s) not started: {', '.join(result.not_started[:10])}"
                     + (" …" if len(result.not_started) > 10 else "") + " (plan again to see what is left)")
    if result.exit_code == Exit.ok:
        lines.append("Apply complete.")
    elif result.exit_code == Exit.partial:
        lines.append(f"Apply partly done: {len(ok)} shop(s) applied, {len(result.failed)} failed,"
                     f" {len(result.withheld)} withheld.")
    else:
        lines.append("Nothing applied.")
    return "\n".join(lines) + "\n"


def nothing_to_apply(plan: Plan) -> str:
    return "Nothing to apply.\n" if not plan.errors else "Nothing applied: every pending shop has errors.\n"
