"""validate, plan, apply."""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Sequence
from contextlib import closing
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ..apply import make_plan
from ..errors import StalePlan, UnsafePlan
from ..files import read_regular, write_atomic
from ..gitutil import git_info
from ..history import default_actor
from ..plan import Plan, plan_from_data
from ..render import PLAN_FORMATS, apply_summary, nothing_to_apply, plan_as, plan_text, problem_line
from ..run import ApplyRun, RunOptions
from ..shard import Shard
from ..vocab import Exit

if TYPE_CHECKING:
    from ..state import InterruptedShop, Store
from .common import (
    err,
    graceful_interrupt,
    load,
    open_store_for,
    progress_printer,
    provider_for,
    settings_only,
    shard_option,
    shop_option,
    state,
    store_for,
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
@click.option("--format", "fmt", type=click.Choice(PLAN_FORMATS), default="text", show_default=True)
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
    store = store_for(config.settings, config.dir, create=False)
    interrupted = {}
    if store is not None:
        with closing(store):
            interrupted = {s: i.message() for s, i in store.interrupted_shops([s.id for s in config.shops]).items()}
    with closing(provider_for(ctx, config.settings, config.dir)) as provider:
        result = make_plan(config.desired(), provider, force=force, interrupted=interrupted)
    if out is not None:
        write_atomic(out, result.to_json())
    click.echo(plan_as(fmt, result, colour=state(ctx).colour_for(sys.stdout)), nl=False)
    if out is not None:
        err(f"Saved plan to {out} ({result.checksum}); apply it with: reconciler apply {out}")
    if result.errors:
        ctx.exit(Exit.error)
    ctx.exit(Exit.pending if detailed_exitcode and result.changes else Exit.ok)


def _read_plan_file(path: Path) -> Plan:
    """A saved plan: a regular file of bounded size, strict JSON, verified (``plan_from_data``)."""
    raw = read_regular(path, what="plan file", limit=PLAN_FILE_LIMIT)
    try:
        data = json.loads(raw.decode("utf-8"), parse_constant=_no_constant)
    except UnicodeDecodeError:
        raise StalePlan(f"{path}: not a saved plan (not UTF-8)") from None
    except json.JSONDecodeError as e:
        raise StalePlan(f"{path}:{e.lineno}:{e.colno}: not a saved plan (invalid JSON: {e.msg})") from None
    except (RecursionError, ValueError) as e:  # nested too deep; an integer of thousands of digits; NaN
        raise StalePlan(f"{path}: not a saved plan ({type(e).__name__}: {str(e)[:100]})") from None
    return plan_from_data(data, where=str(path))


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not a number a plan holds")


def _confirm(run: ApplyRun) -> None:
    """A fresh plan is applied only when a person says so (or --auto-approve)."""
    if not sys.stdin.isatty():
        run.refuse(UnsafePlan("refusing to apply: stdin is not a terminal; review the plan and pass --auto-approve,"
                              " or apply a saved plan (plan --out FILE, then apply FILE)"))
    if not click.confirm(f"Apply {len(run.plan.changes)} change(s)?", default=False):
        run.refuse(UnsafePlan("apply cancelled; nothing changed"))


def the_shops(saved: Plan | None) -> list[str]:
    return list(saved.shops) if saved is not None else []


def _interrupted(store: Store, shops: Sequence[str], *, say: bool) -> dict[str, InterruptedShop]:
    """Shops a killed apply may have left half-changed (a fresh plan names them itself)."""
    found = store.interrupted_shops(list(shops))
    for i in found.values() if say else ():
        err(f"Warning: shop {i.shop}: {i.message()}")
    return found


@click.command()
@click.argument("planfile", required=False, type=click.Path(dir_okay=False, path_type=Path))
@shop_option
@shard_option
@click.option("--auto-approve", is_flag=True, help="Apply a fresh plan without asking (CI).")
@click.option("--force", is_flag=True, help="Override the safety threshold and protect: true.")
@click.option("--actor", help="Who applies, for the history (default: CI user variables, else the OS user).")
@click.option("--lock-timeout", type=click.FloatRange(min=0, max=86_400), metavar="SECONDS",
              help="Wait this long for shops another run has locked (default: state.lock_timeout_s, 0).")
@click.pass_context
def apply(ctx: click.Context, planfile: Path | None, shops: tuple[str, ...], shard: Shard | None, auto_approve: bool,
          force: bool, actor: str | None, lock_timeout: float | None) -> None:
    """Apply a fresh plan (asks to confirm) or exactly a saved PLANFILE.

    Exit 0 applied (or nothing to do), 1 refused (locked, stale, unsafe) or failed with
    nothing changed, 3 partly applied.
    """
    if planfile is not None and (shops or shard):
        raise click.UsageError("--shop and --shard cannot be combined with a saved plan (it is applied exactly)")
    saved = _read_plan_file(planfile) if planfile is not None else None
    config = load(ctx, shops, shard) if saved is None else None
    settings, config_dir = (config.settings, config.dir) if config is not None else settings_only(ctx)
    commit, branch = git_info(config_dir)
    options = RunOptions(actor=actor or default_actor(), git_commit=commit, git_branch=branch,
                         lock_timeout_s=settings.state.lock_timeout_s if lock_timeout is None else lock_timeout,
                         lock_lease_s=settings.state.lock_lease_s)
    store = open_store_for(settings, config_dir)
    with closing(provider_for(ctx, settings, config_dir)) as provider:
        interrupted = _interrupted(store, [s.id for s in config.shops] if config is not None else the_shops(saved),
                                   say=config is None)
        if config is not None:
            the_plan = make_plan(config.desired(), provider, force=force,
                                 interrupted={s: i.message() for s, i in interrupted.items()})
            click.echo(plan_text(the_plan, colour=state(ctx).colour_for(sys.stdout)), nl=False)
        else:
            assert saved is not None
            the_plan = saved
        with ApplyRun(plan=the_plan, provider=provider, store=store, options=options, saved=saved is not None,
                      interrupted=interrupted, note=err) as run:
            run.check_safe(force=force)
            if not the_plan.changes:
                for p in the_plan.errors if saved is not None else ():  # a fresh plan was printed with its problems
                    err(problem_line(p))
                click.echo(nothing_to_apply(the_plan), nl=False)
                ctx.exit(run.nothing_to_apply())
            if saved is None and not auto_approve:
                _confirm(run)
            run.lock()
            run.check_stale()
            stop = threading.Event()
            with graceful_interrupt(stop):
                result = run.execute(progress=progress_printer("applying"), stop=stop)
    click.echo(apply_summary(result, the_plan), nl=False)
    ctx.exit(result.exit_code)


COMMANDS: list[Any] = [validate, plan, apply]
PLAN_FILE_LIMIT = 256 << 20   # a plan of 100,000 shops × 3 changes is ~150 MB of JSON
