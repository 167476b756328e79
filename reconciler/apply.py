"""Reading the platform into a plan, and running a plan through a provider.

``make_plan`` is the I/O wrapper around the pure ``plan.compute_plan``. ``apply_plan``
writes a plan shop by shop: within a shop the binding changes go first (scenario order),
then follow-up settings; every write is a compare-and-set on the plan's ``before``. When a
write fails, the shop's changes already made in this run are put back in reverse order,
so a shop is never left split between two ERPs. Shops are independent: a failing shop
does not stop the others. ``check_stale`` refuses a saved plan whose ``before`` values no
longer hold, before anything is written.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from .errors import ConflictError, FatalProviderError, ProviderError, StalePlan, UnsafePlan, mask
from .model import Desired, Scenario, ShopState
from .plan import Change, Plan, compute_plan, needed_checks
from .providers.base import Provider
from .vocab import Action, Exit, Outcome, ProblemKind, Severity, WriteFate, show

if TYPE_CHECKING:
    import logging


def _log() -> logging.Logger:
    """The module's logger (written to when an apply goes wrong: logging is imported then, not by every plan)."""
    import logging

    return logging.getLogger("reconciler.apply")


Recorder = Callable[..., None]
Progress = Callable[[int, int, str], None]


class Journal(Protocol):
    """Where a run records, durably, what it is about to do to a shop and that it is done:
    a shop whose intent has no end was being changed when the process died."""

    def intent(self, shop: str, changes: Sequence[Change]) -> None: ...

    def done(self, shop: str, outcome: str) -> None: ...


class Stop(Protocol):
    def is_set(self) -> bool: ...


def make_plan(desired: Desired, provider: Provider, *, force: bool = False,
              interrupted: Mapping[str, str] | None = None,
              auth: Mapping[str, tuple[ProblemKind, Severity, str]] | None = None) -> Plan:
    """Read the actual state of the desired shops and plan the changes (``auth``: shops whose
    authorization does not work, not read, and those about to end; see ``compute_plan``)."""
    unread = {s for s, (_, severity, _) in (auth or {}).items() if severity == Severity.error}
    actual: dict[str, ShopState | ProviderError] = dict(provider.read([s.id for s in desired.shops if s.id not in unread]))
    actual.update({s: ProviderError("not read: its authorization does not work") for s in unread})
    checks = provider.check_apps(needed_checks(desired.shops))
    return compute_plan(desired.shops, actual, checks, desired.erp_names, safety=desired.safety, force=force,
                        managed_total=desired.managed_total or None, share_of_total=desired.share_of_total,
                        interrupted=interrupted, auth=auth)


def _field(change: Change) -> tuple[str, str]:
    """(key in the shop's projection, name of the value) a change reads and writes."""
    if change.action is Action.update:
        return "buyer_self_service", "buyer_self_service"
    return change.scenario.value, "appkey"


def _projection(state: ShopState, keys: Iterable[str]) -> dict[str, Any]:
    return {k: state.buyer_self_service if k == "buyer_self_service" else state.appkey(Scenario(k)) for k in keys}


def _moved(shop: str, state: ShopState, changes: Iterable[Change]) -> list[tuple[tuple[str, str, str], str]]:
    """Bindings that hold the plan's ``before`` again but were written since the plan saw them
    (their revision moved: A → B → A): an old plan must not undo the later change."""
    out = []
    for c in changes:
        b = state.bindings.get(c.scenario)
        if c.revision is not None and c.action is not Action.update and b is not None and b.revision != c.revision:
            out.append((c.key, f"  {shop} {c.scenario.value} {c.action.value}: the binding was written since the plan"
                               f" was made (revision {c.revision}, now {b.revision})"))
    return out


