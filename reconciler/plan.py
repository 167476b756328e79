"""Pure planning: desired × actual → a Plan of Changes, preflight Problems and a summary.

Nothing here does I/O. ``compute_plan`` takes the resolved config, the state the provider
read and the provider's answers about appkeys, and returns a value that prints the same
byte for byte for the same inputs. Safety rules (protected shops, the share of disruptive
changes) are decided here too, so a plan shows what ``apply`` would refuse.

A shop with any error problem gets no changes at all ("withheld"): applying part of a
shop — say, rotating two scenarios to a new ERP whose third integration is missing —
would leave it split between two ERPs, which is the one outcome rotation must never have.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from .errors import ProviderError
from .model import AppCheck, BindingSet, DesiredBinding, DesiredShop, Scenario, ShopState, Source, binding_set
from .settings import SafetySettings
from .vocab import DISRUPTIVE, PERMISSION_HINT, SAFETY_KINDS, SEVERITY_ORDER, Action, ProblemKind, Severity, show, show_appkey

FORMAT_VERSION = 1


@dataclass(frozen=True)
class Change:
    shop: str
    scenario: Scenario
    action: Action
    before: Mapping[str, Any]
    after: Mapping[str, Any]
    reason: str = ""
    source: str | None = None
    revision: int | None = None  # the platform's revision of the binding the plan saw (pins ``before``)

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.shop, self.scenario.value, self.action.value)

    def to_data(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "shop": self.shop, "scenario": self.scenario.value, "action": self.action.value,
            "before": dict(self.before), "after": dict(self.after), "reason": self.reason,
        }
        if self.source:
            d["source"] = self.source
        if self.revision is not None:
            d["revision"] = self.revision
        return d


@dataclass(frozen=True)
class Problem:
    shop: str | None
    scenario: Scenario | None
    severity: Severity
    kind: ProblemKind
    message: str

    def to_data(self) -> dict[str, Any]:
        return {"shop": self.shop, "scenario": self.scenario.value if self.scenario else None,
                "severity": self.severity, "kind": self.kind, "message": self.message}


@dataclass(frozen=True)
class Names:
    """The names a plan shows beside ids: ERP names by appkey, shop names by shop id.

    They travel with the plan (and its saved file, under the checksum), so a saved plan
    reads the same as the fresh one. Only the names the plan's changes and problems need."""

    erps: Mapping[str, str] = field(default_factory=dict)
    shops: Mapping[str, str | None] = field(default_factory=dict)

    def to_data(self) -> dict[str, Any]:
        return {"erps": dict(sorted(self.erps.items())),
                "shops": {k: v for k, v in sorted(self.shops.items()) if v}}

    def shop(self, shop_id: str) -> str | None:
        return self.shops.get(shop_id)


def names_for(changes: Sequence[Change], problems: Sequence[Problem], erp_names: Mapping[str, str],
              shop_names: Mapping[str, str | None]) -> Names:
    """The subset of names a plan of these changes and problems shows."""
    keys = {str(v["appkey"]) for c in changes for v in (c.before, c.after) if v.get("appkey") is not None}
    shops = {c.shop for c in changes} | {p.shop for p in problems if p.shop}
    return Names(erps={k: erp_names[k] for k in keys if k in erp_names},
                 shops={s: shop_names[s] for s in shops if shop_names.get(s)})


