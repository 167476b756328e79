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
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from .errors import ProviderError, StalePlan
from .model import AppCheck, DesiredBinding, DesiredShop, SafetySettings, Scenario, ShopState

FORMAT_VERSION = 1


class Action(StrEnum):
    bind = "bind"
    rotate = "rotate"
    unbind = "unbind"
    update = "update"

    def __str__(self) -> str:
        return self.value


DISRUPTIVE = (Action.rotate, Action.unbind)
Severity = Literal["error", "warning", "info"]


@dataclass(frozen=True)
class Change:
    shop: str
    scenario: Scenario
    action: Action
    before: Mapping[str, Any]
    after: Mapping[str, Any]
    reason: str = ""
    source: str | None = None

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
        return d


@dataclass(frozen=True)
class Problem:
    shop: str | None
    scenario: Scenario | None
    severity: Severity
    kind: str
    message: str

    def to_data(self) -> dict[str, Any]:
        return {"shop": self.shop, "scenario": self.scenario.value if self.scenario else None,
                "severity": self.severity, "kind": self.kind, "message": self.message}


_SEV_ORDER = {"error": 0, "warning": 1, "info": 2}


@dataclass(frozen=True)
class Plan:
    changes: tuple[Change, ...]
    problems: tuple[Problem, ...] = ()
    managed: int = 0
    force: bool = False
    shops: tuple[str, ...] = ()
    checksum_: str | None = field(default=None, compare=False)

    @property
    def summary(self) -> dict[str, int]:
        counts = {a.value: 0 for a in Action}
        for c in self.changes:
            counts[c.action.value] += 1
        return counts

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def unsafe(self) -> list[Problem]:
        return [p for p in self.problems if p.kind in ("unsafe", "protected") and p.severity == "error"]

    def body(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "changes": [c.to_data() for c in self.changes],
            "problems": [p.to_data() for p in self.problems],
            "summary": self.summary,
            "managed": self.managed,
            "force": self.force,
            "shops": list(self.shops),
        }

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


# --------------------------------------------------------------------------- saved plans

_F = ConfigDict(extra="allow", strict=True)


class _SavedChange(BaseModel):
    model_config = _F
    shop: str
    scenario: Scenario
    action: Action
    before: dict[str, Any]
    after: dict[str, Any]
    reason: str = ""
    source: str | None = None


class _SavedProblem(BaseModel):
    model_config = _F
    shop: str | None
    scenario: Scenario | None
    severity: Literal["error", "warning", "info"]
    kind: str
    message: str


class _SavedPlan(BaseModel):
    model_config = _F
    format_version: int
    changes: list[_SavedChange]
    problems: list[_SavedProblem]
    summary: dict[str, int]
    managed: int
    force: bool
    shops: list[str]
    checksum: str


def plan_from_data(data: Any, *, where: str = "plan file") -> Plan:
    """A saved plan, verified: its checksum must match its content exactly."""
    if not isinstance(data, dict):
        raise StalePlan(f"{where}: not a saved plan (expected a JSON object)")
    if data.get("format_version") != FORMAT_VERSION:
        raise StalePlan(f"{where}: format_version {data.get('format_version')!r} is not supported (expected {FORMAT_VERSION})")
    try:
        saved = _SavedPlan.model_validate(data, strict=False)
    except ValidationError as e:
        first = e.errors()[0]
        loc = ".".join(str(p) for p in first["loc"])
        raise StalePlan(f"{where}: not a valid saved plan: {loc}: {first['msg']}") from None
    body = {k: v for k, v in data.items() if k != "checksum"}
    if checksum(body) != saved.checksum:
        raise StalePlan(f"{where}: the file was altered after it was written (checksum mismatch); make a new plan")
    changes = tuple(
        Change(shop=c.shop, scenario=c.scenario, action=c.action, before=c.before, after=c.after,
               reason=c.reason, source=c.source)
        for c in saved.changes
    )
    problems = tuple(Problem(p.shop, p.scenario, p.severity, p.kind, p.message) for p in saved.problems)
    return Plan(changes=changes, problems=problems, managed=saved.managed, force=saved.force,
                shops=tuple(saved.shops), checksum_=saved.checksum)


# --------------------------------------------------------------------------- the diff


def _label(appkey: str | None, names: Mapping[str, str]) -> str:
    if appkey is None:
        return "unbound"
    name = names.get(appkey)
    return f"{name} ({appkey})" if name else appkey


def describe(values: Mapping[str, Any], names: Mapping[str, str]) -> str:
    """A change's before/after for people: ``jushuitan (21345678)``, ``unbound``, ``buyer_self_service=true``."""
    if "appkey" in values:
        return _label(values["appkey"], names)
    return ", ".join(f"{k}={str(x).lower() if isinstance(x, bool) else x}" for k, x in sorted(values.items()))