def check_stale(plan: Plan, provider: Provider) -> None:
    """Refuse (StalePlan) when any binding the plan touches no longer matches its ``before``.

    Each shop's touched values are compared as plain dicts first; only for a shop that
    differs does deepdiff name the fields, old and new."""
    expected: dict[str, dict[str, Any]] = {}
    by_field: dict[tuple[str, str], Change] = {}
    for c in plan.changes:
        key, name = _field(c)
        expected.setdefault(c.shop, {})[key] = c.before.get(name)
        by_field[(c.shop, key)] = c
    if not expected:
        return
    actual = provider.read(sorted(expected))
    stale: list[tuple[tuple[str, str, str], str]] = []
    already = True  # every value that differs is what the plan would write: it was applied before
    for shop, want in sorted(expected.items()):
        state = actual[shop]
        if isinstance(state, ProviderError):
            raise StalePlan(f"cannot verify the plan: shop {shop}: {state}")
        now = _projection(state, want)
        if now == want:
            moved = _moved(shop, state, plan.by_shop().get(shop, []))
            already = already and not moved
            stale += moved
            continue
        from deepdiff import DeepDiff  # only here, on the rare stale path: it costs 30 ms to import
        diff = DeepDiff(want, now, verbose_level=2)
        for kind in ("values_changed", "type_changes"):
            for path, detail in diff.get(kind, {}).items():
                c = by_field[(shop, path[len("root['"):-len("']")])]
                name = _field(c)[1]
                already = already and detail["new_value"] == c.after.get(name)
                stale.append((c.key, f"  {shop} {c.scenario.value} {c.action.value}: plan expects"
                                     f" {_setting(name, detail['old_value'])}, platform has {_setting(name, detail['new_value'])}"))
    if stale:
        stale.sort()
        why = ("the saved plan was already applied: the platform holds what it would write" if already
               else "the saved plan is stale: the platform changed since it was made")
        raise StalePlan(f"{why}; nothing was applied\n" + "\n".join(line for _, line in stale) + "\nmake a new plan")


def _setting(name: str, value: Any) -> str:
    """``appkey=21345678``, ``appkey=unbound``, ``buyer_self_service=true``."""
    return show({name: value}, key=lambda k: f"appkey={k}", unbound="appkey=unbound")


def check_safe(plan: Plan, *, force: bool) -> None:
    if force:  # from the command line only: a saved plan's own "force" is a record, not a permission
        return
    unsafe = [p for p in plan.unsafe if p.kind == ProblemKind.unsafe]
    if unsafe:
        raise UnsafePlan("refusing to apply: " + unsafe[0].message)


@dataclass(frozen=True)
class ShopOutcome:
    """What applying one shop's changes came to."""

    shop: str
    applied: tuple[Change, ...] = ()
    failed: Change | None = None
    error: str | None = None
    failure: Exception | None = None
    fate: WriteFate | None = None  # what became of a failed write whose answer was lost (it may have landed)
    rolled_back: tuple[Change, ...] = ()
    rollback_errors: tuple[str, ...] = ()
    already: tuple[Change, ...] = ()  # changes the platform already held (a concurrent writer made them)
    unrecorded: bool = False          # the shop failed because a write could not be recorded

    @property
    def ok(self) -> bool:
        return self.failed is None

    @property
    def fatal(self) -> bool:
        """The failure concerns the platform or the app, not this shop: stop starting shops."""
        return isinstance(self.failure, FatalProviderError)


@dataclass
class ApplyResult:
    outcomes: list[ShopOutcome]
    withheld: list[str] = field(default_factory=list)
    not_started: list[str] = field(default_factory=list)  # shops skipped after an interrupt

    @property
    def applied(self) -> int:
        """Changes of shops that were applied completely."""
        return sum(len(o.applied) for o in self.outcomes if o.ok)

    @property
    def ok(self) -> list[ShopOutcome]:
        return [o for o in self.outcomes if o.ok]

    @property
    def fatal(self) -> bool:
        """A failure about the platform or the app stopped the run."""
        return any(o.fatal for o in self.failed)

    @property
    def changed(self) -> int:
        """Changes that stay on the platform: applied ones, and those a failed rollback left."""
        return self.applied + sum(len(o.applied) - len(o.rolled_back) + (o.fate == WriteFate.unsettled)
                                  for o in self.outcomes if not o.ok)

    @property
    def failed(self) -> list[ShopOutcome]:
        return [o for o in self.outcomes if not o.ok]

    @property
    def exit_code(self) -> Exit:
        """0 all applied · 3 partly applied (or a write landed but could not be recorded, and
        was put back) · 1 nothing changed."""
        if not self.failed and not self.withheld and not self.not_started:
            return Exit.ok
        return Exit.partial if self.changed or any(o.unrecorded for o in self.failed) else Exit.error


def _send(provider: Provider, c: Change) -> None:
    if c.action is Action.update:
        provider.set_self_service(c.shop, bool(c.after["buyer_self_service"]), expected=bool(c.before["buyer_self_service"]))
    elif c.action is Action.unbind:
        provider.unbind(c.shop, c.scenario, expected=str(c.before["appkey"]))
    else:
        provider.bind(c.shop, c.scenario, str(c.after["appkey"]), expected=c.before.get("appkey"))


