"""validate, plan, apply, show."""

from __future__ import annotations

import json
import os
import re
import sys
import threading
from collections.abc import Sequence
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from .. import __version__, clock
from ..apply import ApplyResult, make_plan
from ..clock import format_time
from ..config import SCHEMAS_DIR, Config, load_config
from ..errors import ConfigError, Issue, ReconcilerError, StalePlan, UnsafePlan
from ..files import read_regular, write_atomic
from ..model import Desired, binding_count
from ..plan import Plan
from ..render import PLAN_FORMATS, apply_summary, labels_of, nothing_to_apply, plan_as, plan_text, problem_line
from ..select import Selection
from ..settings import Settings
from ..shard import Shard
from ..target import target_of
from ..vocab import Exit
from ..waivers import waive_plan

if TYPE_CHECKING:
    from ..run import ApplyRun, RunOptions
    from ..state import InterruptedShop, Store
from . import context
from .common import (
    auth_problems,
    err,
    graceful_interrupt,
    interrupted_messages,
    load,
    open_store_for,
    progress_printer,
    provider_for,
    qps_option,
    shard_option,
    shop_option,
    state,
    use_cache,
)
from .selection import choose, no_saved_plan_with, select_option

VALIDATE_FORMATS = ("text", "json", "github")


def _valid_line(config: Config) -> str:
    n = sum(map(binding_count, config.shops))
    more = "".join(f", {k} {w}(s)" for k, w in ((len(config.profiles), "profile"), (len(config.waivers), "waiver")) if k)
    return (f"Configuration valid: {len(config.shops)} shop(s), {n} managed binding(s), {len(config.erps)} ERP(s){more}"
            + (f", {len(config.warnings)} warning(s)." if config.warnings else "."))


def _issue_data(i: Issue) -> dict[str, Any]:
    return {"file": i.file, "line": i.line or None, "column": i.column or None, "path": i.path, "message": i.message}


def _gh(text: str, *, prop: bool = False) -> str:
    """GitHub workflow-command escaping (data; properties also escape ``:`` and ``,``)."""
    text = text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    return text.replace(":", "%3A").replace(",", "%2C") if prop else text


def _annotation(i: Issue) -> str:
    where = [f"file={_gh(i.file, prop=True)}"]
    if i.line:
        where += [f"line={i.line}", f"col={i.column}"]
    key = f"{i.path}: " if i.path else ""
    return f"::{'error' if i.severity == 'error' else 'warning'} {','.join(where)}::{_gh(key + i.message)}"


@click.command()
@click.option("--format", "fmt", type=click.Choice(VALIDATE_FORMATS), default="text", show_default=True,
              help="text for people; json for programs; github: annotations on the pull request's files.")
@click.pass_context
def validate(ctx: click.Context, fmt: str) -> None:
    """Check the configuration offline. Exit 0 valid, 1 invalid.

    --format json prints {"format_version": 1, "valid", "errors", "warnings"}; --format
    github prints ::error/::warning lines that GitHub Actions shows on the changed files.
    """
    if fmt == "text":
        click.echo(_valid_line(load(ctx)))
        return
    cache = use_cache(ctx)
    try:
        config: Config | None = load_config(state(ctx).config_dir, cache=cache, background=cache and context.CONSOLE)
        issues = list(config.warnings) if config is not None else []
    except ConfigError as e:
        config, issues = None, list(e.issues)
    errors = [i for i in issues if i.severity == "error"]
    warnings = [i for i in issues if i.severity != "error"]
    if fmt == "json":
        data: dict[str, Any] = {"format_version": 1, "valid": config is not None,
                                "errors": [_issue_data(i) for i in errors], "warnings": [_issue_data(i) for i in warnings]}
        if config is not None:
            data["summary"] = {"shops": len(config.shops), "bindings": sum(map(binding_count, config.shops)),
                               "erps": len(config.erps), "profiles": len(config.profiles), "waivers": len(config.waivers)}
        click.echo(json.dumps(data, ensure_ascii=False, indent=2, sort_keys=True))
    else:
        for i in [*errors, *warnings]:
            click.echo(_annotation(i))
        click.echo(_valid_line(config) if config is not None else f"{len(errors)} error(s) in the configuration")
    ctx.exit(Exit.ok if config is not None else Exit.error)


