"""validate, plan, apply."""

from __future__ import annotations

import json
import sys
import threading
from pathlib import Path
from typing import Any

import click

from ..apply import ApplyResult, apply_plan, check_safe, check_stale, make_plan
from ..errors import ReconcilerError, StalePlan, UnsafePlan
from ..gitutil import git_info
from ..history import default_actor
from ..plan import Change, Plan, plan_from_data
from ..render import plan_json, plan_text, problem_line, value_label
from ..shard import Shard
from .common import (
    err,
    graceful_interrupt,
    history_for,
    load,
    progress_printer,
    provider_for,
    settings_only,
    shard_option,
    shop_option,
    state,
    write_atomic,
)


@click.command()
@click.pass_context
def validate(ctx: click.Context) -> None:
    """Check the configuration offline. Exit 0 valid, 1 invalid."""
    config = load(ctx)
    n = sum(len(s.bindings) for s in config.shops)
    click.echo(f"Configuration valid: {len(config.shops)} shop(s), {n} managed binding(s), {len(config.erps)} ERP(s)"
               + (f", {len(config.warnings)} warning(s)." if config.warnings else "."))


@click.command()
@shop_option
@shard_option
@click.option("--format", "fmt", type=click.Choice(["text", "json", "markdown"]), default="text", show_default=True)
@click.option("--out", "out", type=click.Path(dir_okay=False, path_type=Path), help="Write the saved plan (JSON) here.")
@click.option("--detailed-exitcode", is_flag=True, help="Exit 2 when changes are pending.")
@click.option("--force", is_flag=True, help="Allow changes over the safety threshold and on protected shops.")
@click.pass_context
def plan(ctx: click.Context, shops: tuple[str, ...], shard: Shard | None, fmt: str, out: Path | None, detailed_exitcode: bool,
         force: bool) -> None:
    """Read the actual state and print the plan.

    Exit 0 (no changes), 1 (error, or a problem of severity error), 2 with
    --detailed-exitcode when changes are pending.
    """
    config = load(ctx, shops, shard)
    provider = provider_for(ctx, config.settings, config.dir)
    try:
        result = make_plan(config, provider, force=force)
    finally:
        provider.close()
    if out is not None:
        write_atomic(out, result.to_json())
    click.echo(render_plan(ctx, result, fmt, config.erp_names_by_appkey(), {s.id: s.name for s in config.shops}), nl=False)
    if out is not None:
        err(f"Saved plan to {out} ({result.checksum}); apply it with: reconciler apply {out}")
    if result.errors:
        ctx.exit(1)
    ctx.exit(2 if detailed_exitcode and result.changes else 0)


def render_plan(ctx: click.Context, p: Plan, fmt: str, erp_names: dict[str, str], shop_names: dict[str, str | None]) -> str:
    if fmt == "json":
        return plan_json(p)
    if fmt == "markdown":
        from ..render import plan_markdown
        return plan_markdown(p, erp_names=erp_names, shop_names=shop_names)
    return plan_text(p, erp_names=erp_names, shop_names=shop_names, colour=state(ctx).colour_for(sys.stdout))


