"""drift, import, history: the read-only audits and onboarding.

``drift`` and ``history`` never write to the platform or create a history; ``import`` writes
one YAML file, atomically, and never over an existing one without ``--force``. ``drift`` can
also write its HTML page and tell a chat room (``--notify``); a notification that fails is a
warning and never changes the audit's exit code.
"""

from __future__ import annotations

import sys
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from .. import clock
from ..config import SCHEMAS_DIR, SHOPS_DIR
from ..drift import DriftReport, audit
from ..errors import ReconcilerError
from ..files import write_atomic
from ..history import format_time, parse_since
from ..notify import NOTIFY_FORMATS, notify
from ..notify import where as webhook
from ..onboard import Target, import_shops, write_import
from ..render import DRIFT_FORMATS, drift_as, drift_html, drift_junit, history_json, history_text, labels_of
from ..select import Selection
from ..shard import Shard
from ..state import FINISHED
from ..vocab import CATEGORIES, Category, Exit
from ..waivers import waive_drift
from .common import (
    auth_errors,
    err,
    load,
    progress_printer,
    provider_for,
    qps_option,
    settings_only,
    shard_option,
    shop_option,
    state,
    store_for,
)
from .selection import choose, label_option, select_option

IGNORABLE = [c.value for c in CATEGORIES if c != Category.error]