@click.command()
@click.option("--out", "out", type=click.Path(file_okay=False, path_type=Path),
              help="The folder to write them to (default: schemas/ in the config dir).")
@click.pass_context
def schema(ctx: click.Context, out: Path | None) -> None:
    """Write JSON Schemas (draft 2020-12) of the configuration files, for editors.

    One per file: shops, erps, profiles, waivers, reconciler (NAME.schema.json). When the
    configuration can be read, the schemas also know its ERP and profile names. Point your
    editor's YAML extension at them (README: "Editors"), or start a file with
    # yaml-language-server: $schema=PATH. Exit 0, 1 when a file cannot be written.
    """
    from ..schema import FILES as SCHEMA_FILES
    from ..schema import all_schemas
    from ..schema import to_json as schema_json

    root = Path(state(ctx).config_dir)
    target = out if out is not None else root / SCHEMAS_DIR
    try:
        config: Config | None = load_config(root)
    except ReconcilerError:
        config = None
    erps = sorted(config.erps) if config is not None else []
    profiles = sorted(config.profiles) if config is not None else []
    for kind, text in ((k, schema_json(v)) for k, v in all_schemas(erps=erps, profiles=profiles).items()):
        write_atomic(target / f"{kind}.schema.json", text)
    what = f" (with the {len(erps)} ERP and {len(profiles)} profile name(s) of {root})" if config is not None else \
        " (the configuration could not be read: without its ERP and profile names)"
    click.echo(f"Wrote {len(SCHEMA_FILES)} schemas to {target}{what}: {', '.join(f'{k}.schema.json' for k in SCHEMA_FILES)}")


@click.command()
@shop_option
@select_option
@shard_option
@qps_option
@click.option("--format", "fmt", type=click.Choice(PLAN_FORMATS), default="text", show_default=True)
@click.option("--out", "out", type=click.Path(dir_okay=False, path_type=Path), help="Write the saved plan (JSON) here.")
@click.option("--detailed-exitcode", is_flag=True, help="Exit 2 when changes are pending.")
@click.option("--force", is_flag=True, help="Allow changes over the safety threshold and on protected shops.")
@click.pass_context
def plan(ctx: click.Context, shops: tuple[str, ...], select: Selection | None, shard: Shard | None, qps: float | None,
         fmt: str, out: Path | None, detailed_exitcode: bool, force: bool) -> None:
    """Read the actual state and print the plan.

    Exit 0 (no changes), 1 (error, or a problem of severity error; a waived one is shown
    but does not count), 2 with --detailed-exitcode when changes are pending. A --shop or
    --select that matches no shop exits 1.
    """
    config = choose(ctx, shops, select, shard).config
    interrupted = interrupted_messages(config.settings, config.dir, [s.id for s in config.shops])
    with closing(provider_for(ctx, config.settings, config.dir, shops=[s.id for s in config.shops], shard=shard,
                              qps=qps)) as provider:
        result = make_plan(config.desired(), provider, force=force, interrupted=interrupted, auth=auth_problems(ctx))
        result = waive_plan(result, config.waivers, config.today or clock.today())
        if out is not None:  # a saved plan says when, by which version and for which platform it was made
            result = result.stamped(created_at=format_time(datetime.now(UTC)), tool_version=__version__,
                                    target=target_of(config.settings, provider))
    if out is not None:
        from ..saved import plan_key
        from ..saved import to_json as saved_json

        write_atomic(out, saved_json(result, plan_key(os.environ)))
    click.echo(plan_as(fmt, result, colour=state(ctx).colour_for(sys.stdout), labels=labels_of(config.shops),
                       generated_at=result.created_at or format_time(datetime.now(UTC))), nl=False)
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
    from ..saved import check_signature, plan_from_data, plan_key

    plan = plan_from_data(data, where=str(path))
    check_signature(plan, data.get("signature"), plan_key(os.environ), where=str(path))
    return plan


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not a number a plan holds")


