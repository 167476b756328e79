"""Rate limits on both ends of the TOP protocol: the gateway's per-app limit and the client's.

``TokenBucket`` is the arithmetic (``rate`` tokens a second, at most ``burst`` saved up).

``Share`` is one process's part of an app's limit when several run at once (``--shard K/N``:
each of the N gets ``1/N`` of ``provider.qps`` unless told otherwise).

``AppLimit`` is what the sandbox gateway enforces per app key, like the real platform: a
request over the limit is refused with code 7 and bans the app for whole seconds ("This
ban will last for N more seconds"); every request during the ban is refused too.

``ClientLimiter`` is what the HTTP provider holds, shared by all its threads. Besides
pacing requests at the configured QPS, it reacts to a ban the way a well-behaved client
must: nothing is sent until the ban is over; the requests that were refused go first when
it ends (so a refused request is not refused again by its own retry losing the race to
fresh requests); and the rate is halved, then grows back linearly, so a client configured
above the platform's real limit settles near it instead of hitting the ban every second.
Once told to ``hurry`` (the run is being interrupted), it waits out only short bans: a
request that would have to wait longer raises ``Banned`` instead.

``CircuitBreaker`` is the client's other guard: after a number of consecutive transport
failures (no answer at all, from any thread) it opens for good, so a run stops with one
message instead of waiting out timeouts shop after shop.

Bursts: the gateway admits at most its burst (the sandbox's: one second's worth) at once.
A client's bucket holds at most ``max(1, qps / 10)`` and starts with a tenth of a second's
worth (``qps / 10``, however small), so N shards started together send at most a tenth of
a second of the app's limit before pacing sets in — whatever N — instead of N full buckets.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

Clock = Callable[[], float]


class TokenBucket:
    """Not thread-safe by itself; the limiters below hold a lock around it."""

    def __init__(self, rate: float, burst: float, now: float, *, tokens: float | None = None) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("a token bucket needs rate > 0 and burst >= 1")
        self.rate = rate
        self.burst = burst
        self.tokens = burst if tokens is None else min(burst, max(0.0, tokens))  # full unless told
        self._at = now

    def refill(self, now: float) -> None:
        if now > self._at:
            self.tokens = min(self.burst, self.tokens + (now - self._at) * self.rate)
        self._at = now

    def take(self, now: float) -> float:
        """Take a token: 0.0, or (taking nothing) the seconds until one is available."""
        self.refill(now)
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate


class AppLimit:
    """The gateway's limit for one app: ``admit()`` is None, or the ban's remaining seconds."""

    def __init__(self, qps: float, *, burst: float | None = None, clock: Clock = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._bucket = TokenBucket(qps, burst if burst is not None else max(1.0, qps), clock())
        self._ban_until = 0.0

    def admit(self) -> int | None:
        with self._lock:
            now = self._clock()
            if now < self._ban_until:
                return max(1, math.ceil(self._ban_until - now))
            wait = self._bucket.take(now)
            if wait == 0.0:
                return None
            ban = max(1, math.ceil(wait))
            self._ban_until = now + ban
            return ban


class ClientLimiter:
    """A thread-safe client-side limit with ban handling; see the module doc.

    ``acquire()`` blocks until a request may be sent and returns the seconds it waited.
    ``banned(seconds)`` is called by the thread whose request was refused with code 7; that
    thread's next ``acquire()`` (its retry) has priority over every thread that was not
    refused. A priority claim lapses ``grace_s`` after the ban if its thread never returns.
    """

    def __init__(self, qps: float, *, burst: float | None = None, min_qps: float | None = None,
                 recovery_s: float = 10.0, grace_s: float = 2.0, clock: Clock = time.monotonic) -> None:
        self.max_rate = qps
        self.min_rate = min_qps if min_qps is not None else min(qps, 0.5)
        self._recovery_s = recovery_s
        self._grace_s = grace_s
        self._clock = clock
        self._cond = threading.Condition(threading.Lock())
        now = clock()
        # a tenth of a second's worth to start with (see the module doc: N shards started at once)
        self._bucket = TokenBucket(qps, burst if burst is not None else max(1.0, qps / 10), now, tokens=qps / 10)
        self._ban_until = 0.0
        self._adjusted = now
        self._priority: dict[int, float] = {}  # thread id → when its claim lapses
        self.bans = 0
        self.waited_s = 0.0
        self._hurry_max: float | None = None  # in a hurry: the longest ban still waited out

    @property
    def rate(self) -> float:
        return self._bucket.rate

    def acquire(self) -> float:
        me = threading.get_ident()
        with self._cond:
            start = self._clock()
            if me in self._priority:
                self._priority[me] = math.inf  # here now: the claim holds until served
            while True:
                now = self._clock()
                self._recover(now)
                for tid, until in list(self._priority.items()):
                    if until <= now:
                        del self._priority[tid]
                if now < self._ban_until:
                    if self._hurry_max is not None and self._ban_until - now > self._hurry_max:
                        raise Banned(self._ban_until - now)
                    wait = self._ban_until - now
                elif me not in self._priority and self._priority:
                    wait = max(0.001, min(self._priority.values()) - now) if min(self._priority.values()) < math.inf else 1.0
                else:
                    wait = self._bucket.take(now)
                    if wait == 0.0:
                        if self._priority.pop(me, None) is not None:
                            self._cond.notify_all()
                        waited = now - start
                        self.waited_s += waited
                        return waited
                self._cond.wait(wait)

    def banned(self, seconds: float) -> None:
        """The platform banned the app for ``seconds``; the calling thread's retry goes first."""
        with self._cond:
            now = self._clock()
            if now >= self._ban_until:  # a new ban, not another refusal of the same one
                self.bans += 1
                self._bucket.refill(now)
                self._bucket.rate = max(self.min_rate, self._bucket.rate / 2)
                self._bucket.tokens = 0.0
            self._ban_until = max(self._ban_until, now + seconds)
            self._adjusted = self._ban_until
            self._priority[threading.get_ident()] = self._ban_until + self._grace_s
            self._cond.notify_all()

    def hurry(self, max_wait_s: float) -> None:
        """From now on a ban with more than ``max_wait_s`` left is not waited out: ``acquire``
        raises ``Banned`` (in the threads already waiting too)."""
        with self._cond:
            self._hurry_max = max_wait_s
            self._cond.notify_all()

    def _recover(self, now: float) -> None:
        """Additive increase: back to the configured rate ``recovery_s`` after the last ban."""
        b = self._bucket
        if b.rate < self.max_rate and now > self._adjusted:
            b.refill(now)
            b.rate = min(self.max_rate, b.rate + self.max_rate * (now - self._adjusted) / self._recovery_s)
            self._adjusted = now