@dataclass(frozen=True)
class Plan:
    changes: tuple[Change, ...]
    problems: tuple[Problem, ...] = ()
    managed: int = 0
    force: bool = False
    shops: tuple[str, ...] = ()
    names: Names = field(default_factory=Names)
    # A saved plan's provenance (``stamped``), under the checksum; None on a plan only printed.
    notes: tuple[str, ...] = ()                # what people must do after applying (the platform's follow-up settings)
    created_at: str | None = None              # UTC ISO-8601 to the second
    tool_version: str | None = None            # the reconciler that made it
    target: Mapping[str, str] | None = None    # the platform it was made for (``reconciler.target``)

    def stamped(self, *, created_at: str, tool_version: str, target: Mapping[str, str]) -> Plan:
        """The plan as it is saved: when, by which version and for which platform it was made."""
        return replace(self, created_at=created_at, tool_version=tool_version, target=dict(target))

    @property
    def summary(self) -> dict[str, int]:
        counts = {a.value: 0 for a in Action}
        for c in self.changes:
            counts[c.action.value] += 1
        return counts

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == Severity.error]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == Severity.warning]

    @property
    def unsafe(self) -> list[Problem]:
        return [p for p in self.problems if p.kind in SAFETY_KINDS and p.severity == Severity.error]

    @property
    def withheld(self) -> list[str]:
        """Shops whose changes are held back by an error."""
        return sorted({p.shop for p in self.problems if p.severity == Severity.error and p.shop})

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "format_version": FORMAT_VERSION,
            "changes": [c.to_data() for c in self.changes],
            "problems": [p.to_data() for p in self.problems],
            "summary": self.summary,
            "managed": self.managed,
            "force": self.force,
            "shops": list(self.shops),
        }
        if self.names.erps or self.names.shops:
            body["names"] = self.names.to_data()
        if self.notes:
            body["notes"] = list(self.notes)
        if self.created_at is not None:
            body["created_at"] = self.created_at
        if self.tool_version is not None:
            body["tool_version"] = self.tool_version
        if self.target is not None:
            body["target"] = dict(sorted(self.target.items()))
        return body

    @property
    def checksum(self) -> str:
        return checksum(self.body())

    def to_data(self) -> dict[str, Any]:
        return {**self.body(), "checksum": self.checksum}

    def to_json(self) -> str:
        return json.dumps(self.to_data(), ensure_ascii=False, indent=2, sort_keys=True) + "\n"

    def by_shop(self) -> dict[str, list[Change]]:
        out: dict[str, list[Change]] = {}
        for c in self.changes:
            out.setdefault(c.shop, []).append(c)
        return out