def _reason(action: Action, want: DesiredBinding, current: str | None, names: Mapping[str, str]) -> str:
    """Why a change is planned: what the config says and where. Said neutrally — whether the
    config changed or someone changed the platform, the plan cannot tell (drift can)."""
    src = str(want.source)
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
    label = _label(want.appkey, names)
    sev: Severity = "error" if changing else "warning"
    if isinstance(check, ProviderError):
        out.append(Problem(shop, sc, sev, "check-failed", f"cannot check appkey {label}: {check}"))
        return out
    if not check.exists:
        out.append(Problem(shop, sc, sev, "appkey-not-found",
                           f"appkey {label} does not exist on the platform; ask the ERP for its appkey"))
    elif not check.integrated:
        out.append(Problem(shop, sc, sev, "not-integrated",
                           f"ERP {label} has not integrated {sc.value} through Qimen; only the ERP can fix this"))
    if sc is Scenario.order_status and check.exists:
        if want.erp_detail_button and not check.detail_whitelisted:
            out.append(Problem(shop, sc, "warning", "detail-not-whitelisted",
                               f"the ERP详情 (ERP detail) button is whitelist-only and ERP {label} is not whitelisted;"
                               " the ERP must apply to the platform"))
        if check.integrated and not check.syncs_order_status:
            out.append(Problem(shop, sc, "warning", "status-not-synced",
                               f"ERP {label} does not sync order statuses: the binding will show no status"))
    return out


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
    for sc, want in desired.bindings.items():
        current = state.appkey(sc)
        action: Action | None = None
        if want.appkey != current:
            action = Action.bind if current is None else (Action.unbind if want.appkey is None else Action.rotate)
            changes.append(Change(
                shop=sid, scenario=sc, action=action, before={"appkey": current}, after={"appkey": want.appkey},
                reason=_reason(action, want, current, names), source=str(want.source),
            ))
        problems += _preflight(sid, want, checks.get((want.appkey, sc)) if want.appkey else None,
                               changing=action is not None, names=names)
        if want.buyer_self_service is not None and want.buyer_self_service != state.buyer_self_service:
            where = want.buyer_self_service_source or want.source
            changes.append(Change(
                shop=sid, scenario=sc, action=Action.update,
                before={"buyer_self_service": state.buyer_self_service},
                after={"buyer_self_service": want.buyer_self_service},
                reason=f"config says buyer_self_service: {str(want.buyer_self_service).lower()}, {where}"
                       + (" (also configure 自动核单/自助核单 in the automation tasks)" if want.buyer_self_service else ""),
                source=str(where),
            ))
    for sc, b in state.bindings.items():
        if sc not in desired.bindings:
            problems.append(Problem(sid, sc, "warning", "unmanaged",
                                    f"{sc.value} is bound to {_label(b.appkey, names)} but not in the config; left alone"))
    disruptive = [c for c in changes if c.action in DISRUPTIVE]
    if desired.protect and disruptive:
        what = ", ".join(f"{c.action.value} {c.scenario.value}" for c in disruptive)
        if force:
            problems.append(Problem(sid, None, "warning", "protected", f"protected shop changed under --force: {what}"))
        else:
            problems.append(Problem(sid, None, "error", "protected",
                                    f"shop is protected (protect: true, {desired.source}); it would {what}; use --force"))
    if changes and any(p.severity == "error" for p in problems):
        what = "; ".join(f"{c.action.value} {c.scenario.value} {describe(c.before, names)} → {describe(c.after, names)}"
                         for c in sorted(changes, key=lambda c: c.key))
        problems.append(Problem(sid, None, "info", "withheld",
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
) -> Plan:
    """The plan for ``desired`` shops; ``actual`` must hold every one of them.

    Safety: ``managed_total`` (every managed binding of the configuration) decides whether
    the threshold applies at all (``min_managed``), so a small ``--shop``/``--shard``
    selection cannot slip under it. The share is measured over the planned shops — a shard
    is a fair sample of the agency — or, with ``share_of_total`` (a hand-picked ``--shop``
    selection, which is no sample), over the whole configuration."""
    safety = safety or SafetySettings()
    changes: list[Change] = []
    problems: list[Problem] = []
    managed = 0
    for shop in desired:
        managed += len(shop.bindings)
        state = actual[shop.id]
        if isinstance(state, ProviderError):
            problems.append(Problem(shop.id, None, "error", "read-failed", f"cannot read the shop: {state}"))
            continue
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
            problems.append(Problem(None, None, "warning", "unsafe", f"plan rotates or unbinds {share}; allowed by --force"))
        else:
            problems.append(Problem(None, None, "error", "unsafe",
                                    f"plan would rotate or unbind {share}; apply refuses without --force"))
    changes.sort(key=lambda c: c.key)
    problems.sort(key=lambda p: (p.shop or "", _SEV_ORDER[p.severity], p.scenario.value if p.scenario else "", p.kind, p.message))
    return Plan(changes=tuple(changes), problems=tuple(problems), managed=managed, force=force,
                shops=tuple(s.id for s in desired))


def needed_checks(desired: Sequence[DesiredShop]) -> set[tuple[str, Scenario]]:
    """The (appkey, scenario) pairs the preflight asks the platform about."""
    return {(b.appkey, sc) for s in desired for sc, b in s.bindings.items() if b.appkey is not None}
