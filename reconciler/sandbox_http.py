"""The sandbox gateway's HTTP server: waitress, hardened for a hostile network.

The gateway is a test tool, but also the reference of the protocol, so a client that
misbehaves must not take it away from the others (``ServerLimits`` holds the numbers):

* **Slow and half-open connections.** waitress reads requests on its event loop, not on
  its worker threads, so a client that sends its request a byte at a time (or nothing at
  all) holds a connection slot only, not a worker. Here it holds it for a bounded time: a
  request not complete ``request_timeout_s`` after its first byte (a connection that sends
  nothing: after it opened) is closed, and so is a keep-alive connection idle for
  ``idle_timeout_s`` — or ``busy_idle_s`` once half the ``connection_limit`` slots are taken.
  However many slow clients there are, a valid one waits for a slot at most about
  ``request_timeout_s``; below the limit, not at all.
* **Large bodies.** waitress reads a body of up to ``hard_body`` bytes whole (spooled to a
  file past 512 KiB), so the gateway can answer one over its own limit with a 413 the
  client actually reads, rather than closing mid-upload (a connection reset). A body over
  ``hard_body`` gets waitress's own 413 and the connection closes.
* The deliberate short answers of the fault tests are not logged as warnings.

``make_server`` builds such a server for a WSGI application; ``sandbox_server.ServerHandle``
runs it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from waitress.channel import HTTPChannel  # type: ignore[import-untyped]  # waitress ships no type hints
from waitress.parser import HTTPRequestParser  # type: ignore[import-untyped]
from waitress.server import create_server  # type: ignore[import-untyped]

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


@dataclass(frozen=True)
class ServerLimits:
    request_timeout_s: float = 10.0   # from a request's first byte to its last
    idle_timeout_s: int = 60          # a keep-alive connection between requests
    busy_idle_s: float = 2.0          # the same, once half the connection slots are taken
    connection_limit: int = 500
    hard_body: int = 8 << 20          # waitress reads bodies up to this; the gateway's own limit is lower
    check_every_s: int = 1            # how often connections are looked over


class _TimedParser(HTTPRequestParser):  # type: ignore[misc]
    """waitress's request parser, remembering when the request's first byte came."""

    def __init__(self, adj: Any) -> None:
        super().__init__(adj)
        self.started = time.time()


class _TimedChannel(HTTPChannel):  # type: ignore[misc]
    parser_class = _TimedParser


class _QuietDrops(logging.Filter):
    """Our deliberate drops make waitress warn about a short response; that is not news."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("application returned too few bytes")


# One filter, added to waitress's logger when a server is built (adding it again is a no-op),
# so importing this module leaves the logging configuration alone.
_QUIET_DROPS = _QuietDrops()


def make_server(app: WSGIApp, *, host: str, port: int, threads: int, limits: ServerLimits | None = None) -> Any:
    """A waitress server for ``app`` (listening, not serving yet), with the guards of the module doc."""
    lim = limits or ServerLimits()
    logging.getLogger("waitress").addFilter(_QUIET_DROPS)
    server = create_server(app, host=host, port=port, threads=threads, ident="reconciler-sandbox",
                           asyncore_use_poll=True, connection_limit=lim.connection_limit,
                           max_request_body_size=lim.hard_body, expose_tracebacks=False,
                           channel_timeout=lim.idle_timeout_s, cleanup_interval=lim.check_every_s)
    server.channel_class = _TimedChannel
    waitress_maintenance = server.maintenance

    def maintenance(now: float) -> None:
        """Called on the event loop every ``check_every_s``: close what holds a slot too long."""
        waitress_maintenance(now)  # idle past idle_timeout_s
        busy = len(server.active_channels) * 2 >= lim.connection_limit
        for channel in list(server.active_channels.values()):
            if channel.requests or channel.will_close:  # being answered, or going anyway
                continue
            partial = channel.request
            if partial is not None:
                slow = now - getattr(partial, "started", channel.creation_time) > lim.request_timeout_s
            elif channel.last_activity == channel.creation_time:  # connected, and not a byte since
                slow = now - channel.creation_time > lim.request_timeout_s
            else:  # between two requests of a keep-alive connection
                slow = busy and now - channel.last_activity > lim.busy_idle_s
            if slow:
                channel.will_close = True

    server.maintenance = maintenance
    return server
