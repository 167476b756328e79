"""auth keygen|import|add|status|refresh: the shops' authorizations in the state store.

And the store's side of every other command over the top provider: ``run_sessions`` (called
by ``provider_for``) opens the store, renews expired but refreshable tokens once, and keeps
the problems of the rest for the plan (``auth_problems``) or the audit (``auth_errors``).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from contextlib import ExitStack, closing
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import click

from .. import auth
from ..auth import AuthState, Keyring, Outcome
from ..connect import open_token_provider, tokens_from_store
from ..errors import ProviderError, ReconcilerError
from ..model import SHOP_ID_RE
from ..settings import Settings, TopSettings
from ..vocab import Exit, ProblemKind, Severity
from .common import AUTH_META, err, load, progress_printer, settings_only, shop_option, state, store_for

if TYPE_CHECKING:
    from ..providers import Provider
    from ..providers.tokens import TokenClient
    from ..providers.top import TopProvider



def _window(ctx: click.Context, param: click.Parameter, value: str) -> timedelta:
    # An error (exit 1), not a usage error: exit 2 means "action needed" here.
    try:
        return auth.parse_window(value)
    except ValueError as e:
        raise ReconcilerError(f"--within: {e}") from None


within_option = click.option("--within", callback=_window, default="7d", show_default=True, metavar="AGE",
                             help="The window: a token that ends within it is expiring (7d, 36h, 0).")


def _parallelism(ctx: click.Context, settings: Settings) -> int:
    n = state(ctx).parallelism
    if n is not None:
        return n
    return settings.provider.parallelism if isinstance(settings.provider, TopSettings) else 8


# --------------------------------------------------------------------------- a run's sessions


def run_sessions(ctx: click.Context, settings: Settings, config_dir: Path, shops: Sequence[str] | None) -> dict[str, str]:
    """The sessions of ``shops`` (None: every stored shop) from the state store, each expired
    but refreshable token renewed once; the problems of the others are kept for the command
    (``auth_problems``), and said on stderr by commands that do not plan."""
    keyring = Keyring.from_env()
    store = store_for(settings, config_dir, create=False)
    with ExitStack() as stack:
        if store is None:  # nothing was ever stored: every shop is missing
            authz = auth.Authorization(sessions={}, problems={s: _missing(s) for s in (shops or ())})
        else:
            stack.enter_context(closing(store))

            def client() -> TokenClient:
                provider = stack.enter_context(closing(open_token_provider(settings, config_dir)))
                return _client(provider)

            authz = auth.authorize(store, keyring, shops, client=client, lease_s=settings.state.lock_lease_s,
                                   parallelism=_parallelism(ctx, settings), also_stored=ctx.info_name == "drift")
    if authz.renewed:
        shown = ", ".join(authz.renewed[:10]) + (f", … ({len(authz.renewed) - 10} more)" if len(authz.renewed) > 10 else "")
        err(f"Renewed {len(authz.renewed)} expired token(s) on the way: {shown}")
    ctx.find_root().meta[AUTH_META] = authz.problems
    if ctx.info_name not in ("plan", "apply", "drift"):
        for shop, (_, severity, message) in sorted(authz.problems.items()):
            err(f"{'Warning' if severity == Severity.warning else 'Error'}: shop {shop}: {message}")
    if ctx.info_name == "drift":
        for shop, message in sorted(authz.warnings().items()):
            err(f"Warning: shop {shop}: {message}")
    return authz.sessions


def _client(provider: Provider) -> TokenClient:
    from ..providers.tokens import TokenClient

    return TokenClient(cast("TopProvider", provider))


def _missing(shop: str) -> tuple[ProblemKind, Severity, str]:
    return (ProblemKind.auth_expired, Severity.error,
            "no authorization of this shop in the state store: the merchant must authorize the app"
            f" (服务市场 → 我的服务 → 授权), then: reconciler auth add --shop {shop} --code CODE")


# --------------------------------------------------------------------------- the commands


@click.group("auth")
def auth_group() -> None:
    """The shops' authorizations (access and refresh tokens), sealed in the state store.

    Tokens are encrypted with the key in RECONCILER_STATE_KEY (make one with auth keygen;
    keep it in a secret). The top provider takes each shop's token from the store when
    reconciler.yaml names no sessions_file and no sessions_env.
    """


@auth_group.command()
def keygen() -> None:
    """Print a new key for RECONCILER_STATE_KEY (32 random bytes, URL-safe base64).

    Keep it where secrets are kept (a CI secret, a password manager): it is never stored
    by reconciler, and without it the stored tokens cannot be used. Exit 0.
    """
    click.echo(auth.keygen())
    if sys.stdout.isatty():
        err(f"Set it as {auth.ENV_KEY} (a CI secret); never commit it.")


def _stored_summary(tokens: Sequence[auth.NewToken]) -> str:
    ends = sum(1 for t in tokens if t.expires_at is not None)
    refreshable = sum(1 for t in tokens if t.secret.refresh_token)
    return f"{len(tokens)} shop(s): {ends} with an end, {refreshable} refreshable"


@auth_group.command("import")
@click.argument("file", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.pass_context
def import_cmd(ctx: click.Context, file: Path | None) -> None:
    """Store shops' tokens from FILE (YAML or JSON), sealed.

    FILE maps shop id to a token string (one that never expires: today's sessions file is
    such a file) or to a mapping with access_token and optionally refresh_token,
    expires_at/expires_in and refresh_expires_at/re_expires_in (*_in: seconds from now).
    Without FILE: the sessions the configuration names (provider.sessions_file or the
    variable of provider.sessions_env), so moving to the store is one command. Exit 0, 1.
    """
    from ..secrets import read_sessions, read_token_file

    settings, config_dir = settings_only(ctx)
    keyring = Keyring.from_env()
    at = auth.now()
    if file is not None:
        data, typed = read_token_file(file)
        tokens = auth.parse_import(data, at=at, where=str(file), typed_keys=typed)
        where = str(file)
    else:
        p = settings.provider
        if not isinstance(p, TopSettings) or auth_source_is_store(settings):
            raise ReconcilerError("auth import: give the FILE to import (the configuration names no sessions_file"
                                  " and no sessions_env to import from)")
        sessions, where = read_sessions(p, config_dir)
        tokens = auth.parse_import(sessions, at=at, where=where)
    if not tokens:
        raise ReconcilerError(f"{where}: no token to import")
    store = store_for(settings, config_dir)
    assert store is not None
    with closing(store):
        auth.store_tokens(store, keyring, tokens, source="import")
    click.echo(f"Imported the tokens of {_stored_summary(tokens)}, sealed with key {keyring.key_id}, into the state store.")
    if isinstance(settings.provider, TopSettings) and not auth_source_is_store(settings):
        err("The configuration still names provider.sessions_file or provider.sessions_env: remove it from"
            " reconciler.yaml to use the store (and then delete the file of session keys).")


def auth_source_is_store(settings: Settings) -> bool:
    return tokens_from_store(settings)


@auth_group.command()
@click.option("--shop", "shop", required=True, metavar="ID", help="The shop the code authorizes.")
@click.option("--code", "code", required=True, metavar="CODE",
              help="The authorization code from the shop's authorization page (- reads it from stdin).")
@click.option("--uuid", "uuid_", metavar="UUID", help="The uuid the code was made with, if any.")
@click.pass_context
def add(ctx: click.Context, shop: str, code: str, uuid_: str | None) -> None:
    """Exchange a shop's authorization CODE for a token (taobao.top.auth.token.create) and store it.

    The new token is checked by reading the shop with it before it is stored: a code that
    authorizes another shop is refused. Exit 0, 1.
    """
    from ..connect import open_provider

    if not SHOP_ID_RE.fullmatch(shop):
        raise ReconcilerError("--shop: a shop id is a string of digits")
    if code == "-":
        code = sys.stdin.readline().strip()
    if not code:
        raise ReconcilerError("--code: empty")
    settings, config_dir = settings_only(ctx)
    keyring = Keyring.from_env()
    at = auth.now()
    with closing(open_token_provider(settings, config_dir)) as provider:
        try:
            grant = _client(provider).create(code, uuid_)
        except ProviderError as e:
            raise ReconcilerError(f"shop {shop}: the platform did not exchange the code: {e}") from None
    token = auth.from_grant(shop, grant, at)
    with closing(open_provider(settings, config_dir, sessions={shop: grant.access_token})) as checker:
        found = checker.read([shop])[shop]
    if isinstance(found, ProviderError):
        if found.code in (13, 27):
            raise ReconcilerError(f"shop {shop}: the platform refused the new token for this shop ({found}): the code"
                                  " is another shop's; nothing stored")
        err(f"Warning: shop {shop}: could not read the shop with the new token ({found}); stored anyway")
    store = store_for(settings, config_dir)
    assert store is not None
    with closing(store):
        auth.store_token(store, keyring, token, source="code")
    ends = f", valid until {token.expires_at.isoformat(timespec='seconds')}" if token.expires_at else ""
    click.echo(f"Stored the token of shop {shop}{ends}{' (refreshable)' if token.secret.refresh_token else ''}.")


def _status_text(rows: Sequence[auth.ShopAuth], within: timedelta) -> str:
    lines = []
    for r in rows:
        line = (f"{r.shop:<12} {r.state.value:<9} expires {r.expires_at or 'never' if r.state is not AuthState.missing else '-'}"
                f"{'  refreshable' if r.refreshable else ''}")
        advice = r.advice()
        lines.append(line + (f"\n{'':12} → {advice}" if advice else ""))
    counts = {s: sum(1 for r in rows if r.state is s) for s in AuthState}
    days = f"{within.days}d" if within.seconds == 0 and within.days else f"{int(within.total_seconds())}s"
    lines.append(", ".join(f"{n} {s.value}" for s, n in counts.items()) + f" (expiring: within {days})")
    return "\n".join(lines) + "\n"


@auth_group.command("status")
@within_option
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.pass_context
def status_cmd(ctx: click.Context, within: timedelta, fmt: str) -> None:
    """What expires when: each shop of the configuration (and each other stored one).

    State: valid, expiring (within --within), expired, missing. Every stored token is
    opened with RECONCILER_STATE_KEY on the way (a wrong key is an error). Exit 0 all
    valid, 2 some expiring, expired or missing, 1 error.
    """
    config = load(ctx)
    keyring = Keyring.from_env()
    store = store_for(config.settings, config.dir, create=False)
    at = auth.now()
    if store is None:
        rows = [auth.ShopAuth(shop=s.id, state=AuthState.missing, expires_at=None, refresh_expires_at=None, refreshable=False)
                for s in sorted(config.shops, key=lambda s: s.id)]
    else:
        with closing(store):
            rows = auth.status(store, [s.id for s in config.shops], at=at, within=within, keyring=keyring)
    if fmt == "json":
        data: dict[str, Any] = {"format_version": 1, "within_s": int(within.total_seconds()),
                                "shops": [r.to_data() for r in rows]}
        click.echo(json.dumps(data, ensure_ascii=False, indent=2, sort_keys=True))
    else:
        click.echo(_status_text(rows, within), nl=False)
    ctx.exit(Exit.ok if all(r.state is AuthState.valid for r in rows) else Exit.pending)


@auth_group.command()
@within_option
@shop_option
@click.pass_context
def refresh(ctx: click.Context, within: timedelta, shops: tuple[str, ...]) -> None:
    """Renew the tokens that end within --within (7d): each shop of the configuration, or --shop.

    Each renewal spends the shop's refresh token once, under the shop's renewal claim in the
    state store, so runs at the same time (shards, a laptop) never spend one twice. Exit 0,
    3 some could not be renewed (the others were), 1 error.
    """
    config = load(ctx, shops)
    settings, config_dir = config.settings, config.dir
    keyring = Keyring.from_env()
    wanted = [s.id for s in config.shops]
    store = store_for(settings, config_dir)
    assert store is not None
    with closing(store), closing(open_token_provider(settings, config_dir)) as provider:
        renewer = auth.Renewer(store, keyring, _client(provider), lease_s=settings.state.lock_lease_s,
                               parallelism=_parallelism(ctx, settings))
        started = time.monotonic()
        results = renewer.renew(wanted, within=within, progress=progress_printer("auth refresh"))
        took = time.monotonic() - started
    by = {o: [r for r in results if r.outcome is o] for o in Outcome}
    for r in results:
        if r.outcome is Outcome.renewed:
            click.echo(f"{r.shop}: renewed, valid until {r.expires_at}")
        elif r.outcome is Outcome.elsewhere:
            click.echo(f"{r.shop}: {r.message or 'renewed by another run'}, valid until {r.expires_at}")
        elif not r.ok:
            click.echo(f"{r.shop}: {r.outcome.value}: {r.message}")
    bad = by[Outcome.failed] + by[Outcome.dead] + by[Outcome.missing]
    click.echo(f"Renewed {len(by[Outcome.renewed])} token(s); {len(by[Outcome.elsewhere])} renewed by another run;"
               f" {len(by[Outcome.not_needed])} not due; {len(bad)} could not be renewed ({took:.1f} s).")
    ctx.exit(Exit.partial if bad else Exit.ok)


COMMANDS: list[Any] = [auth_group]