def _write(provider: Provider, c: Change) -> Outcome:
    """One compare-and-set write. A conflict where the platform already holds the change's
    ``after`` (another run, or a person, made the same change) is done: ``already-applied``."""
    try:
        _send(provider, c)
    except ConflictError:
        key, name = _field(c)
        state = provider.read([c.shop]).get(c.shop)
        if isinstance(state, ShopState) and _projection(state, [key])[key] == c.after.get(name):
            return Outcome.already_applied
        raise
    return Outcome.applied


def _undo(c: Change) -> Change:
    action = {Action.bind: Action.unbind, Action.unbind: Action.bind}.get(c.action, c.action)
    return Change(shop=c.shop, scenario=c.scenario, action=action, before=c.after, after=c.before, reason="rollback")


_SCEN_ORDER = {s: i for i, s in enumerate(Scenario)}


def shop_order(changes: Sequence[Change]) -> list[Change]:
    """Binding changes first, in scenario order; then follow-up settings."""
    return sorted(changes, key=lambda c: (c.action is Action.update, _SCEN_ORDER[c.scenario]))


def _describe(e: Exception) -> str:
    """A failure for the summary and the history. Anything that is not one of our errors
    (a bug, a broken database) fails the shop like a platform error would — the shop is
    still rolled back — and its text is masked, since we did not build it."""
    if isinstance(e, ProviderError):
        return str(e)
    _log().debug("unexpected error during apply", exc_info=True)
    return f"unexpected {type(e).__name__}: {mask(str(e))}"


def _settle_uncertain(provider: Provider, c: Change, record: Recorder) -> tuple[WriteFate, str | None]:
    """The failed write may have landed (its answer was lost). Put it back with a compare-and-set
    on its ``after``: a conflict means it had not landed; success means it had, and is undone.
    Returns what became of it, and the rollback error when putting it back failed."""
    undo = _undo(c)
    try:
        _send(provider, undo)
    except ConflictError:
        return WriteFate.not_landed, None
    except Exception as e:
        why = _describe(e)
        _record_quietly(record, change=undo, outcome=Outcome.rollback_failed, error=why)
        return WriteFate.unsettled, f"{c.scenario.value}: may have been changed; putting it back failed: {why}"
    _record_quietly(record, change=undo, outcome=Outcome.rolled_back, error=None)
    return WriteFate.undone, None


def apply_shop(provider: Provider, shop: str, changes: Sequence[Change], record: Recorder,
               journal: Journal | None = None) -> ShopOutcome:
    """Apply one shop's changes in order; on the first failure put back what was done.

    With a ``journal``, the intent is recorded before the first write (a shop whose intent
    cannot be recorded is not written) and the end after the last write or rollback."""
    ordered = shop_order(changes)
    if journal is not None:
        try:
            journal.intent(shop, ordered)
        except Exception as e:
            error = f"could not record the intent to change this shop, so nothing was written: {_describe(e)}"
            return ShopOutcome(shop, failed=ordered[0], error=error, failure=e)
    out = _apply_shop(provider, shop, ordered, record)
    if journal is not None:
        try:
            journal.done(shop, "applied" if out.ok else "failed")
        except Exception as e:  # the shop's rows could not be recorded (they are committed with its end)
            if out.ok and len(out.applied) > len(out.already):
                back = _put_back_unrecorded(provider, out, e, record)
                with contextlib.suppress(Exception):  # the shop is whole again: end its intent if the store lets us
                    journal.done(shop, "failed")
                return back
            # nothing of this run stays on the shop: the open intent makes the next plan name it, and
            # the next apply finds nothing of this run's on the platform to record — a false alarm, never a loss
            _log().warning("shop %s: could not record the end of its changes in the journal", shop, exc_info=True)
    return out


def _put_back_unrecorded(provider: Provider, out: ShopOutcome, failure: Exception, record: Recorder) -> ShopOutcome:
    """A shop applied whole whose history rows could not be committed: a write the history does
    not know of must not stay, so this run's writes are put back (like a failed write's shop)."""
    written = [c for c in out.applied if c not in out.already]
    error = f"the shop's writes could not be recorded in the history ({_describe(failure)}); the shop was put back"
    back = _roll_back(provider, out.shop, written[:-1], list(out.already), written[-1], error, failure, record,
                      unrecorded=True)
    return back