def _confirm(run: ApplyRun) -> None:
    """A fresh plan is applied only when a person says so (or --auto-approve)."""
    if not sys.stdin.isatty():
        run.refuse(UnsafePlan("refusing to apply: stdin is not a terminal; review the plan and pass --auto-approve,"
                              " or apply a saved plan (plan --out FILE, then apply FILE)"))
    if not click.confirm(f"Apply {len(run.plan.changes)} change(s)?", default=False):
        run.refuse(UnsafePlan("apply cancelled; nothing changed"))


def _interrupted(store: Store, shops: Sequence[str], *, say: bool) -> dict[str, InterruptedShop]:
    """Shops a killed apply may have left half-changed (a fresh plan names them itself)."""
    found = store.interrupted_shops(list(shops))
    for i in found.values() if say else ():
        err(f"Warning: shop {i.shop}: {i.message()}")
    return found


_AGE = re.compile(r"^\s*([0-9]{1,6})\s*([smhdw])\s*$")
_AGE_UNIT = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def _max_age(ctx: click.Context, param: click.Parameter, value: str | None) -> timedelta | None:
    # An error (exit 1), not a usage error: exit 2 means "changes pending" to CI.
    if value is None:
        return None
    m = _AGE.match(value)
    if not m or int(m.group(1)) == 0:
        raise ReconcilerError(f"--max-age: expected an age such as 30m, 24h or 7d, got {value!r}")
    return timedelta(**{_AGE_UNIT[m.group(2)]: int(m.group(1))})


def _run_options(settings: Settings, config_dir: Path, actor: str | None, lock_timeout: float | None) -> RunOptions:
    from ..gitutil import git_info  # (these three: only apply)
    from ..history import default_actor
    from ..run import RunOptions

    commit, branch = git_info(config_dir)
    return RunOptions(actor=actor or default_actor(), git_commit=commit, git_branch=branch,
                      lock_timeout_s=settings.state.lock_timeout_s if lock_timeout is None else lock_timeout,
                      lock_lease_s=settings.state.lock_lease_s)


def _apply_run(ctx: click.Context, run: ApplyRun, desired: Desired, *, force: bool, auto_approve: bool) -> ApplyResult:
    """The steps of one apply after its plan is known: safety (and a saved plan checked against
    the configuration), confirmation, locks, stale check, writes."""
    the_plan = run.plan
    run.check_safe(force=force)
    run.verify(desired, force=force)
    if not the_plan.changes:
        for p in the_plan.errors if run.saved else ():  # a fresh plan was printed with its problems
            err(problem_line(p))
        click.echo(nothing_to_apply(the_plan), nl=False)
        ctx.exit(run.nothing_to_apply())
    if not run.saved and not auto_approve:
        _confirm(run)
    run.lock()
    run.check_stale()
    stop = threading.Event()
    with graceful_interrupt(stop):
        return run.execute(progress=progress_printer("applying"), stop=stop)


@click.command()
@click.argument("planfile", required=False, type=click.Path(dir_okay=False, path_type=Path))
@shop_option
@select_option
@shard_option
@qps_option
@click.option("--auto-approve", is_flag=True, help="Apply a fresh plan without asking (CI).")
@click.option("--force", is_flag=True, help="Override the safety threshold and protect: true.")
@click.option("--actor", help="Who applies, for the history (default: CI user variables, else the OS user).")
@click.option("--lock-timeout", type=click.FloatRange(min=0, max=86_400), metavar="SECONDS",
              help="Wait this long for shops another run has locked (default: state.lock_timeout_s, 0).")