def checksum(body: Mapping[str, Any]) -> str:
    text = json.dumps(body, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


# --------------------------------------------------------------------------- the diff


def _reason(action: Action, want: DesiredBinding, current: str | None, names: Mapping[str, str], shop: Source) -> str:
    """Why a change is planned: what the config says and where. Said neutrally — whether the
    config changed or someone changed the platform, the plan cannot tell (drift can)."""
    src = want.source.describe(shop)
    if action is Action.unbind:
        return f"config says state: unbound, {src}"
    via = f"erp {want.erp}" if want.erp else f"appkey {want.appkey}"
    if action is Action.bind:
        return f"config says {via}, {src}"
    return f"config says {via}, {src}; the platform has {names.get(current or '', current)}"


def _preflight(shop: str, want: DesiredBinding, check: AppCheck | ProviderError | None, *,
               changing: bool, names: Mapping[str, str]) -> list[Problem]:
    out: list[Problem] = []
    sc = want.scenario
    if want.appkey is None or check is None:
        return out
    label = show_appkey(want.appkey, names)
    sev = Severity.error if changing else Severity.warning
    if isinstance(check, ProviderError):
        out.append(Problem(shop, sc, sev, ProblemKind.check_failed, f"cannot check appkey {label}: {check}"))
        return out
    if not check.exists:
        out.append(Problem(shop, sc, sev, ProblemKind.appkey_not_found,
                           f"appkey {label} does not exist on the platform; ask the ERP for its appkey"))
    elif not check.integrated:
        out.append(Problem(shop, sc, sev, ProblemKind.not_integrated,
                           f"ERP {label} has not integrated {sc.value} through Qimen; only the ERP can fix this"))
    if sc is Scenario.order_status and check.exists:
        if want.erp_detail_button and not check.detail_whitelisted:
            out.append(Problem(shop, sc, Severity.warning, ProblemKind.detail_not_whitelisted,
                               f"the ERP详情 (ERP detail) button is whitelist-only and ERP {label} is not whitelisted;"
                               " the ERP must apply to the platform"))
        if check.integrated and not check.syncs_order_status:
            out.append(Problem(shop, sc, Severity.warning, ProblemKind.status_not_synced,
                               f"ERP {label} does not sync order statuses: the binding will show no status"))
    return out


def _clean(check: AppCheck | ProviderError, want: DesiredBinding) -> bool:
    """Whether the preflight has nothing to say about ``want`` (most bindings of a large
    plan: the message texts are then never built)."""
    return _clean_for(check, want.scenario, want.erp_detail_button)


def _clean_for(check: AppCheck | ProviderError, scenario: Scenario, erp_detail_button: bool | None) -> bool:
    return (type(check) is AppCheck and check.exists and check.integrated
            and (scenario is not Scenario.order_status
                 or (check.syncs_order_status and (check.detail_whitelisted or not erp_detail_button))))


# What a shop of a binding set must find on the platform for ``diff_shop`` to have nothing to
# say: each managed scenario's (scenario, appkey, buyer_self_service), or None when the
# preflight has something to say about one of the set's bindings (then every shop is diffed).
_Expected = tuple[tuple[Scenario, "str | None", "bool | None"], ...] | None


def _expected(bset: BindingSet, checks: Mapping[tuple[str, Scenario], AppCheck | ProviderError]) -> _Expected:
    for sc, appkey, _, _, button, _, _ in bset.items:
        check = checks.get((appkey, sc)) if appkey else None
        if check is not None and not _clean_for(check, sc, button):
            return None
    return tuple((sc, appkey, bss) for sc, appkey, _, bss, _, _, _ in bset.items)


def _unchanged(expected: tuple[tuple[Scenario, str | None, bool | None], ...], scenarios: frozenset[Scenario],
               state: ShopState) -> bool:
    """Whether ``state`` is what a shop expecting this already has: ``diff_shop`` would find no
    change and no problem (tests/test_plan_fastpath.py holds the two to each other)."""
    bindings = state.bindings
    if not bindings.keys() <= scenarios:
        return False   # an unmanaged binding: a warning
    for sc, appkey, bss in expected:
        bound = bindings.get(sc)
        if (bound.appkey if bound is not None else None) != appkey or (bss is not None and bss != state.buyer_self_service):
            return False
    return True


def diff_shop(
    desired: DesiredShop,
    state: ShopState,
    checks: Mapping[tuple[str, Scenario], AppCheck | ProviderError],
    names: Mapping[str, str],
    *,
    force: bool = False,
) -> tuple[list[Change], list[Problem]]:
    """The changes and problems of one shop. Errors withhold every change of the shop."""
    sid = desired.id
    changes: list[Change] = []
    problems: list[Problem] = []
    bindings = state.bindings
    for sc, want in desired.bindings.items():
        bound = bindings.get(sc)
        current = bound.appkey if bound is not None else None
        action: Action | None = None
        if want.appkey != current:
            action = Action.bind if current is None else (Action.unbind if want.appkey is None else Action.rotate)
            changes.append(Change(
                shop=sid, scenario=sc, action=action, before={"appkey": current}, after={"appkey": want.appkey},
                reason=_reason(action, want, current, names, desired.source), source=str(want.source),
                revision=bound.revision if bound is not None and bound.revision else None,
            ))
        check = checks.get((want.appkey, sc)) if want.appkey else None
        if check is not None and not _clean(check, want):
            problems += _preflight(sid, want, check, changing=action is not None, names=names)
        if want.buyer_self_service is not None and want.buyer_self_service != state.buyer_self_service:
            where = want.buyer_self_service_source or want.source
            changes.append(Change(
                shop=sid, scenario=sc, action=Action.update,
                before={"buyer_self_service": state.buyer_self_service},
                after={"buyer_self_service": want.buyer_self_service},
                reason=f"config says buyer_self_service: {str(want.buyer_self_service).lower()}, {where.describe(desired.source)}"
                       + (" (also configure 自动核单/自助核单 in the automation tasks)" if want.buyer_self_service else ""),
                source=str(where),
            ))
    if not bindings.keys() <= desired.bindings.keys():   # (the set comparison: most shops bind only what they manage)
        for sc, b in bindings.items():
            if sc not in desired.bindings:
                problems.append(Problem(sid, sc, Severity.warning, ProblemKind.unmanaged,
                                        f"{sc.value} is bound to {show_appkey(b.appkey, names)} but not in the config; left alone"))
    if not changes:
        return changes, problems   # (nothing to protect or withhold)
    disruptive = [c for c in changes if c.action in DISRUPTIVE]
    if desired.protect and disruptive:
        what = ", ".join(f"{c.action.value} {c.scenario.value}" for c in sorted(disruptive, key=lambda c: c.key))
        if force:
            problems.append(Problem(sid, None, Severity.warning, ProblemKind.protected, f"protected shop changed under --force: {what}"))
        else:
            said = (desired.protect_source or desired.source).describe(desired.source)
            problems.append(Problem(sid, None, Severity.error, ProblemKind.protected,
                                    f"shop is protected (protect: true, {said}); it would {what}; use --force"))
    if changes and any(p.severity == Severity.error for p in problems):
        what = "; ".join(f"{c.action.value} {c.scenario.value} {show(c.before, names)} → {show(c.after, names)}"
                         for c in sorted(changes, key=lambda c: c.key))
        problems.append(Problem(sid, None, Severity.info, ProblemKind.withheld,
                                f"{len(changes)} change(s) of this shop withheld until the errors are fixed: {what}"))
        changes = []
    return changes, problems


def compute_plan(
    desired: Sequence[DesiredShop],
    actual: Mapping[str, ShopState | ProviderError],
    checks: Mapping[tuple[str, Scenario], AppCheck | ProviderError],
    names: Mapping[str, str],
    *,
    safety: SafetySettings | None = None,
    force: bool = False,
    managed_total: int | None = None,
    share_of_total: bool = False,
    shop_names: Mapping[str, str | None] | None = None,
    interrupted: Mapping[str, str] | None = None,
    auth: Mapping[str, tuple[ProblemKind, Severity, str]] | None = None,
) -> Plan:
    """The plan for ``desired`` shops; ``actual`` must hold every one of them.

    Safety: ``managed_total`` (every managed binding of the configuration) decides whether
    the threshold applies at all (``min_managed``), so a small ``--shop``/``--shard``
    selection cannot slip under it. The share is measured over the planned shops — a shard
    is a fair sample of the agency — or, with ``share_of_total`` (a hand-picked ``--shop``
    selection, which is no sample), over the whole configuration. ``interrupted``: shops a
    killed apply may have left half-changed (shop → what happened), named as warnings.
    ``auth``: shops whose authorization needs attention (shop → kind, severity, message):
    an error withholds the shop unread (its token does not work), a warning is said."""
    safety = safety or SafetySettings()
    changes: list[Change] = []
    problems: list[Problem] = []
    managed = 0
    expected: dict[BindingSet, _Expected] = {}   # a shop of the parse cache is compared through its set
    for shop in desired:
        bset = binding_set(shop)
        managed += bset.count if bset is not None else len(shop.bindings)
        if interrupted and shop.id in interrupted:
            problems.append(Problem(shop.id, None, Severity.warning, ProblemKind.interrupted, interrupted[shop.id]))
        if auth and shop.id in auth:
            kind, severity, message = auth[shop.id]
            problems.append(Problem(shop.id, None, severity, kind, message))
            if severity == Severity.error:
                continue
        state = actual[shop.id]
        if isinstance(state, ProviderError):
            problems.append(Problem(shop.id, None, Severity.error, ProblemKind.read_failed,
                                    f"cannot read the shop: {state}" + (f"; {PERMISSION_HINT}" if denied(state) else "")))
            continue
        if bset is not None:
            want = expected[bset] if bset in expected else expected.setdefault(bset, _expected(bset, checks))
            if want is not None and _unchanged(want, bset.scenarios, state):
                continue   # (what diff_shop would say: nothing)
        c, p = diff_shop(shop, state, checks, names, force=force)
        changes += c
        problems += p
    disruptive = sum(1 for c in changes if c.action in DISRUPTIVE)
    total = managed if managed_total is None else max(managed_total, managed)
    basis = total if share_of_total else managed
    if total >= safety.min_managed and basis and disruptive / basis > safety.max_change_share:
        share = f"{disruptive} of {basis} managed bindings ({disruptive / basis:.0%}," \
                f" over the {safety.max_change_share:.0%} safety threshold)"
        if force:
            problems.append(Problem(None, None, Severity.warning, ProblemKind.unsafe,
                                    f"plan rotates or unbinds {share}; allowed by --force"))
        else:
            problems.append(Problem(None, None, Severity.error, ProblemKind.unsafe,
                                    f"plan would rotate or unbind {share}; apply refuses without --force"))
    changes.sort(key=lambda c: c.key)
    problems.sort(key=lambda p: (p.shop or "", SEVERITY_ORDER[p.severity], p.scenario.value if p.scenario else "", p.kind,
                                 p.message))
    return Plan(changes=tuple(changes), problems=tuple(problems), managed=managed, force=force,
                shops=tuple(s.id for s in desired), notes=follow_ups(changes),
                names=names_for(changes, problems, names, shop_names if shop_names is not None else {s.id: s.name for s in desired}))


def denied(e: ProviderError) -> bool:
    """The operator's sub-account lacks the customer-service-platform permission (TOP code 12)."""
    return e.sub_code == "isv.permission-denied" or e.code == 12


# The platform's help article (DOMAIN.md): after binding, some scenarios need a setting elsewhere.
FOLLOW_UPS = {
    Scenario.intercept_shipment: "After binding intercept_shipment (拦截发货) in {n}: the platform asks for a follow-up"
                                 " setting before intercepts work — open 客户服务平台 > 设置 > ERP设置 and follow its"
                                 " 前往设置 link (the operator's sub-account needs that permission too)",
    Scenario.modify_address: "After binding modify_address (修改地址) in {n}: for buyers to change their address"
                             " themselves in the 核单 card, configure the automation task 自动化任务 > 自助核单 (自动核单)"
                             " and say buyer_self_service: true in the config",
}


def follow_ups(changes: Sequence[Change]) -> tuple[str, ...]:
    """The notes of a plan: what people must do on the platform after these binds and rotations."""
    out = []
    for sc, text in FOLLOW_UPS.items():
        shops = sorted({c.shop for c in changes if c.scenario is sc and c.action in (Action.bind, Action.rotate)})
        if shops:
            n = f"shop {shops[0]}" if len(shops) == 1 else f"{len(shops)} shops"
            out.append(text.format(n=n))
    return tuple(out)


def needed_checks(desired: Sequence[DesiredShop]) -> set[tuple[str, Scenario]]:
    """The (appkey, scenario) pairs the preflight asks the platform about."""
    out: set[tuple[str, Scenario]] = set()
    sets: dict[BindingSet, None] = {}
    for s in desired:
        bset = binding_set(s)
        if bset is not None:
            sets[bset] = None   # (a shop of the parse cache: its set's, without building its bindings)
        else:
            out.update((b.appkey, sc) for sc, b in s.bindings.items() if b.appkey is not None)
    for bset in sets:
        out |= bset.pairs
    return out


def target_label(target: Mapping[str, str] | None) -> str:
    """A target for people: ``top https://gw.example/router/rest (app key 30000001)``, ``sandbox sandbox-1f2e…``."""
    if not target:
        return "no recorded platform"
    kind = target.get("kind")
    if kind == "top":
        return f"top {target.get('url', '?')} (app key {target.get('app_key', '?')})"
    if kind == "sandbox":
        return f"sandbox {target.get('id', '?')}"
    return ", ".join(f"{k}={v}" for k, v in sorted(target.items()))
