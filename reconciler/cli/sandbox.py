"""``reconciler sandbox …``: the embedded platform's content (load, dump) and serving it over HTTP (serve)."""

from __future__ import annotations

import socket
import sys
from pathlib import Path
from typing import Any

import click

from ..connect import open_sandbox, read_world
from ..errors import ReconcilerError
from ..yamlio import dump
from .common import settings_only


def _db_option(f: click.decorators.FC) -> click.decorators.FC:
    return click.option("--db", type=click.Path(dir_okay=False, path_type=Path),
                        help="The sandbox database (default: the config dir's provider settings).")(f)


@click.group()
def sandbox() -> None:
    """The embedded sandbox platform (SQLite): load, dump, serve."""


def _check_address(host: str, port: int) -> None:
    """Refuse a taken port before the server is built (waitress leaks its socket when its own
    bind fails); the same SO_REUSEADDR as the server, so the answer is the server's."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        with socket.socket(infos[0][0], socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(infos[0][4])
    except OSError as e:
        raise ReconcilerError(f"cannot serve on {host}:{port}: {e.strerror or e}") from None


@sandbox.command("load")
@click.argument("world", type=click.Path(dir_okay=False, path_type=Path))
@_db_option
@click.pass_context
def load_cmd(ctx: click.Context, world: Path, db: Path | None) -> None:
    """Replace the sandbox's content with WORLD.yaml."""
    content = read_world(world)
    settings, config_dir = settings_only(ctx)
    platform = open_sandbox(settings, config_dir, db=db, initial_world=False)
    try:
        platform.load_world(content)
    finally:
        platform.close()
    click.echo(f"Loaded {world}: {len(content.shops)} shop(s), {len(content.apps)} ERP app(s),"
               f" {len(content.faults)} fault(s) into {platform.path}")


@sandbox.command("dump")
@_db_option
@click.option("--include-secrets", is_flag=True, help="Also print the app secret and session keys.")
@click.pass_context
def dump_cmd(ctx: click.Context, db: Path | None, include_secrets: bool) -> None:
    """Print the sandbox's content as a world file."""
    settings, config_dir = settings_only(ctx)
    platform = open_sandbox(settings, config_dir, db=db)
    try:
        click.echo(dump(platform.dump_world(include_secrets=include_secrets)), nl=False)
    finally:
        platform.close()


@sandbox.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=8765, show_default=True,
              help="Port to listen on; 0 picks a free one (printed).")
@click.option("--qps", type=click.FloatRange(min=0), default=100.0, show_default=True,
              help="Per-app rate limit (requests a second; 0: no limit). Over it: code 7 and a ban of whole seconds.")
@click.option("--burst", type=click.FloatRange(min=1), help="Requests an app may save up [default: one second's worth].")
@click.option("--latency-ms", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="Delay every request by this much.")
@click.option("--drop-rate", type=click.FloatRange(0, 1), default=0.0, show_default=True,
              help="Share of requests whose connection is dropped before they are handled.")
@click.option("--drop-after-rate", type=click.FloatRange(0, 1), default=0.0, show_default=True,
              help="Share of requests whose connection is dropped after they were handled (the write happened).")
@click.option("--seed", type=int, help="Seed for the random drops (reproducible fault runs).")
@click.option("--threads", type=click.IntRange(1, 256), default=16, show_default=True, help="Worker threads.")
@_db_option
@click.pass_context
def serve_cmd(ctx: click.Context, host: str, port: int, qps: float, burst: float | None, latency_ms: float,
              drop_rate: float, drop_after_rate: float, seed: int | None, threads: int, db: Path | None) -> None:
    """Serve the sandbox over HTTP with the TOP protocol at /router/rest (Ctrl-C stops).

    GET /stats answers the request counters (JSON). The app key and secret the gateway
    accepts, and each shop's session key, come from the sandbox's world.
    """
    import signal

    from ..sandbox_server import Gateway, NetworkFaults, ServerHandle

    settings, config_dir = settings_only(ctx)
    _check_address(host, port)
    platform = open_sandbox(settings, config_dir, db=db)
    try:
        faults = NetworkFaults(latency_s=latency_ms / 1000, drop_rate=drop_rate, drop_after_rate=drop_after_rate,
                               seed=seed)
        gateway = Gateway(platform, qps=qps or None, burst=burst, faults=faults)
        handle = ServerHandle(gateway, host=host, port=port, threads=threads)
    except OSError as e:  # the port is taken, the address is not this machine's, …
        platform.close()
        raise ReconcilerError(f"cannot serve on {host}:{port}: {e.strerror or e}") from None
    except BaseException:
        platform.close()
        raise
    app = platform.agency_app()
    if app is None:
        click.echo("Warning: the sandbox has no agency app (world `app:`); every request will be refused (code 29).",
                   err=True)
    limit = f"{qps:g} QPS per app" if qps else "no rate limit"
    click.echo(f"Serving {platform.path} on {handle.url} ({len(platform.list_shops())} shop(s),"
               f" app key {app[0] if app else 'none'}, {limit}); Ctrl-C stops.")
    sys.stdout.flush()

    def stop(signum: int, frame: object) -> None:
        handle.request_stop()

    previous = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        handle.run()
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
        platform.close()
    c = gateway.counters()
    click.echo(f"Stopped: {c.received} request(s), {sum(c.ok.values())} answered, {sum(c.failed.values())} failed,"
               f" {sum(c.refused.values())} refused, {sum(c.dropped_before.values()) + sum(c.dropped_after.values())}"
               " dropped.", err=True)


COMMANDS: list[Any] = [sandbox]