@click.option("--max-age", callback=_max_age, metavar="AGE",
              help="Refuse a saved plan made longer ago than this (30m, 24h, 7d).")
@click.pass_context
def apply(ctx: click.Context, planfile: Path | None, shops: tuple[str, ...], select: Selection | None, shard: Shard | None,
          qps: float | None, auto_approve: bool, force: bool, actor: str | None, lock_timeout: float | None,
          max_age: timedelta | None) -> None:
    """Apply a fresh plan (asks to confirm) or exactly a saved PLANFILE.

    A saved plan is applied only to the platform it was made for (its target). Exit 0
    applied (or nothing to do), 1 refused (another target, too old, locked, stale, unsafe)
    or failed with nothing changed, 3 partly applied.
    """
    from ..run import ApplyRun  # (the run: its lock owner names this host, socket)

    if planfile is not None and (shops or shard):
        raise click.UsageError("--shop and --shard cannot be combined with a saved plan (it is applied exactly)")
    no_saved_plan_with(planfile, select)
    if planfile is None and max_age is not None:
        raise click.UsageError("--max-age applies to a saved plan: reconciler apply --max-age 24h PLANFILE")
    saved = _read_plan_file(planfile) if planfile is not None else None
    # a saved plan too: it is applied only as far as the configuration asks
    config = choose(ctx, shops, select, shard).config
    settings, config_dir = config.settings, config.dir
    options = _run_options(settings, config_dir, actor, lock_timeout)
    store = open_store_for(settings, config_dir)
    shop_ids = [s.id for s in config.shops] if saved is None else list(saved.shops)
    with closing(provider_for(ctx, settings, config_dir, shops=shop_ids, shard=shard, qps=qps)) as provider:
        interrupted = _interrupted(store, [s.id for s in config.shops] if saved is None else list(saved.shops),
                                   say=saved is not None)
        if saved is None:
            the_plan = make_plan(config.desired(), provider, force=force,
                                 interrupted={s: i.message() for s, i in interrupted.items()}, auth=auth_problems(ctx))
            the_plan = waive_plan(the_plan, config.waivers, config.today or clock.today())
            click.echo(plan_text(the_plan, colour=state(ctx).colour_for(sys.stdout)), nl=False)
        else:
            assert saved is not None
            the_plan = saved
        with ApplyRun(plan=the_plan, provider=provider, store=store, options=options, saved=saved is not None,
                      interrupted=interrupted, note=err) as run:
            if saved is not None:  # before anything else: a plan for another platform is not looked at further
                run.check_target(target_of(settings, provider), max_age=max_age, now=datetime.now(UTC))
            result = _apply_run(ctx, run, config.desired(), force=force, auto_approve=auto_approve)
    click.echo(apply_summary(result, the_plan), nl=False)
    ctx.exit(result.exit_code)


@click.command()
@click.argument("planfile", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--format", "fmt", type=click.Choice(PLAN_FORMATS), default="text", show_default=True)
@click.pass_context
def show(ctx: click.Context, planfile: Path, fmt: str) -> None:
    """Render a saved plan for review, after verifying its checksum.

    Shows when, by which version and for which platform the plan was made. Needs no
    configuration and no platform. Exit 0, 1 when the file is not a saved plan or was altered.
    """
    saved = _read_plan_file(planfile)
    if saved.target is None:
        err(f"Warning: {planfile} was saved before plans carried their target (by an earlier reconciler);"
            " apply refuses it: make a new plan")
    click.echo(plan_as(fmt, saved, colour=state(ctx).colour_for(sys.stdout)), nl=False)


COMMANDS: list[Any] = [validate, plan, apply, show, schema]
PLAN_FILE_LIMIT = 256 << 20   # a plan of 100,000 shops × 3 changes is ~150 MB of JSON
