"""What every command shares: the context, loading the config, opening the provider,
stderr messages and the one place errors become exit codes."""

from __future__ import annotations

import dataclasses
import os
import signal
import sys
import threading
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

import click

from ..config import Config, load_config, load_settings
from ..connect import open_provider
from ..errors import ReconcilerError
from ..parsecache import enabled as cache_enabled
from ..providers import Provider
from ..ratelimit import Share
from ..settings import Settings, TopSettings, replace
from ..shard import Shard, parse_shard
from ..vocab import ProblemKind, Severity
from . import context
from .context import State

if TYPE_CHECKING:
    from ..state import Store




# Where a run's authorization problems are kept (cli.auth.run_sessions writes them; plan and
# drift read them here, so that a plan on the sandbox imports nothing of the auth commands).
AUTH_META = "reconciler.auth"


def auth_problems(ctx: click.Context) -> dict[str, tuple[ProblemKind, Severity, str]] | None:
    """The shops' authorization problems of this run, for the plan (None: sessions not from the store)."""
    found: dict[str, tuple[ProblemKind, Severity, str]] | None = ctx.find_root().meta.get(AUTH_META)
    return found


def auth_errors(ctx: click.Context) -> dict[str, str] | None:
    """Shop → why its token does not work (the audit reports them; expiring ones were warned)."""
    found = auth_problems(ctx)
    return None if found is None else {s: m for s, (_, sev, m) in found.items() if sev == Severity.error}


def state(ctx: click.Context) -> State:
    obj = ctx.find_root().obj
    assert isinstance(obj, State)
    return obj


def err(message: str) -> None:
    click.echo(message, err=True)


# The read-only commands take unchanged shop files from the parse cache (reconciler.parsecache);
# apply and import read the files themselves: what is written never comes from the cache.
CACHED_COMMANDS = frozenset({"plan", "drift", "validate"})


def use_cache(ctx: click.Context) -> bool:
    return ctx.command.name in CACHED_COMMANDS and cache_enabled(os.environ)


def load(ctx: click.Context, shops: tuple[str, ...] = (), shard: Shard | None = None) -> Config:
    """The validated config (warnings go to stderr), limited to a shard; ConfigError propagates."""
    cache = use_cache(ctx)
    config = load_config(state(ctx).config_dir, shops=set(shops) if shops else None, cache=cache,
                         background=cache and context.CONSOLE)
    for w in config.warnings:
        err(str(w))
    return in_shard(config, shard)


def in_shard(config: Config, shard: Shard | None) -> Config:
    """The config with only the shops of ``shard`` (all of them for None)."""
    if shard is None:
        return config
    mine = [s for s in config.shops if shard.holds(s.id)]
    err(f"shard {shard}: {len(mine)} of {len(config.shops)} shop(s)")
    return dataclasses.replace(config, shops=mine)


def settings_only(ctx: click.Context) -> tuple[Settings, Path]:
    st = state(ctx)
    settings, _ = load_settings(st.config_dir)
    return settings, Path(st.config_dir)


def provider_for(ctx: click.Context, settings: Settings, config_dir: Path, *,
                 shops: Sequence[str] | None = None, shard: Shard | None = None, qps: float | None = None) -> Provider:
    """The configured provider; ``--parallelism`` overrides ``provider.parallelism`` (top).
    A top provider with no sessions file or variable takes the tokens of ``shops`` (None:
    every stored shop) from the state store, renewing expired ones on the way; the problems of
    the others are the command's (``auth_problems``). Its requests a second, token
    renewals included, are ``--qps`` or, in shard K/N, 1/N of ``provider.qps`` (``run_qps``)."""
    p = settings.provider
    if isinstance(p, TopSettings):
        update: dict[str, float | int] = {}
        n = state(ctx).parallelism
        if n is not None:
            update["parallelism"] = n
        rate = run_qps(p.qps, shard, qps)
        if rate != p.qps:
            update["qps"] = rate
        if update:
            settings = replace(settings, **update)
    provider = open_provider(settings, config_dir, sessions=_store_sessions(ctx, settings, config_dir, shops))
    _OPEN.add(provider)
    for w in provider.warnings:
        err(f"Warning: {w}")
    return provider


