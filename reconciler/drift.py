"""Drift: where the platform differs from the configuration, what it holds that the
configuration does not manage, and which bindings cannot work.

``compute_drift`` is pure, like ``plan.compute_plan``, and reuses the plan's diff rather than
a second one: ``diff_shop`` without app checks gives exactly the differences (a rotate is a
binding that differs, a bind one that is missing, an unbind one the config wants unbound,
an update a follow-up setting) and the unmanaged bindings. Whether the bindings the
platform *actually* holds can work is the plan's preflight again, run over the shop as
found (each bound appkey as if it were the desired one), so "not integrated", "does not
sync order statuses" and "not whitelisted" read the same in a plan and in an audit.

Where the history knows when the tool last wrote a binding, a finding says since when
it differs: the platform held the written value then and was changed afterwards.

``audit`` is the I/O around it (reads in chunks, so a progress bar can follow).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Protocol

from .errors import ProviderError
from .model import AppCheck, Desired, DesiredBinding, DesiredShop, Scenario, ShopState
from .plan import Change, denied, diff_shop, needed_checks
from .vocab import BROKEN_KINDS, CATEGORIES, PERMISSION_HINT, Action, Category, Exit, FindingKind, Outcome, ProblemKind, Severity, show

if TYPE_CHECKING:  # types only: at run time this module depends on plan, model and vocab alone
    from .history import Entry
    from .providers.base import Provider
    from .shard import Shard


class _Said(Protocol):
    def message(self) -> str: ...


class Trail(Protocol):
    """What the audit reads from the state store: the tool's last writes, and the shops an
    interrupted apply may have left half-changed."""

    def last_written(self, shops: Sequence[str]) -> Mapping[tuple[str, str, str], Entry]: ...

    def interrupted_shops(self, shops: Sequence[str] | None = None) -> Mapping[str, _Said]: ...

FORMAT_VERSION = 1
Progress = Callable[[int, int, str], None]

_KIND = {Action.rotate: FindingKind.differs, Action.bind: FindingKind.missing, Action.unbind: FindingKind.not_unbound}
_CAT_ORDER = {c: i for i, c in enumerate(CATEGORIES)}


@dataclass(frozen=True)
class Finding:
    """One thing the audit reports. ``expected`` is the config's value, ``actual`` the platform's;
    ``since``: the platform differs from what the tool last wrote at that time."""

    shop: str | None
    scenario: Scenario | None
    category: Category
    kind: FindingKind | ProblemKind
    message: str
    expected: Mapping[str, Any] | None = None
    actual: Mapping[str, Any] | None = None
    source: str | None = None
    since: str | None = None
    last_written: Mapping[str, Any] | None = None
    # cannot-apply: the preflight problem behind it and the config's appkey (for grouping by cause)
    cause: tuple[ProblemKind, str | None] | None = field(default=None, compare=False)
    waiver: Mapping[str, Any] | None = None   # the current waiver that acknowledges it (waivers.yaml)

    @property
    def waived(self) -> bool:
        return self.waiver is not None

    def to_data(self) -> dict[str, Any]:
        return {
            "shop": self.shop, "scenario": self.scenario.value if self.scenario else None,
            "category": self.category, "kind": self.kind, "message": self.message,
            "expected": dict(self.expected) if self.expected is not None else None,
            "actual": dict(self.actual) if self.actual is not None else None,
            "source": self.source, "since": self.since,
            "last_written": dict(self.last_written) if self.last_written is not None else None,
            "waived": self.waived, "waiver": dict(self.waiver) if self.waiver is not None else None,
        }


@dataclass(frozen=True)
class Cause:
    """Findings that share one cause ("ERP 旺店通 (12345679) no longer integrates modify_address"),
    and the shops they concern: a report says these first, then shop by shop."""

    category: Category
    kind: str
    scenario: Scenario | None
    text: str
    shops: tuple[str, ...]

    def to_data(self) -> dict[str, Any]:
        return {"category": self.category, "kind": self.kind, "scenario": self.scenario.value if self.scenario else None,
                "cause": self.text, "count": len(self.shops), "shops": list(self.shops)}


@dataclass(frozen=True)
class DriftReport:
    shops: tuple[str, ...]                      # the managed shops audited
    findings: tuple[Finding, ...]
    shop_names: Mapping[str, str | None]
    shard: str | None = None
    erp_names: Mapping[str, str] = field(default_factory=dict)  # appkey → ERP name, for people
    warnings: tuple[str, ...] = ()   # about the audit, not the platform (a waiver that matched nothing)

    @property
    def active(self) -> list[Finding]:
        """The findings no current waiver acknowledges: they decide the exit code."""
        return [f for f in self.findings if not f.waived]

    @property
    def exit_code(self) -> Exit:
        """0 nothing found, 2 drift, 1 the audit is incomplete (a read or check failed). Waived
        findings are shown but count for neither."""
        active = self.active
        if any(f.category == Category.error for f in active):
            return Exit.error
        return Exit.pending if active else Exit.ok

    @property
    def status(self) -> str:
        return {Exit.ok: "clean", Exit.error: "error", Exit.pending: "drift"}[self.exit_code]

    def without(self, categories: Iterable[str]) -> DriftReport:
        """The report with the findings of ``categories`` left out (``--ignore``)."""
        leave = set(categories)
        return replace(self, findings=tuple(f for f in self.findings if f.category not in leave))

    def counts(self) -> dict[str, int]:
        """Active findings per category (waived ones are counted apart: ``waived``)."""
        out: dict[str, int] = {c: 0 for c in CATEGORIES}
        for f in self.active:
            out[f.category] += 1
        return out

    @property
    def waived(self) -> int:
        return sum(1 for f in self.findings if f.waived)

    def causes(self) -> list[Cause]:
        """The active findings grouped by cause, the most widespread first."""
        groups: dict[tuple[int, str, str, str], tuple[Finding, list[str]]] = {}
        for f in self.active:
            text = cause_of(f, self.erp_names)
            key = (_CAT_ORDER[f.category], f.kind, f.scenario.value if f.scenario else "", text)
            groups.setdefault(key, (f, []))[1].append(f.shop or "")
        out = [Cause(f.category, f.kind, f.scenario, key[3], tuple(dict.fromkeys(s for s in shops if s)))
               for key, (f, shops) in groups.items()]
        out.sort(key=lambda c: (-len(c.shops), _CAT_ORDER[c.category], c.kind, c.scenario.value if c.scenario else "", c.text))
        return out

    def by_shop(self) -> dict[str, list[Finding]]:
        """Findings of managed shops, by shop, in shop order."""
        out: dict[str, list[Finding]] = {s: [] for s in self.shops}
        for f in self.findings:
            if f.shop in out:
                out[f.shop].append(f)
        return out

    def unknown_shops(self) -> list[str]:
        return [f.shop for f in self.findings if f.category == Category.unknown_shop and f.shop]

    def general(self) -> list[Finding]:
        """Findings about no managed shop (errors of the audit itself)."""
        managed = set(self.shops)
        return [f for f in self.findings if f.category != Category.unknown_shop and f.shop not in managed]

    def to_data(self) -> dict[str, Any]:
        per = self.by_shop()
        counts = self.counts()
        return {
            "format_version": FORMAT_VERSION,
            "status": self.status,
            "shard": self.shard,
            "summary": {
                "shops": len(self.shops),
                "shops_with_findings": sum(1 for fs in per.values() if any(not f.waived for f in fs)),
                "drift": counts[Category.drift], "unmanaged": counts[Category.unmanaged], "broken": counts[Category.broken],
                "unknown_shops": counts[Category.unknown_shop], "errors": counts[Category.error],
                "waived": self.waived,
            },
            "shops": [{"id": s, "name": self.shop_names.get(s), "status": _shop_status(fs),
                       "findings": sum(1 for f in fs if not f.waived), "waived": sum(1 for f in fs if f.waived)}
                      for s, fs in per.items()],
            "causes": [c.to_data() for c in self.causes()],
            "findings": [f.to_data() for f in self.findings],
            "warnings": list(self.warnings),
        }


def _shop_status(findings: Sequence[Finding]) -> str:
    active = [f for f in findings if not f.waived]
    return "error" if any(f.category == Category.error for f in active) else ("drift" if active else "clean")


_BROKEN_CAUSE = {
    ProblemKind.not_integrated: "ERP {erp} no longer integrates {sc} through Qimen",
    ProblemKind.appkey_not_found: "appkey {erp} ({sc}) no longer exists on the platform",
    ProblemKind.detail_not_whitelisted: "ERP {erp} is not whitelisted for the ERP详情 button ({sc})",
    ProblemKind.status_not_synced: "ERP {erp} does not sync order statuses",
    ProblemKind.check_failed: "appkey {erp} ({sc}) could not be checked",
}
_CANNOT_APPLY = {
    ProblemKind.not_integrated: "the config's ERP {erp} has not integrated {sc} through Qimen: it cannot be applied",
    ProblemKind.appkey_not_found: "the config's appkey {erp} ({sc}) does not exist on the platform: it cannot be applied",
}
_GENERAL = {
    ProblemKind.read_failed: "the shop could not be read",
    ProblemKind.interrupted: "an interrupted apply may have left the shop half-changed",
    FindingKind.unknown_shop: "the platform knows the shop; no shops/**/*.yaml declares it",
    FindingKind.self_service_off: "buyer self-service address change is off; the config wants it on",
    FindingKind.self_service_on: "buyer self-service address change is on; the config wants it off",
}


def cause_of(f: Finding, names: Mapping[str, str]) -> str:
    """What a finding has in common with others of its cause (no shop-specific text)."""
    sc = f.scenario.value if f.scenario else "(whole shop)"
    actual, expected = show(f.actual, names), show(f.expected, names)
    if f.kind == FindingKind.cannot_apply and f.cause is not None and f.cause[0] in _CANNOT_APPLY:
        return _CANNOT_APPLY[f.cause[0]].format(erp=show({"appkey": f.cause[1]}, names), sc=sc)
    if f.kind in _BROKEN_CAUSE:
        return _BROKEN_CAUSE[f.kind].format(erp=actual, sc=sc)  # type: ignore[index]
    if f.kind == FindingKind.differs:
        return f"{sc} bound to {actual}; the config wants {expected}"
    if f.kind == FindingKind.missing:
        return f"{sc} not bound; the config wants {expected}"
    if f.kind == FindingKind.not_unbound:
        return f"{sc} bound to {actual}; the config wants it unbound"
    if f.kind == ProblemKind.unmanaged:
        return f"{sc} bound to {actual}, not in the config"
    if f.kind in _GENERAL:
        return _GENERAL[f.kind]
    return f"{f.kind}: {f.message}" if f.shop is None else str(f.kind)


# --------------------------------------------------------------------------- pure




def _history(c: Change, last: Mapping[tuple[str, str, str], Entry]) -> tuple[str | None, dict[str, Any] | None]:
    entry = last.get((c.shop, c.scenario.value, "update" if c.action is Action.update else "binding"))
    if entry is None:
        return None, None
    written = {"time": entry.time, "actor": entry.actor, "after": entry.after, "outcome": entry.outcome}
    # The tool wrote a value the platform no longer holds: changed outside the tool since then.
    since = entry.time if entry.after != dict(c.before) else None
    return since, written


def _from_change(c: Change, names: Mapping[str, str], last: Mapping[tuple[str, str, str], Entry]) -> Finding:
    since, written = _history(c, last)
    actual, expected = show(c.before, names), show(c.after, names)
    kind: FindingKind
    if c.action is Action.update:
        on = bool(c.after.get("buyer_self_service"))
        kind = FindingKind.self_service_off if on else FindingKind.self_service_on
        category = Category.broken if on else Category.drift
        msg = ("buyer self-service address change is off; the config wants it on"
               " (and the automation task 自动核单/自助核单 configured)" if on
               else "buyer self-service address change is on; the config wants it off")
    else:
        kind, category = _KIND[c.action], Category.drift
        msg = {Action.rotate: f"bound to {actual}; the config wants {expected}",
               Action.bind: f"not bound; the config wants {expected}",
               Action.unbind: f"bound to {actual}; the config wants it unbound"}[c.action]
    if since:
        msg += f"; changed outside reconciler since {since} (last set by {written['actor'] if written else '?'})"
    elif written and written["outcome"] == Outcome.rolled_back:
        msg += f"; reconciler put it back at {written['time']} after a failed apply of its shop"
    elif written:
        msg += f"; the platform still holds what reconciler set at {written['time']}: the config changed since"
    return Finding(shop=c.shop, scenario=c.scenario, category=category, kind=kind, message=msg,
                   expected=dict(c.after), actual=dict(c.before), source=c.source, since=since, last_written=written)


def _as_found(shop: DesiredShop, state: ShopState) -> DesiredShop:
    """The shop as the platform holds it, phrased as a desired shop, so the plan's preflight
    judges the bindings that exist (keeping what the config expects of them)."""
    bindings: dict[Scenario, DesiredBinding] = {}
    for sc, b in state.bindings.items():
        want = shop.bindings.get(sc)
        bindings[sc] = DesiredBinding(scenario=sc, appkey=b.appkey, source=want.source if want else shop.source,
                                      erp_detail_button=want.erp_detail_button if want else None)
    return replace(shop, bindings=bindings, protect=False)


def found_checks(actual: Mapping[str, ShopState | ProviderError]) -> set[tuple[str, Scenario]]:
    """The (appkey, scenario) pairs the audit asks the platform about: every actual binding."""
    return {(b.appkey, sc) for s in actual.values() if isinstance(s, ShopState) for sc, b in s.bindings.items()}


def drift_shop(desired: DesiredShop, state: ShopState, checks: Mapping[tuple[str, Scenario], AppCheck | ProviderError],
               names: Mapping[str, str], last: Mapping[tuple[str, str, str], Entry]) -> list[Finding]:
    # Without checks, and forced, diff_shop withholds nothing: every difference is a change.
    changes, problems = diff_shop(desired, state, {}, names, force=True)
    out = [_from_change(c, names, last) for c in changes]
    out += [Finding(shop=p.shop, scenario=p.scenario, category=Category.unmanaged, kind=ProblemKind.unmanaged, message=p.message,
                    actual={"appkey": state.appkey(p.scenario)} if p.scenario else None)
            for p in problems if p.kind == ProblemKind.unmanaged]
    # a difference the config asks for but the platform would refuse: it can never be applied
    _, wanted = diff_shop(desired, state, checks, names, force=True)
    out += [Finding(shop=p.shop, scenario=p.scenario, category=Category.broken, kind=FindingKind.cannot_apply,
                    message=f"the config's binding cannot be applied: {p.message}",
                    actual={"appkey": state.appkey(p.scenario)} if p.scenario else None,
                    source=str(desired.bindings[p.scenario].source) if p.scenario in desired.bindings else None,
                    cause=(p.kind, desired.bindings[p.scenario].appkey if p.scenario in desired.bindings else None))
            for p in wanted if p.severity == Severity.error
            and p.kind in (ProblemKind.appkey_not_found, ProblemKind.not_integrated)]
    # the config's (differing) appkey could not be checked: whether it can be applied is unknown, the audit incomplete
    out += [Finding(shop=p.shop, scenario=p.scenario, category=Category.error, kind=ProblemKind.check_failed,
                    message=f"the config's binding could not be checked: {p.message}",
                    actual={"appkey": state.appkey(p.scenario)} if p.scenario else None,
                    source=str(desired.bindings[p.scenario].source) if p.scenario in desired.bindings else None)
            for p in wanted if p.severity == Severity.error and p.kind == ProblemKind.check_failed]
    _, found = diff_shop(_as_found(desired, state), state, checks, names, force=True)
    for p in found:
        if p.kind in BROKEN_KINDS or p.kind == ProblemKind.check_failed:
            want = desired.bindings.get(p.scenario) if p.scenario else None
            out.append(Finding(shop=p.shop, scenario=p.scenario, kind=p.kind, message=p.message,
                               category=Category.broken if p.kind in BROKEN_KINDS else Category.error,
                               actual={"appkey": state.appkey(p.scenario)} if p.scenario else None,
                               source=str(want.source) if want else None))
    return out


def _order(f: Finding) -> tuple[str, str, int, str, str]:
    return (f.shop or "", f.scenario.value if f.scenario else "", _CAT_ORDER[f.category], f.kind, f.message)


def compute_drift(
    desired: Sequence[DesiredShop],
    actual: Mapping[str, ShopState | ProviderError],
    checks: Mapping[tuple[str, Scenario], AppCheck | ProviderError],
    names: Mapping[str, str],
    *,
    unknown_shops: Sequence[str] = (),
    last_written: Mapping[tuple[str, str, str], Entry] | None = None,
    errors: Sequence[str] = (),
    shard: str | None = None,
    interrupted: Mapping[str, str] | None = None,
    auth: Mapping[str, str] | None = None,
) -> DriftReport:
    """The audit of ``desired`` shops (``actual`` must hold each), plus shops the platform
    knows that the config does not (``unknown_shops``) and errors of the audit itself.
    ``auth``: shops whose authorization does not work (shop → why): not audited, an error."""
    last = last_written or {}
    findings: list[Finding] = []
    for shop in desired:
        if interrupted and shop.id in interrupted:
            findings.append(Finding(shop=shop.id, scenario=None, category=Category.drift, kind=ProblemKind.interrupted,
                                    message=interrupted[shop.id]))
        if auth and shop.id in auth:
            findings.append(Finding(shop=shop.id, scenario=None, category=Category.error, kind=ProblemKind.auth_expired,
                                    message=auth[shop.id], source=str(shop.source)))
            continue
        state = actual[shop.id]
        if isinstance(state, ProviderError):
            findings.append(Finding(shop=shop.id, scenario=None, category=Category.error, kind=ProblemKind.read_failed,
                                    message=f"cannot read the shop: {state}" + (f"; {PERMISSION_HINT}" if denied(state) else ""),
                                    source=str(shop.source)))
            continue
        findings += drift_shop(shop, state, checks, names, last)
    findings += [Finding(shop=s, scenario=None, category=Category.unknown_shop, kind=FindingKind.unknown_shop,
                         message="the platform knows this shop but no shops/*.yaml declares it;"
                                 " onboard it with: reconciler import --shop " + s)
                 for s in unknown_shops]
    findings += [Finding(shop=None, scenario=None, category=Category.error, kind=FindingKind.audit_failed, message=e)
                 for e in errors]
    findings.sort(key=_order)
    return DriftReport(shops=tuple(s.id for s in desired), findings=tuple(findings),
                       shop_names={s.id: s.name for s in desired}, shard=shard, erp_names=dict(names))


# --------------------------------------------------------------------------- I/O


def read_states(provider: Provider, shop_ids: Sequence[str], *, progress: Progress | None = None,
                chunk: int = 200) -> dict[str, ShopState | ProviderError]:
    """``provider.read`` in chunks, reporting progress after each."""
    ids = list(shop_ids)
    out: dict[str, ShopState | ProviderError] = {}
    for i in range(0, len(ids), chunk):
        part = ids[i:i + chunk]
        out.update(provider.read(part))
        if progress:
            progress(min(i + chunk, len(ids)), len(ids), part[-1])
    return out


def audit(desired: Desired, provider: Provider, *, history: Trail | None = None, shard: Shard | None = None,
          progress: Progress | None = None, auth: Mapping[str, str] | None = None) -> DriftReport:
    """Read the platform and audit the desired shops.

    ``desired.configured``: every shop id of the whole configuration; when given, the
    platform's other shops (those of ``shard``, if any) are reported as unknown.
    """
    ids = [s.id for s in desired.shops]
    configured = desired.configured
    actual = read_states(provider, [s for s in ids if s not in (auth or {})], progress=progress)
    actual.update({s: ProviderError("not read: its authorization does not work") for s in ids if s in (auth or {})})
    checks = provider.check_apps(found_checks(actual) | needed_checks(desired.shops))
    unknown: list[str] = []
    errors: list[str] = []
    if configured is not None:
        try:
            listed = provider.list_shops()
        except ProviderError as e:
            errors.append(f"cannot list the platform's shops (unknown shops not audited): {e}")
        else:
            unknown = [s for s in listed if s not in configured and (shard is None or shard.holds(s))]
    last = history.last_written(ids) if history is not None else {}
    interrupted = {s: i.message() for s, i in history.interrupted_shops(ids).items()} if history is not None else {}
    return compute_drift(desired.shops, actual, checks, desired.erp_names, unknown_shops=unknown,
                         last_written=last, errors=errors, shard=str(shard) if shard else None, interrupted=interrupted,
                         auth=auth)
