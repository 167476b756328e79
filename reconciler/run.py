"""One ``apply`` run, start to end: the lifecycle the CLI used to hold.

An ``ApplyRun`` owns one apply's run in the state store (``reconciler.state``): the history
run (opened at the first thing to record), the per-shop locks, the journal and the run's end.

    with ApplyRun(plan=..., provider=..., store=..., actor=..., options=...) as run:
        run.check_target(target)    # a saved plan: made for this platform (and recently enough)
        run.check_safe(force=...)   # the safety threshold and protect; a refusal is recorded
        run.lock()                  # the shops it writes, before the first write (waits, or refuses: locked)
        run.check_stale()           # a saved plan: every value it touches still holds its before
        result = run.execute(...)   # apply.apply_plan, journalled, under a lease keeper

Locks are taken before the stale check, so two applies of one saved plan cannot both pass
it. Every write is journalled (``apply.Journal``): a run killed mid-way leaves intents
without an end, its run becomes ``interrupted`` once its process is gone or its lease
expired, and the next plan names those shops (``interrupted``) and the next apply does them
first. The run is finished with its exit code (which releases its locks) when the ``with``
block ends — or left unfinished when the process dies, which is how the history shows a crash.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import TracebackType
from typing import TYPE_CHECKING, Any, NoReturn

from .apply import ApplyResult, apply_plan, check_safe, check_stale
from .errors import ReconcilerError, StalePlan, UnsafePlan
from .model import Desired, Scenario, ShopState
from .plan import Change, Plan
from .providers.base import Provider
from .vocab import WRITTEN, Action, Exit, Outcome

if TYPE_CHECKING:
    from .state import InterruptedShop, Store

Progress = Callable[[int, int, str], None]
Note = Callable[[str], None]


@dataclass(frozen=True)
class RunOptions:
    """Who runs, from where, and how locks are waited for."""

    actor: str
    git_commit: str | None = None
    git_branch: str | None = None
    lock_timeout_s: float = 0.0
    lock_lease_s: float = 60.0


class _Either:
    """Stop when either event is set (Ctrl-C, or the run lost its locks)."""

    def __init__(self, *events: threading.Event) -> None:
        self.events = events

    def is_set(self) -> bool:
        return any(e.is_set() for e in self.events)


class _Journal:
    """``apply.Journal`` over the store, for one run. Between a shop's intent and its end the
    shop's history rows are held and committed with the end, in one transaction (see
    ``Store.shop_done``); ``done`` raising means they could not be recorded."""

    def __init__(self, store: Store, run_id: int) -> None:
        self.store = store
        self.run_id = run_id
        self._held: dict[str, tuple[int, list[dict[str, Any]]]] = {}  # shop → its intent's id, its rows
        self._lock = threading.Lock()

    def intent(self, shop: str, changes: Sequence[Change]) -> None:
        intent = self.store.intent(self.run_id, shop, [c.to_data() for c in changes])
        with self._lock:
            self._held[shop] = (intent, [])

    def hold(self, change: Change, outcome: Outcome, error: str | None) -> bool:
        """Keep the row for the shop's end; False when the shop has no intent open (write it now)."""
        row = self.store.change_row(self.run_id, shop=change.shop, scenario=change.scenario.value,
                                    action=change.action.value, before=dict(change.before), after=dict(change.after),
                                    outcome=outcome, error=error)
        with self._lock:
            held = self._held.get(change.shop)
            if held is None:
                return False
            held[1].append(row)
            return True

    def done(self, shop: str, outcome: str) -> None:
        with self._lock:
            intent, rows = self._held.pop(shop, (None, []))
        self.store.shop_done(self.run_id, shop, outcome, rows, intent=intent)