def run_qps(app_qps: float, shard: Shard | None, explicit: float | None) -> float:
    """This process's requests a second: ``explicit`` (``--qps``), else in shard K/N an even
    share of the app's limit, so the N shards running at once stay under it together. Says
    on stderr what a shard uses, and warns when the explicit rate times N is over the limit."""
    share = Share(app_qps, shard.count if shard is not None else 1, explicit)
    source = "--qps" if explicit is not None else f"provider.qps / {share.of}"
    if shard is not None:
        err(f"shard {shard}: {_rate(share.qps)} of the app's {_rate(app_qps)} requests/s ({source})")
    if share.over:
        if share.of > 1:
            what = f"for each of {share.of} shards is {_rate(share.together)} requests/s together,"
            instead = f"leave out --qps to give each shard 1/{share.of} ({_rate(app_qps / share.of)})"
        else:
            what, instead = "is", "raise provider.qps if the app's limit is higher"
        err(f"Warning: --qps {_rate(share.qps)} {what} over the app's {_rate(app_qps)} requests/s (provider.qps):"
            f" the platform will refuse requests (code 7) and ban the app for seconds at a time; {instead}")
    return share.qps


def _rate(qps: float) -> str:
    return f"{round(qps, 2):g}"


# The providers this process opened: a second interrupt tells them to hurry (graceful_interrupt).
_OPEN: weakref.WeakSet[Provider] = weakref.WeakSet()


def _store_sessions(ctx: click.Context, settings: Settings, config_dir: Path,
                    shops: Sequence[str] | None) -> dict[str, str] | None:
    from ..connect import tokens_from_store

    if not tokens_from_store(settings):
        return None
    from .auth import run_sessions

    return run_sessions(ctx, settings, config_dir, shops)


def store_for(settings: Settings, config_dir: Path, *, create: bool = True) -> Store | None:
    """The state store the settings name (``RECONCILER_STATE_URL`` overrides ``state.url``);
    ``create=False``: None when none was ever written (read-only commands never make one)."""
    from ..state import open_store, resolve_url  # SQLAlchemy loads only for commands that use the store

    return open_store(resolve_url(settings, config_dir, os.environ), config_dir=config_dir, create=create)


def interrupted_messages(settings: Settings, config_dir: Path, shops: list[str]) -> dict[str, str]:
    """Shops an interrupted apply may have left half-changed (shop → what happened), for plan;
    an SQLite store with no open intent is seen without opening the store (no SQLAlchemy)."""
    from ..state import resolve_url, surely_nothing_interrupted

    if surely_nothing_interrupted(resolve_url(settings, config_dir, os.environ), config_dir=config_dir):
        return {}
    store = store_for(settings, config_dir, create=False)
    if store is None:
        return {}
    with closing(store):
        return {s: i.message() for s, i in store.interrupted_shops(shops).items()}


def open_store_for(settings: Settings, config_dir: Path) -> Store:
    store = store_for(settings, config_dir)
    assert store is not None
    return store


Progress = Callable[[int, int, str], None]
BAR_WIDTH = 30
LINES_FROM = 100   # off a terminal, runs over fewer shops print no progress at all


