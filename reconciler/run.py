"""One ``apply`` run, start to end: the lifecycle the CLI used to hold.

An ``ApplyRun`` owns the history run of one apply: it is opened lazily (a run is recorded
only when it has something to record), every change attempt is recorded through it, a
refused plan records every change as ``refused`` before the refusal propagates, and the run
is finished with its exit code when the ``with`` block ends — or left unfinished when the
process dies, which is how the history shows a crash. Between those, ``check`` applies the
safety threshold and (for a saved plan) the stale check, and ``execute`` runs
``apply.apply_plan``.

The CLI parses options, builds the plan (or reads the saved one), prints, asks, and calls
these steps; it holds no rule of its own.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from types import TracebackType
from typing import NoReturn

from .apply import ApplyResult, apply_plan, check_safe, check_stale
from .errors import ReconcilerError, StalePlan, UnsafePlan
from .history import History
from .plan import Change, Plan
from .providers.base import Provider
from .vocab import Exit, Outcome

Progress = Callable[[int, int, str], None]


class ApplyRun:
    """The history run around applying one plan. Use as a context manager."""

    def __init__(self, *, plan: Plan, provider: Provider, history: History, actor: str,
                 git_commit: str | None = None, git_branch: str | None = None, saved: bool = False) -> None:
        self.plan = plan
        self.provider = provider
        self.history = history
        self.actor = actor
        self.git_commit = git_commit
        self.git_branch = git_branch
        self.saved = saved
        self.run_id: int | None = None
        self.code: Exit | None = None  # stays None when the run crashes: the history shows it unfinished
        self._lock = threading.Lock()

    def __enter__(self) -> ApplyRun:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        try:
            if self.run_id is not None and self.code is not None:
                self.history.finish_run(self.run_id, exit_code=int(self.code))
        finally:
            self.history.close()

    # ------------------------------------------------------------------ recording

    def record(self, *, change: Change, outcome: Outcome, error: str | None) -> None:
        """One change attempt, durably; the first one opens the history run."""
        with self._lock:  # shops are applied in parallel over HTTP
            if self.run_id is None:
                self.run_id = self.history.start_run(actor=self.actor, git_commit=self.git_commit,
                                                     git_branch=self.git_branch, checksum=self.plan.checksum)
        self.history.record(self.run_id, shop=change.shop, scenario=change.scenario.value, action=change.action.value,
                            before=dict(change.before), after=dict(change.after), outcome=outcome, error=error)

    def refuse(self, error: ReconcilerError) -> NoReturn:
        """Refuse the whole plan: every change is recorded as refused, then ``error`` is raised."""
        self.code = Exit.error
        for c in self.plan.changes:
            self.record(change=c, outcome=Outcome.refused, error=str(error).splitlines()[0])
        raise error

    # ------------------------------------------------------------------ the steps

    def check(self, *, force: bool) -> None:
        """The safety threshold and ``protect`` (unless ``force``), and for a saved plan that every
        value it touches still holds its ``before``; a failure refuses the run."""
        try:
            check_safe(self.plan, force=force)
            if self.saved:
                check_stale(self.plan, self.provider)
        except (UnsafePlan, StalePlan) as e:
            self.refuse(e)

    def nothing_to_apply(self) -> Exit:
        """The plan has no change: 0, or 1 when shops are withheld by errors. Nothing is recorded."""
        self.code = Exit.error if self.plan.errors else Exit.ok
        return self.code

    def execute(self, *, progress: Progress | None = None, stop: threading.Event | None = None) -> ApplyResult:
        """Write the plan (see ``apply.apply_plan``)."""
        result = apply_plan(self.plan, self.provider, record=self.record, progress=progress,
                            parallelism=getattr(self.provider, "parallelism", 1), stop=stop)
        self.code = result.exit_code
        return result
