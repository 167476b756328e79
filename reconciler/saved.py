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

Pure: no I/O; the CLI reads the key from the environment.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from typing import Any

from .errors import StalePlan, UnsafePlan
from .model import Desired, DesiredShop
from .plan import Change, Plan
from .vocab import DISRUPTIVE, Action, show

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