def _apply_shop(provider: Provider, shop: str, ordered: Sequence[Change], record: Recorder) -> ShopOutcome:
    applied: list[Change] = []   # written by this run (what a rollback puts back)
    already: list[Change] = []
    for c in ordered:
        try:
            outcome = _write(provider, c)
        except Exception as e:
            error = _describe(e)
            _record_quietly(record, change=c, outcome=Outcome.failed, error=error)
            return _roll_back(provider, shop, applied, already, c, error, e, record)
        (applied if outcome == Outcome.applied else already).append(c)
        try:
            record(change=c, outcome=outcome, error=None)
        except Exception as e:  # a write the history does not know of must not stay: put the shop back
            error = f"the write could not be recorded in the history ({_describe(e)}); the shop was put back"
            return _roll_back(provider, shop, applied[:-1] if outcome == Outcome.applied else applied, already, c, error, e,
                              record, unrecorded=outcome == Outcome.applied)
    return ShopOutcome(shop, applied=tuple(applied + already), already=tuple(already))


def _record_quietly(record: Recorder, **row: object) -> None:
    """Record a failure or a rollback; when the history cannot take it, the apply still goes on
    (the journal holds the shop's intent, so the next plan names it)."""
    try:
        record(**row)
    except Exception:
        _log().warning("could not record %s", row.get("outcome"), exc_info=True)


def _roll_back(provider: Provider, shop: str, applied: list[Change], already: list[Change], failed: Change, error: str,
               failure: Exception, record: Recorder, *, unrecorded: bool = False) -> ShopOutcome:
    """Put back, in reverse order, what this run changed of a shop whose change ``failed``
    (with ``unrecorded``: ``failed`` itself landed but could not be recorded; it is put back first).
    Changes the platform already held are not this run's writes and stay."""
    fate: WriteFate | None = None
    rollback_errors: list[str] = []
    if getattr(failure, "ambiguous", False):
        fate, why = _settle_uncertain(provider, failed, record)
        rollback_errors += [why] if why else []
    rolled_back: list[Change] = []
    for c in reversed([*applied, failed] if unrecorded else applied):
        undo = _undo(c)
        try:
            _send(provider, undo)
        except Exception as e:
            why = _describe(e)
            rollback_errors.append(f"{c.scenario.value}: {why}")
            _record_quietly(record, change=undo, outcome=Outcome.rollback_failed, error=why)
            continue
        rolled_back.append(c)
        _record_quietly(record, change=undo, outcome=Outcome.rolled_back, error=None)
    return ShopOutcome(shop, applied=tuple(applied) + ((failed,) if unrecorded else ()), failed=failed, error=error,
                       failure=failure, fate=fate, rolled_back=tuple(rolled_back), rollback_errors=tuple(rollback_errors),
                       already=tuple(already), unrecorded=unrecorded)


def apply_plan(plan: Plan, provider: Provider, *, record: Recorder | None = None, progress: Progress | None = None,
               parallelism: int = 1, stop: Stop | None = None, journal: Journal | None = None,
               first: Iterable[str] = ()) -> ApplyResult:
    """Write the plan; see the module doc for ordering, rollback and isolation.

    ``stop`` (set on Ctrl-C or SIGTERM, or when the run lost its locks) is checked before each
    shop: shops already under way finish — all or nothing each — and the rest are not started.
    ``first``: shops to start before the others (those an interrupted run left half-changed)."""
    rec: Recorder = record or (lambda **_: None)
    halt = threading.Event()   # a fatal platform error: every other shop would fail the same way
    groups = plan.by_shop()
    early = set(first)
    shops = sorted(groups, key=lambda s: (s not in early, s))
    total = len(shops)
    done = 0

    def one(shop: str) -> ShopOutcome | None:
        if halt.is_set() or (stop is not None and stop.is_set()):
            return None
        outcome = apply_shop(provider, shop, groups[shop], rec, journal)
        if outcome.fatal:
            halt.set()
        return outcome

    outcomes: list[ShopOutcome] = []
    not_started: list[str] = []

    def collect(shop: str, o: ShopOutcome | None) -> None:
        nonlocal done
        if o is None:
            not_started.append(shop)
            return
        outcomes.append(o)
        done += 1
        if progress:
            progress(done, total, shop)

    if parallelism <= 1 or total <= 1:
        for shop in shops:
            collect(shop, one(shop))
    else:
        from concurrent.futures import ThreadPoolExecutor  # (only when applying in parallel)

        with ThreadPoolExecutor(max_workers=parallelism) as pool:
            for shop, o in zip(shops, pool.map(one, shops), strict=True):
                collect(shop, o)
    return ApplyResult(outcomes=outcomes, withheld=plan.withheld, not_started=not_started)