def _read_plan_file(path: Path) -> Plan:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise StalePlan(f"{path}: cannot read the plan file: {getattr(e, 'strerror', None) or e}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise StalePlan(f"{path}:{e.lineno}:{e.colno}: not a saved plan (invalid JSON: {e.msg})") from None
    return plan_from_data(data, where=str(path))


@click.command()
@click.argument("planfile", required=False, type=click.Path(dir_okay=False, path_type=Path))
@shop_option
@shard_option
@click.option("--auto-approve", is_flag=True, help="Apply a fresh plan without asking (CI).")
@click.option("--force", is_flag=True, help="Override the safety threshold and protect: true.")
@click.option("--actor", help="Who applies, for the history (default: CI user variables, else the OS user).")
@click.pass_context
def apply(ctx: click.Context, planfile: Path | None, shops: tuple[str, ...], shard: Shard | None, auto_approve: bool,
          force: bool, actor: str | None) -> None:
    """Apply a fresh plan (asks to confirm) or exactly a saved PLANFILE.

    Exit 0 applied (or nothing to do), 1 refused or failed with nothing changed,
    3 partly applied.
    """
    if planfile is not None and (shops or shard):
        raise click.UsageError("--shop and --shard cannot be combined with a saved plan (it is applied exactly)")
    if planfile is not None:
        saved = _read_plan_file(planfile)
        settings, config_dir = settings_only(ctx)
        shop_names: dict[str, str | None] = {}
        erp_names: dict[str, str] = {}
    else:
        config = load(ctx, shops, shard)
        settings, config_dir = config.settings, config.dir
        shop_names = {s.id: s.name for s in config.shops}
        erp_names = config.erp_names_by_appkey()
    provider = provider_for(ctx, settings, config_dir)
    history = history_for(settings, config_dir)
    commit, branch = git_info(config_dir)
    run: int | None = None
    run_lock = threading.Lock()
    code: int | None = None  # stays None when the run crashes: the history shows it unfinished
    try:
        if planfile is None:
            the_plan = make_plan(config, provider, force=force)
            click.echo(plan_text(the_plan, erp_names=erp_names, shop_names=shop_names,
                                 colour=state(ctx).colour_for(sys.stdout)), nl=False)
        else:
            the_plan = saved

        def record(*, change: Change, outcome: str, error: str | None) -> None:
            nonlocal run
            with run_lock:  # shops are applied in parallel over HTTP
                if run is None:  # a run is recorded when it has something to record
                    run = history.start_run(actor=actor or default_actor(), git_commit=commit, git_branch=branch,
                                            checksum=the_plan.checksum_ or the_plan.checksum)
            history.record(run, shop=change.shop, scenario=change.scenario.value, action=change.action.value,
                           before=dict(change.before), after=dict(change.after), outcome=outcome, error=error)

        def refuse(e: ReconcilerError) -> None:
            nonlocal code
            code = 1
            for c in the_plan.changes:
                record(change=c, outcome="refused", error=str(e).splitlines()[0])
            raise e

        try:
            check_safe(the_plan, force=force)
            if planfile is not None:
                check_stale(the_plan, provider)
        except (UnsafePlan, StalePlan) as e:
            refuse(e)
        if not the_plan.changes:
            if planfile is not None:  # a fresh plan was printed above, with its problems
                for p in the_plan.errors:
                    err(problem_line(p))
            click.echo("Nothing to apply." if not the_plan.errors else "Nothing applied: every pending shop has errors.")
            code = 1 if the_plan.errors else 0
            ctx.exit(code)
        if planfile is None and not auto_approve:
            if not sys.stdin.isatty():
                refuse(UnsafePlan("refusing to apply: stdin is not a terminal; review the plan and pass --auto-approve,"
                                  " or apply a saved plan (plan --out FILE, then apply FILE)"))
            if not click.confirm(f"Apply {len(the_plan.changes)} change(s)?", default=False):
                refuse(UnsafePlan("apply cancelled; nothing changed"))
        stop = threading.Event()
        with graceful_interrupt(stop):
            result = apply_plan(the_plan, provider, record=record, progress=progress_printer("applying"),
                                parallelism=getattr(provider, "parallelism", 1), stop=stop)
        code = result.exit_code
    finally:
        if run is not None and code is not None:
            history.finish_run(run, exit_code=code)
        provider.close()
        history.close()
    click.echo(apply_summary(result, the_plan, erp_names), nl=False)
    ctx.exit(result.exit_code)


def apply_summary(result: ApplyResult, the_plan: Plan, erp_names: dict[str, str]) -> str:
    lines: list[str] = []
    ok = [o for o in result.outcomes if o.ok]
    lines.append(f"Applied {result.applied} change(s) in {len(ok)} shop(s).")
    for o in result.failed:
        assert o.failed is not None
        c = o.failed
        lines.append(f"Shop {o.shop}: FAILED at {c.scenario.value} {c.action.value}"
                     f" ({value_label(c, 'before', erp_names)} → {value_label(c, 'after', erp_names)}): {o.error}")
        if o.uncertain:
            lines.append(f"  the answer to that write was lost: {o.uncertain}")
        whole = "" if o.rollback_errors else " (the shop is as it was before this run)"
        if o.rolled_back:
            lines.append(f"  rolled back: {', '.join(f'{r.scenario.value} {r.action.value}' for r in o.rolled_back)}{whole}")
        elif not o.rollback_errors:
            lines.append("  nothing of this shop had been changed" if o.uncertain in (None, "it had not taken effect")
                         else "  the shop is as it was before this run")
        for r in o.rollback_errors:
            lines.append(f"  ROLLBACK FAILED, the shop needs attention: {r}")
    for shop in result.withheld:
        lines.append(f"Shop {shop}: withheld (see the plan's errors).")
    if result.not_started:
        why = "Stopped (the platform error above concerns every shop)" if any(o.fatal for o in result.failed) \
            else "Interrupted"
        lines.append(f"{why}: {len(result.not_started)} shop(s) not started: {', '.join(result.not_started[:10])}"
                     + (" …" if len(result.not_started) > 10 else "") + " (plan again to see what is left)")
    if result.exit_code == 0:
        lines.append("Apply complete.")
    elif result.exit_code == 3:
        lines.append(f"Apply partly done: {len(ok)} shop(s) applied, {len(result.failed)} failed,"
                     f" {len(result.withheld)} withheld.")
    else:
        lines.append("Nothing applied.")
    return "\n".join(lines) + "\n"


COMMANDS: list[Any] = [validate, plan, apply]