def progress_printer(label: str, *, stream: TextIO | None = None) -> Progress:
    """A progress callback for a run over many shops, on stderr.

    On a terminal: a bar redrawn in place, only when it visibly changes. Elsewhere (CI
    logs, pipes): quiet and line-oriented, one line per tenth of the way for runs of at
    least ``LINES_FROM`` shops, nothing for smaller ones.
    """
    out = stream or sys.stderr
    tty = bool(getattr(out, "isatty", lambda: False)())
    last = [-1]

    def bar(done: int, total: int, shop: str) -> None:
        pct = done * 100 // total
        if pct == last[0] and done != total:
            return
        last[0] = pct
        cells = done * BAR_WIDTH // total
        click.echo(f"\r{label} [{'#' * cells}{'.' * (BAR_WIDTH - cells)}] {pct:3d}% {done}/{total} shops"
                   f" (last: {shop})\033[K", file=out, nl=done == total)

    def lines(done: int, total: int, shop: str) -> None:
        if total < LINES_FROM:
            return
        tenth = done * 10 // total
        if tenth <= max(last[0], 0):   # first line at 10 %
            return
        last[0] = tenth
        click.echo(f"{label}: {done}/{total} shops ({done * 100 // total}%)", file=out)

    def show(done: int, total: int, shop: str) -> None:
        if total > 0:
            (bar if tty else lines)(done, total, shop)
    return show


shop_option = click.option("--shop", "shops", multiple=True, metavar="ID", help="Only this shop (repeatable).")


def _shard(ctx: click.Context, param: click.Parameter, value: str | None) -> Shard | None:
    # An error (exit 1), not a usage error: exit 2 means "changes pending" or "drift" to CI.
    try:
        return parse_shard(value) if value is not None else None
    except ValueError as e:
        raise ReconcilerError(f"--shard: {e}") from None


shard_option = click.option(
    "--shard", callback=_shard, metavar="K/N",
    help="Only shard K of N: shops split by a stable hash of their id, so N CI jobs cover each shop once.")

qps_option = click.option(
    "--qps", type=click.FloatRange(min=0, min_open=True, max=100_000), envvar="RECONCILER_QPS", metavar="N",
    help="Requests a second this run sends over HTTP (env RECONCILER_QPS; default: provider.qps,"
         " and with --shard K/N a 1/N share of it, so the N shards together stay under the app's limit).")


@contextmanager
def graceful_interrupt(stop: threading.Event) -> Iterator[None]:
    """Ctrl-C and SIGTERM (what a cancelled CI job sends) while applying. Never an abort in
    the middle of a shop: only SIGKILL can leave one half-changed (and the journal then names
    it to the next run).

    The first one sets ``stop``: the shops under way finish, all or nothing each, no new shop
    starts, and the run ends with its summary and usual exit code. The second one makes the
    open providers hurry (no wait between attempts over 2 s, no longer ban waited out; every
    request still ends by ``provider.deadline_s``): the shops under way finish or are put back
    soon, their outcome recorded in the history, and the command then exits 130
    (``Exit.interrupted``). Later ones only say so again. Outside the main thread (no signals
    there) this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    seen: list[str] = []
    helpers: list[threading.Thread] = []

    def respond(name: str, count: int) -> None:
        """What a signal asks for, on a thread of its own: the handler interrupts the main
        thread anywhere — holding a lock the providers take, or writing to stderr itself."""
        if count == 1:
            err(f"\n{name} received: finishing the shops under way (all or nothing each), starting no new one;"
                " send it again to stop waiting for retries and bans.")
            return
        if count == 2:
            for provider in list(_OPEN):
                provider.hurry()
        err(f"\n{name} received again: finishing or putting back the shops under way without waiting out backoffs"
            " or bans (each request ends by provider.deadline_s); no shop is left half-changed. Exit 130 follows.")

    def handler(signum: int, frame: object) -> None:
        seen.append(signal.Signals(signum).name)
        stop.set()  # nothing in the main thread holds its lock: it only asks is_set()
        helper = threading.Thread(target=respond, args=(seen[-1], len(seen)), name="interrupt", daemon=True)
        helpers.append(helper)
        helper.start()

    for sig in previous:
        signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, h in previous.items():
            signal.signal(sig, h)
        for helper in helpers:
            helper.join(timeout=5)
    if len(seen) >= 2:
        err("Interrupted: every shop under way was finished or put back (reconciler history shows which).")
        raise KeyboardInterrupt  # the CLI's one place for it: "Interrupted.", exit 130