@click.command()
@shop_option
@select_option
@shard_option
@qps_option
@click.option("--format", "fmt", type=click.Choice(DRIFT_FORMATS), default="text", show_default=True)
@click.option("--junit-xml", "junit_xml", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the report as JUnit XML to this file (for CI test dashboards).")
@click.option("--html", "html_out", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the report as one self-contained HTML page to this file.")
@click.option("--ignore", "ignore", multiple=True, type=click.Choice(IGNORABLE),
              help="Leave this category out of the report and the exit code (repeatable).")
@click.option("--notify", "notify_url", envvar="RECONCILER_NOTIFY_URL", metavar="URL",
              help="POST a short summary to this webhook (env RECONCILER_NOTIFY_URL); a failure only warns.")
@click.option("--notify-format", type=click.Choice(NOTIFY_FORMATS), default="json", show_default=True,
              help="The webhook's message shape: our JSON, or a DingTalk, WeCom, Feishu or Slack robot.")
@click.option("--notify-on", type=click.Choice(["findings", "always"]), default="findings", show_default=True,
              help="Notify only when the audit found something (or could not finish), or after every audit.")
@click.option("--report-url", metavar="URL", help="A link to the full report, for the notification.")
@click.pass_context
def drift(ctx: click.Context, shops: tuple[str, ...], select: Selection | None, shard: Shard | None, qps: float | None, fmt: str,
          junit_xml: Path | None, html_out: Path | None, ignore: tuple[str, ...], notify_url: str | None,
          notify_format: str, notify_on: str, report_url: str | None) -> None:
    """Audit the platform against the configuration, read-only.

    Reports bindings that differ from the config (and since when, where the history
    knows), bindings the config wants unbound, unmanaged bindings, shops the platform knows
    that the config does not (unless --shop or --select), and bindings that cannot work,
    grouped by cause, then shop by shop. Exit 0 no drift, 2 drift, 1 error (a shop or the
    shop list could not be read); a finding a current waiver acknowledges is shown as waived
    and counts for neither. A --shop or --select that matches no shop exits 1.
    """
    chosen = choose(ctx, shops, select, shard)
    whole, config = chosen.whole, chosen.config
    wanted = config.desired(configured=None if chosen.narrowed else [s.id for s in whole.shops])
    with closing(provider_for(ctx, config.settings, config.dir, shops=[s.id for s in config.shops], shard=shard,
                              qps=qps)) as provider:
        store = store_for(config.settings, config.dir, create=False)  # after the provider: one that fails leaks no store
        try:
            report = audit(wanted, provider, history=store, shard=shard, progress=progress_printer("drift"),
                           auth=auth_errors(ctx))
        finally:
            if store is not None:
                store.close()
    report = waive_drift(report, config.waivers, config.today or clock.today()).without(ignore)
    made = format_time(datetime.now(UTC))
    labels = labels_of(config.shops)
    if junit_xml is not None:
        write_atomic(junit_xml, drift_junit(report))
    if html_out is not None:
        write_atomic(html_out, drift_html(report, labels=labels, generated_at=made))
    click.echo(drift_as(fmt, report, colour=state(ctx).colour_for(sys.stdout), labels=labels, generated_at=made), nl=False)
    if notify_url and (notify_on == "always" or report.active):
        _notify(report, notify_url, fmt=notify_format, report_url=report_url)
    ctx.exit(report.exit_code)


def _notify(report: DriftReport, url: str, *, fmt: str, report_url: str | None) -> None:
    """Tell the webhook; a failure is a warning on stderr, never an exit code."""
    why = notify(report, url, fmt=fmt, report_url=report_url)
    if why:
        err(f"Warning: could not notify {why}; the audit's result stands")
    else:
        err(f"Notified {webhook(url)} ({fmt}).")


DEFAULT_IMPORT = f"{SHOPS_DIR}/imported.yaml"


@click.command("import")
@shop_option
@click.option("--all", "all_shops", is_flag=True, help="Every shop the platform knows that the config does not declare.")
@click.option("--out", "out", type=click.Path(dir_okay=False, path_type=Path),
              help=f"The YAML file to write (default: {DEFAULT_IMPORT} in the config dir).")
@click.option("--force", is_flag=True, help="Overwrite --out if it exists (its shops are replaced by the import).")
@label_option
@click.pass_context
def import_cmd(ctx: click.Context, shops: tuple[str, ...], all_shops: bool, out: Path | None, force: bool,
               labels: dict[str, str]) -> None:
    """Write the platform's actual bindings of shops as config YAML (onboarding).

    Shops the configuration already declares are skipped (and named), so no shop id is
    ever declared twice. --label KEY=VALUE is written on every imported shop; the file
    starts with a yaml-language-server line naming the shops schema (reconciler schema).
    Exit 0 written (or nothing to import with --all), 1 error.
    """
    if bool(shops) == all_shops:
        raise ReconcilerError("import: give either --shop ID (repeatable) or --all")
    config = load(ctx)
    target = Target.at(out if out is not None else config.dir / DEFAULT_IMPORT, config.dir / SHOPS_DIR, force=force)
    with closing(provider_for(ctx, config.settings, config.dir)) as provider:
        result = import_shops(provider, target, wanted=None if all_shops else shops, erps=config.erps,
                              declared={s.id: str(s.source) for s in config.shops}, progress=progress_printer("import"),
                              labels=labels)
    for s, where in result.skipped.items() if shops else ():
        err(f"shop {s}: skipped, already declared at {where}")
    if all_shops and result.skipped:
        err(f"{len(result.skipped)} shop(s) skipped: already declared in the configuration")
    for s, e in result.failed.items():
        err(f"shop {s}: cannot read it, not imported: {e}")
    if not result.imported:
        if result.failed or not all_shops:
            raise ReconcilerError("nothing imported")
        click.echo("Nothing to import: the configuration declares every shop the platform knows.")
        ctx.exit(Exit.ok)
    write_import(target, result.imported, force=force, schema=config.dir / SCHEMAS_DIR / "shops.schema.json")
    if result.dropped:
        err(f"{target.path} no longer declares {len(result.dropped)} shop(s) it declared before: {', '.join(result.dropped)}")
    if result.unknown_appkeys:
        err(f"appkeys not in erps.yaml, written as literal appkey: {', '.join(result.unknown_appkeys)}")
    click.echo(f"Imported {len(result.imported)} shop(s) into {target.path}."
               + (" Check it with: reconciler plan (expect no changes)." if target.in_config else
                  f" Move it into {SHOPS_DIR}/ to manage them, then: reconciler plan (expect no changes)."))
    ctx.exit(Exit.error if result.failed else Exit.ok)


@click.command()
@shop_option
@click.option("--since", help="Only changes at or after: a date (2024-05-01, UTC), an ISO time, or an age (36h, 7d).")
@click.option("--limit", type=click.IntRange(min=1, max=1_000_000_000), help="Only the most recent N changes.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.pass_context
def history(ctx: click.Context, shops: tuple[str, ...], since: str | None, limit: int | None, fmt: str) -> None:
    """The audit trail of applied changes, oldest first. Exit 0, 1 error.

    Every change apply attempted is recorded with its run's time, actor, git commit and
    branch and plan checksum, and its outcome: applied, already-applied, failed, refused,
    rolled-back or rollback-failed. Runs that never finished (a killed apply: interrupted;
    one still going: running) are listed after the changes.
    """
    try:
        cutoff = parse_since(since) if since is not None else None
    except ValueError as e:
        raise ReconcilerError(f"--since: {e}") from None
    settings, config_dir = settings_only(ctx)
    store = store_for(settings, config_dir, create=False)
    if store is None:
        entries, runs = [], []
    else:
        with closing(store):
            entries = store.entries(shops=list(shops) or None, since=cutoff, limit=limit)
            wanted = {e.run for e in entries}
            runs = [r for r in store.runs() if r.id in wanted or r.status != FINISHED]
    if fmt == "json":
        click.echo(history_json(entries, runs), nl=False)
    else:
        click.echo(history_text(entries, runs, colour=state(ctx).colour_for(sys.stdout)), nl=False)


COMMANDS: list[Any] = [drift, import_cmd, history]