class ApplyRun:
    """One apply of one plan, recorded in the state store. Use as a context manager."""

    def __init__(self, *, plan: Plan, provider: Provider, store: Store, options: RunOptions, saved: bool = False,
                 interrupted: Mapping[str, InterruptedShop] | None = None, note: Note | None = None) -> None:
        self.plan = plan
        self.provider = provider
        self.store = store
        self.options = options
        self.saved = saved
        self.interrupted = dict(interrupted or {})
        self.note: Note = note or (lambda _: None)
        self.run_id: int | None = None
        self._journal: _Journal | None = None
        self.code: Exit | None = None  # stays None when the run crashes: the history shows it unfinished
        self._lock = threading.Lock()

    def __enter__(self) -> ApplyRun:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        try:
            if self.run_id is not None:
                if self.code is not None:
                    left_open = self.store.finish_run(self.run_id, exit_code=int(self.code))  # releases the locks too
                    if left_open:
                        self.note(f"the state store has no end for {len(left_open)} shop(s) this run was changing"
                                  f" ({', '.join(left_open[:5])}{' …' if len(left_open) > 5 else ''}): the run is"
                                  " recorded as interrupted, and the next apply records what landed there")
                else:  # a crash: the run stays unfinished (interrupted), its locks are freed for the next run
                    self.store.release(self.run_id)
        finally:
            self.store.close()

    # ------------------------------------------------------------------ recording

    def _run(self) -> int:
        with self._lock:  # shops are applied in parallel over HTTP
            if self.run_id is None:
                o = self.options
                self.run_id = self.store.start_run(actor=o.actor, git_commit=o.git_commit, git_branch=o.git_branch,
                                                   checksum=self.plan.checksum, host=socket.gethostname(), pid=os.getpid(),
                                                   lease_s=o.lock_lease_s)
            return self.run_id

    def record(self, *, change: Change, outcome: Outcome, error: str | None) -> None:
        """One change attempt: held for its shop's end while the shop is journalled (committed
        with it), else written durably at once; the first one opens the history run."""
        run = self._run()
        if self._journal is not None and self._journal.hold(change, outcome, error):
            return
        self.store.record(run, shop=change.shop, scenario=change.scenario.value, action=change.action.value,
                          before=dict(change.before), after=dict(change.after), outcome=outcome, error=error)

    def refuse(self, error: ReconcilerError) -> NoReturn:
        """Refuse the whole plan: every change is recorded as refused, then ``error`` is raised."""
        self.code = Exit.error
        for c in self.plan.changes:
            self.record(change=c, outcome=Outcome.refused, error=str(error).splitlines()[0])
        raise error

    # ------------------------------------------------------------------ the steps

    def check_target(self, target: Mapping[str, str], *, max_age: timedelta | None = None,
                     now: datetime | None = None) -> None:
        """A saved plan: it was made for ``target`` (the platform about to be written) and, with
        ``max_age``, no longer than that before ``now``; else the run is refused, nothing changed."""
        if not self.saved:
            return
        try:
            from .saved import check_target

            check_target(self.plan, target, max_age=max_age, now=now)
        except StalePlan as e:
            self.refuse(e)

    def check_safe(self, *, force: bool) -> None:
        """The safety threshold and ``protect`` (unless ``force``); a failure refuses the run."""
        try:
            check_safe(self.plan, force=force)
        except UnsafePlan as e:
            self.refuse(e)

    def lock(self) -> None:
        """Lock every shop the plan writes (waiting up to the lock timeout); refuse when they stay locked."""
        from .state import Locked

        shops = sorted(self.plan.by_shop())
        if not shops:
            return
        run = self._run()
        waiting = [False]

        def wait(e: Locked) -> None:
            if not waiting[0]:
                self.note(f"{e}\nwaiting up to {self.options.lock_timeout_s:g}s for the lock(s)…")
            waiting[0] = True

        try:
            taken = self.store.acquire(run, shops, timeout_s=self.options.lock_timeout_s,
                                       lease_s=self.options.lock_lease_s, on_wait=wait)
        except Locked as e:
            self.refuse(e)
        for t in taken:
            self.note(t.message())
        if taken:  # the runs taken over are interrupted now: their shops are to be recovered and finished too
            self.interrupted.update(self.store.interrupted_shops(list(self.plan.shops)))

    def verify(self, desired: Desired, *, force: bool) -> None:
        """A saved plan: every change must be one the configuration would make; ``protect`` and
        the safety threshold are decided again from it (``saved.verify_against``)."""
        if not self.saved:
            return
        try:
            from .saved import verify_against

            verify_against(self.plan, desired, force=force)
        except (StalePlan, UnsafePlan) as e:
            self.refuse(e)

    def check_stale(self) -> None:
        """A saved plan, under the locks: every value it touches must still hold its ``before``
        (and its pinned revision), and no earlier run may have applied this very plan."""
        if not self.saved:
            return
        try:
            check_stale(self.plan, self.provider)
            earlier = self.store.applied_runs(self.plan.checksum)
            if earlier:
                r = earlier[0]
                raise StalePlan(f"this saved plan was already applied by run {r.id} ({r.actor}, {r.time}"
                                + (f", git {r.git_commit[:10]}" if r.git_commit else "") + "); nothing was applied;"
                                " make a new plan")
        except StalePlan as e:
            self.refuse(e)

    def recover(self) -> None:
        """Record the writes an interrupted run made but could not record: each change it intended
        that the platform now holds, and that its history does not show, is recorded under that
        run (``applied``, saying who found it). Nothing is recorded for a write that did not land."""
        if not self.interrupted:
            return
        shops = sorted(self.interrupted)
        states = self.provider.read(shops)
        recorded = {(e.run, e.shop, e.scenario, e.action) for e in self.store.entries(shops=shops) if e.outcome in WRITTEN}
        for shop, i in sorted(self.interrupted.items()):
            state = states.get(shop)
            if not isinstance(state, ShopState):
                continue
            for c in i.changes:
                name = "buyer_self_service" if c["action"] == Action.update else "appkey"
                now = state.buyer_self_service if name == "buyer_self_service" else state.appkey(Scenario(c["scenario"]))
                if now == c["after"].get(name) and (i.run, shop, c["scenario"], c["action"]) not in recorded:
                    self.store.record(i.run, shop=shop, scenario=c["scenario"], action=c["action"], before=c["before"],
                                      after=c["after"], outcome=Outcome.applied,
                                      error=f"found on the platform after run {i.run} was interrupted; recorded by run {self._run()}")

    def nothing_to_apply(self) -> Exit:
        """The plan has no change: 0, or 1 when shops are withheld by errors."""
        self.recover()
        self._settle(set())
        self.code = Exit.error if self.plan.errors else Exit.ok
        return self.code

    def execute(self, *, progress: Progress | None = None, stop: threading.Event | None = None) -> ApplyResult:
        """Write the plan (see ``apply.apply_plan``), journalled, renewing the locks' lease while it runs."""
        run = self._run()
        self.recover()
        self._journal = _Journal(self.store, run)
        with self.store.keeper(run, self.options.lock_lease_s) as keeper:
            result = apply_plan(self.plan, self.provider, record=self.record, progress=progress,
                                parallelism=getattr(self.provider, "parallelism", 1),
                                stop=_Either(stop or threading.Event(), keeper.lost),
                                journal=self._journal, first=sorted(self.interrupted))
        if keeper.lost.is_set():
            self.note(f"the run lost its locks ({keeper.error or 'they were taken away'}): no further shop was started")
        self._settle(set(self.plan.by_shop()) | set(result.withheld))
        self.code = result.exit_code
        return result

    def _settle(self, touched: set[str]) -> None:
        """Shops an interrupted run left that this plan found needing no change (and did not
        withhold) are whole: mark them finished, so no later plan names them again."""
        for shop in sorted(self.interrupted):
            if shop in self.plan.shops and shop not in touched and shop not in self.plan.withheld:
                self.store.intent(self._run(), shop, [])
                self.store.shop_done(self._run(), shop, "nothing-left")