@dataclass(frozen=True)
class Share:
    """One of ``of`` processes that use one app's limit of ``app_qps`` requests a second at
    once: its rate is ``explicit`` when the user gave one, else an even share."""

    app_qps: float
    of: int = 1
    explicit: float | None = None

    def __post_init__(self) -> None:
        if self.app_qps <= 0 or self.of < 1 or (self.explicit is not None and self.explicit <= 0):
            raise ValueError("a share needs app_qps > 0, of >= 1 and an explicit rate > 0")

    @property
    def qps(self) -> float:
        return self.explicit if self.explicit is not None else self.app_qps / self.of

    @property
    def together(self) -> float:
        """What the ``of`` processes send together at most, at this rate each."""
        return self.qps * self.of

    @property
    def over(self) -> bool:
        """Whether they together exceed the app's limit (an explicit rate can; the default never does)."""
        return self.together > self.app_qps * (1 + 1e-9)  # 200 / 3 * 3 is not over 200


class Banned(Exception):
    """``ClientLimiter.acquire`` in a hurry: the app is banned for ``seconds`` more."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"the app is banned for {seconds:.0f} more second(s)")
        self.seconds = seconds


class CircuitBreaker:
    """Opens after ``limit`` consecutive failures, counted across threads; any success in
    between starts the count again. Once open it stays open: ``opened`` says why."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("a circuit breaker needs a limit of at least 1")
        self.limit = limit
        self._lock = threading.Lock()
        self._failures = 0
        self.opened: str | None = None

    def failure(self, why: str) -> bool:
        """Count a failure; True for the one that opened the breaker."""
        with self._lock:
            if self.opened is not None:
                return False
            self._failures += 1
            if self._failures >= self.limit:
                self.opened = why
                return True
            return False

    def success(self) -> None:
        with self._lock:
            self._failures = 0
