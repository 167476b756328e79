"""Trusting a saved plan: only as far as the configuration and the key say.

A saved plan is an artifact: whoever can write CI artifacts can write one, and its SHA-256
checksum is unkeyed (it catches damage, not a forger). So ``apply PLANFILE``:

* checks every change against the current configuration (``verify_against``): a change the
  configuration would not make — another appkey, a shop or scenario it does not manage, an
  unbind it does not ask for — refuses the whole plan, and ``protect`` and the safety
  threshold are decided again from the configuration, with ``--force`` taken only from the
  command line (the file's ``force`` is a record, not a permission);
* with ``RECONCILER_PLAN_KEY`` set, requires a keyed signature (HMAC-SHA256 over the
  checksum, which covers the whole body) that ``plan --out`` adds under the same key.

Reading a saved plan (``plan_from_data``: strict models, the checksum, re-serialisation)
and deciding whether it may be applied to this platform (``check_target``: the platform it
was made for, its age) live here too.

Pure: no I/O; the CLI reads the file and the key from the environment.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from .errors import StalePlan, UnsafePlan
from .model import Desired, DesiredShop, Scenario
from .plan import FORMAT_VERSION, Change, Names, Plan, Problem, checksum
from .plan import target_label as target_label  # (plan.py: importable without pydantic)
from .vocab import DISRUPTIVE, Action, ProblemKind, Severity, show

KEY_ENV = "RECONCILER_PLAN_KEY"
MIN_KEY_CHARS = 16
_PREFIX = "hmac-sha256:"


def plan_key(environ: Mapping[str, str]) -> bytes | None:
    """The signing key from the environment, or None; a short key is an error, not a weak signature."""
    key = environ.get(KEY_ENV, "")
    if not key:
        return None
    if len(key) < MIN_KEY_CHARS:
        raise StalePlan(f"{KEY_ENV} is shorter than {MIN_KEY_CHARS} characters; use a long random value")
    return key.encode("utf-8")


def signature(plan: Plan, key: bytes) -> str:
    return _PREFIX + hmac.new(key, plan.checksum.encode("ascii"), hashlib.sha256).hexdigest()


def to_json(plan: Plan, key: bytes | None) -> str:
    """The saved plan file: the plan, its checksum and, with a key, its signature."""
    data: dict[str, Any] = plan.to_data()
    if key is not None:
        data["signature"] = signature(plan, key)
    return json.dumps(data, ensure_ascii=False, indent=2, sort_keys=True) + "\n"


def check_signature(plan: Plan, found: object, key: bytes | None, *, where: str) -> None:
    """With a key: the plan must carry its signature under that key."""
    if key is None:
        return
    if not isinstance(found, str) or not found:
        raise StalePlan(f"{where}: the plan is not signed, and {KEY_ENV} is set: only plans made by"
                        f" `reconciler plan --out` under the same key are applied; make a new plan")
    if not hmac.compare_digest(found, signature(plan, key)):
        raise StalePlan(f"{where}: the plan's signature does not match {KEY_ENV} (altered, forged, or signed with"
                        " another key); nothing was applied; make a new plan")


def _wanted(shop: DesiredShop, c: Change) -> str | None:
    """Why the configuration would not make ``c``, or None when it would."""
    want = shop.bindings.get(c.scenario)
    if want is None:
        return f"the configuration does not manage {c.scenario.value} of shop {c.shop}"
    if c.action == Action.update:
        if want.buyer_self_service is None or dict(c.after) != {"buyer_self_service": want.buyer_self_service} \
                or dict(c.before) != {"buyer_self_service": not want.buyer_self_service}:
            return f"the configuration does not ask for {show(c.after)}"
        return None
    before, after = c.before.get("appkey"), c.after.get("appkey")
    action = Action.bind if before is None else (Action.unbind if after is None else Action.rotate)
    if set(c.before) != {"appkey"} or set(c.after) != {"appkey"} or before == after or action != c.action:
        return f"not a {c.action.value} of a binding ({show(c.before)} → {show(c.after)})"
    if after != want.appkey:
        return f"the configuration asks for {show({'appkey': want.appkey})}, not {show(c.after)}"
    return None


def verify_against(plan: Plan, desired: Desired, *, force: bool) -> None:
    """Refuse (StalePlan) any change the configuration would not make; refuse (UnsafePlan)
    without ``force`` what ``protect`` or the safety threshold forbid, decided from the configuration."""
    by_id = {s.id: s for s in desired.shops}
    wrong = []
    for c in plan.changes:
        shop = by_id.get(c.shop)
        why = f"shop {c.shop} is not in the configuration" if shop is None else _wanted(shop, c)
        if why:
            wrong.append(f"  {c.shop} {c.scenario.value} {c.action.value}: {why}")
    if wrong:
        raise StalePlan("the saved plan makes changes the current configuration would not make; nothing was applied\n"
                        + "\n".join(wrong) + "\nmake a new plan from the configuration")
    if force:
        return
    protected = sorted({c.shop for c in plan.changes if c.action in DISRUPTIVE and by_id[c.shop].protect})
    if protected:
        raise UnsafePlan(f"refusing to apply: the plan rotates or unbinds bindings of protected shop(s)"
                         f" {', '.join(protected)} (protect: true); use --force")
    shops = {*plan.shops, *(c.shop for c in plan.changes)}
    basis = sum(len(by_id[s].bindings) for s in shops if s in by_id)
    total = max(desired.managed_total or 0, basis)
    disruptive = sum(1 for c in plan.changes if c.action in DISRUPTIVE)
    safety = desired.safety
    if total >= safety.min_managed and basis and disruptive / basis > safety.max_change_share:
        raise UnsafePlan(f"refusing to apply: plan would rotate or unbind {disruptive} of {basis} managed bindings"
                         f" ({disruptive / basis:.0%}, over the {safety.max_change_share:.0%} safety threshold); use --force")


# --------------------------------------------------------------------------- saved plans

_F = ConfigDict(extra="allow", strict=True, defer_build=True)


class _SavedChange(BaseModel):
    model_config = _F
    shop: str
    scenario: Scenario
    action: Action
    before: dict[str, Any]
    after: dict[str, Any]
    reason: str = ""
    source: str | None = None
    revision: int | None = None


class _SavedProblem(BaseModel):
    model_config = _F
    shop: str | None
    scenario: Scenario | None
    severity: Severity
    kind: ProblemKind
    message: str


class _SavedNames(BaseModel):
    model_config = _F
    erps: dict[str, str] = {}
    shops: dict[str, str] = {}


class _SavedPlan(BaseModel):
    model_config = _F
    format_version: int
    changes: list[_SavedChange]
    problems: list[_SavedProblem]
    summary: dict[str, int]
    managed: int
    force: bool
    shops: list[str]
    names: _SavedNames | None = None
    notes: list[str] = []            # the follow-up settings people do after applying (absent when none)
    created_at: str | None = None    # absent in plans saved before plans carried their provenance
    tool_version: str | None = None
    target: dict[str, str] | None = None
    checksum: str
    signature: str | None = None


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
    body = {k: v for k, v in data.items() if k not in ("checksum", "signature")}
    if checksum(body) != saved.checksum:
        raise StalePlan(f"{where}: the file was altered after it was written (checksum mismatch); make a new plan")
    changes = tuple(
        Change(shop=c.shop, scenario=c.scenario, action=c.action, before=c.before, after=c.after,
               reason=c.reason, source=c.source, revision=c.revision)
        for c in saved.changes
    )
    problems = tuple(Problem(p.shop, p.scenario, p.severity, p.kind, p.message) for p in saved.problems)
    names = Names(erps=saved.names.erps, shops=dict(saved.names.shops)) if saved.names else Names()
    plan = Plan(changes=changes, problems=problems, managed=saved.managed, force=saved.force,
                shops=tuple(saved.shops), names=names, notes=tuple(saved.notes), created_at=saved.created_at,
                tool_version=saved.tool_version,
                target=saved.target)
    if plan.checksum != saved.checksum:  # fields this version does not know would not be applied exactly
        raise StalePlan(f"{where}: the plan is not what this version of reconciler writes (a summary that does not"
                        " count its changes, names it would not show, or fields it does not know); make a new plan")
    return plan


# --------------------------------------------------------------------------- the target


def made_at(plan: Plan) -> datetime | None:
    """When a saved plan was made (None when it does not say, or says it unreadably)."""
    if plan.created_at is None:
        return None
    try:
        t = datetime.fromisoformat(plan.created_at.replace("Z", "+00:00"))
    except ValueError:
        return None
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)


def say_age(age: timedelta) -> str:
    """``3d 4h``, ``25h 3m``, ``24h``, ``12m 5s``: the two largest units, a zero second one left out."""
    s = max(int(age.total_seconds()), 0)
    d, h, m = s // 86_400, s % 86_400 // 3600, s % 3600 // 60
    if d >= 2:
        big, small = f"{d}d", f"{h}h" if h else ""
    elif s >= 3600:
        big, small = f"{d * 24 + h}h", f"{m}m" if m else ""
    elif m:
        big, small = f"{m}m", f"{s % 60}s" if s % 60 else ""
    else:
        big, small = f"{s}s", ""
    return f"{big} {small}".strip()


def check_target(plan: Plan, target: Mapping[str, str], *, max_age: timedelta | None = None,
                 now: datetime | None = None) -> None:
    """A saved plan may be applied here: it was made for ``target`` (and, with ``max_age``, no
    longer than that before ``now``, the caller's clock). Raises StalePlan saying why not.

    A plan saved before plans carried their target cannot show which platform it was
    reviewed against, so it is refused too: make a new plan."""
    if plan.target is None:
        raise StalePlan("the saved plan was made before plans carried their target (by an earlier reconciler),"
                        " so which platform it was reviewed against is unknown; make a new plan")
    if dict(plan.target) != dict(target):
        raise StalePlan(f"the saved plan was made for {target_label(plan.target)}, not for {target_label(target)}"
                        " (the platform this configuration names); nothing was applied. Make a new plan against this platform")
    if max_age is None:
        return
    made = made_at(plan)
    if made is None:
        raise StalePlan(f"the saved plan does not say when it was made (created_at {plan.created_at!r}); make a new plan")
    if now is None:
        raise ValueError("check_target: max_age needs now (the caller's clock)")
    age = now - made
    if age > max_age:
        raise StalePlan(f"the saved plan is {say_age(age)} old (made {plan.created_at}), older than --max-age"
                        f" {say_age(max_age)}; make a new plan")
