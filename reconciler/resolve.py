"""Shops (and the profiles they use) × the ERP catalog → resolved desired shops.

A shop says what it wants directly or through a profile (``profiles.yaml``): the shop's own
``erp``, ``protect`` and each scenario it lists replace the profile's; its labels are added
to the profile's. Every value keeps where it was written (``At``): errors point there, and
a binding's ``Source`` names both places when a profile decides it ("profile std-jst,
configs/profiles.yaml:4, used by configs/shops/acme/a.yaml:7").

A profile is checked once, on its own (``check_profile``): what is wrong in it is reported
in ``profiles.yaml`` once, with the shops that use it — never again for each of them. While
a shop is resolved, issues located in a profile are therefore muted (``Sink``); what only
the combination gets wrong (the shop's ERP is ``virtualAppKey`` and the profile lists
``intercept_shipment``) is reported at the shop.

One run reports everything it can: a shop with schema errors still has its well-formed
references checked (from the raw data), but nothing is built for it, and what only a whole
shop can be blamed for (no ERP to bind) waits until its schema errors are fixed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

from .errors import Issue
from .model import (
    SCENARIOS,
    SHOP_ID_RE,
    VIRTUAL_APPKEY,
    DesiredBinding,
    DesiredShop,
    Erp,
    Scenario,
    Source,
    appkey_problem,
)

if TYPE_CHECKING:   # (pydantic: imported by the step-by-step reading, which takes them)
    from .specs import ProfileSpec, ScenarioSpec, ShopSpec
from .vocab import close_matches, excerpt
from .yamlio import Document, PathT, path_str


@dataclass(frozen=True)
class At:
    """Where a value is written: a document and the value's path in it."""

    doc: Document
    path: PathT

    def mark(self, *, key: bool = False) -> tuple[int, int]:
        return self.doc.marks.at(self.path, key=key)

    def child(self, *parts: str | int) -> At:
        return At(self.doc, (*self.path, *parts))

    def where(self) -> str:
        return f"{self.doc.file}:{self.mark()[0]}"


class Sink:
    """Collects issues; those located in ``mute`` (the profiles file, while resolving a shop)
    are dropped: the profile's own check reports them once."""

    def __init__(self, issues: list[Issue], *, mute: Document | None = None) -> None:
        self.issues = issues
        self.mute = mute

    def add(self, at: At, message: str, *, key: bool = False, severity: str = "error") -> None:
        if self.mute is not None and at.doc is self.mute:
            return
        line, col = at.mark(key=key)
        self.issues.append(Issue(at.doc.file, line, col, path_str(at.path), message, severity=severity))


@dataclass(frozen=True)
class Catalog:
    """The valid ERPs of ``erps.yaml``, and the names declared there with invalid entries
    (their errors are reported once, in erps.yaml, not again at every reference)."""

    specs: dict[str, Erp]
    broken: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Profile:
    """A profile of ``profiles.yaml``: its spec (None when invalid: reported there) and where it
    is. What it decides on its own (a scenario it lists, resolved with its own ERP) is the same
    for every shop that takes it: resolved once, kept in ``resolved``."""

    name: str
    spec: ProfileSpec | None
    at: At
    resolved: dict[Scenario, DesiredBinding | None] = field(default_factory=dict, compare=False, hash=False)

    @cached_property
    def wanted(self) -> tuple[_Said | None, list[_Wanted]]:
        return _wanted(self.at, self.spec)


@dataclass(frozen=True)
class _Said:
    value: object
    at: At


@dataclass(frozen=True)
class _Wanted:
    """What one declared scenario asks for, and where it is declared. For a shop with schema
    errors the values are the raw data's and may have any type: only well-formed ones are checked."""

    scenario: Scenario
    unbound: bool
    at: At
    appkey: object = None
    erp: object = None
    spec: ScenarioSpec | None = None  # the validated spec; None for a shop with schema errors


_NULL = object()


def _given(raw: dict[str, Any], key: str) -> object:
    """A raw value, with a key written as null kept apart from an absent one: in a shop with
    schema errors it names its source without a well-formed value, so nothing is checked."""
    value = raw.get(key)
    return _NULL if value is None and key in raw else value


def _wanted(at: At, spec: ShopSpec | ProfileSpec | None) -> tuple[_Said | None, list[_Wanted]]:
    """The ERP and what each declared scenario asks for, of a shop or a profile at ``at``:
    from the validated spec, or from the raw data of one with schema errors."""
    if spec is not None:
        erp = _Said(spec.erp, at.child("erp")) if spec.erp is not None else None
        return erp, [_Wanted(sc, s.state == "unbound", at.child("scenarios", sc.value), s.appkey, s.erp, s)
                     for sc, s in spec.scenarios.declared().items()]
    item = raw_at(at)
    if not isinstance(item, dict):
        return None, []
    scenarios = item.get("scenarios")
    wanted: list[_Wanted] = []
    for key, raw in scenarios.items() if isinstance(scenarios, dict) else ():
        if key in Scenario.__members__:
            s = raw if isinstance(raw, dict) else {}
            wanted.append(_Wanted(Scenario(key), s.get("state") == "unbound", at.child("scenarios", key),
                                  _given(s, "appkey"), _given(s, "erp")))
    erp = item.get("erp")
    return (_Said(erp, at.child("erp")) if erp is not None else None), wanted


def raw_at(at: At) -> Any:
    cur: Any = at.doc.data
    for p in at.path:
        if isinstance(cur, dict):
            cur = cur.get(p)
        elif isinstance(cur, list) and isinstance(p, int) and 0 <= p < len(cur):
            cur = cur[p]
        else:
            return None
    return cur


def raw_id(at: At) -> str | None:
    """The id of a shop that failed validation, when the id itself is valid."""
    item = raw_at(at)
    sid = item.get("id") if isinstance(item, dict) else None
    return sid if isinstance(sid, str) and SHOP_ID_RE.fullmatch(sid) else None


def check_appkey(sink: Sink, at: At, appkey: str, scenario: Scenario | None) -> None:
    why = appkey_problem(appkey, scenario)
    if why:
        sink.add(at, why)
    elif appkey != VIRTUAL_APPKEY and len(appkey) != 8:
        sink.add(at, f"appkey {excerpt(appkey)} has {len(appkey)} digits; ERP appkeys are usually 8", severity="warning")


def _erp_ref(sink: Sink, at: At, name: str, erps: Catalog | None) -> Erp | None:
    if erps is None or name in erps.broken:
        return None
    spec = erps.specs.get(name)
    if spec is None:
        names = sorted(erps.specs | dict.fromkeys(erps.broken))
        close = close_matches(name, names)
        hint = f"; did you mean {close[0]!r}?" if close else f"; erps.yaml defines: {', '.join(names) or 'none'}"
        sink.add(at, f"unknown ERP {excerpt(name)}{hint}")
    return spec


def _virtual_misplaced(erp_name: str, scenario: Scenario) -> str:
    return f"ERP {erp_name!r} is virtualAppKey (Cainiao warehouses), valid for modify_address only, not {scenario.value}"


@dataclass(frozen=True)
class _Context:
    """One resolution: the shop (or the profile checked alone), the profile it uses, and whether
    the whole shop is known (schema-valid, its profile valid) so that it can be blamed."""

    erps: Catalog | None
    sink: Sink
    whole: bool
    profile: Profile | None = None
    shop_at: At | None = None   # None: a profile checked on its own

    def in_profile(self, at: At) -> bool:
        return self.profile is not None and at.doc is self.profile.at.doc

    def source(self, at: At, *, scenario_at: At | None = None) -> Source:
        """Where a value comes from, naming the profile when one is involved."""
        file, line = at.doc.file, at.mark()[0]
        p = self.profile
        if p is None or self.shop_at is None:
            return Source(file=file, line=line)
        if self.in_profile(at):
            return Source(file=file, line=line, profile=p.name)
        if scenario_at is not None and self.in_profile(scenario_at):
            return Source(file=file, line=line, profile=p.name, profile_at=scenario_at.where())
        return Source(file=file, line=line)


def _source(ctx: _Context, w: _Wanted, erp: _Said | None, erp_ref: Erp | None) -> tuple[str | None, str | None, At] | None:
    """One scenario's (appkey, ERP name, where they come from); None when it cannot be resolved."""
    if w.unbound or w.appkey is not None:
        if not isinstance(w.appkey, str):
            return (None, None, w.at) if w.appkey is None else None
        check_appkey(ctx.sink, w.at.child("appkey"), w.appkey, w.scenario)
        return w.appkey, None, w.at.child("appkey")
    if w.erp is not None:
        name, at = w.erp, w.at.child("erp")
        ref = _erp_ref(ctx.sink, at, name, ctx.erps) if isinstance(name, str) else None
    elif erp is not None:
        name, at, ref = erp.value, erp.at, erp_ref
    else:
        if ctx.whole and ctx.shop_at is not None:
            if ctx.in_profile(w.at):
                assert ctx.profile is not None
                ctx.sink.add(ctx.shop_at.child("profile"),
                             f"profile {ctx.profile.name!r} lists {w.scenario.value} ({w.at.where()}) with no ERP to bind:"
                             " set erp on the shop or on the profile")
            else:
                ctx.sink.add(w.at, "no ERP to bind: set erp on the shop or on the scenario, or appkey, or state: unbound",
                             key=True)
        return None
    if ref is None or not isinstance(name, str):
        return None
    if ref.appkey == VIRTUAL_APPKEY and w.scenario is not Scenario.modify_address:
        if ctx.in_profile(at) and not ctx.in_profile(w.at):
            assert ctx.profile is not None
            ctx.sink.add(w.at, f"the shop's ERP {name!r} (from profile {ctx.profile.name}, {at.where()}) is virtualAppKey"
                               f" (Cainiao warehouses), valid for modify_address only: set erp or appkey on {w.scenario.value}",
                         key=True)
        else:
            ctx.sink.add(at, _virtual_misplaced(name, w.scenario))
        return None
    return ref.appkey, name, at


def _binding(ctx: _Context, w: _Wanted, appkey: str | None, erp_name: str | None, src: At) -> DesiredBinding | None:
    """The desired binding of a valid scenario, with its settings; None if they contradict it."""
    assert w.spec is not None
    from . import specs  # (loaded by the step-by-step reading, which is the only caller: a lookup)

    extra: dict[str, Any] = {}
    # isinstance, not getattr: pydantic's __getattr__ for an attribute a model lacks is slow
    bss = w.spec.buyer_self_service if isinstance(w.spec, specs.ModifyAddressSpec) else None
    if bss is not None:
        at = w.at.child("buyer_self_service")
        if w.unbound and bss:
            ctx.sink.add(at, "buyer self-service needs modify_address bound; it cannot be true with state: unbound")
            return None
        extra["buyer_self_service"] = bss
        extra["buyer_self_service_source"] = ctx.source(at)
    edb = w.spec.erp_detail_button if isinstance(w.spec, specs.OrderStatusSpec) else None
    if edb is not None:
        extra["erp_detail_button"] = edb
    return DesiredBinding(scenario=w.scenario, appkey=appkey, erp=erp_name, source=ctx.source(src, scenario_at=w.at),
                          **extra)


def _bindings(ctx: _Context, erp: _Said | None, wanted: Mapping[Scenario, _Wanted]) -> dict[Scenario, DesiredBinding] | None:
    """Every scenario resolved and checked; None when any cannot be (its reasons reported)."""
    erp_ref = _erp_ref(ctx.sink, erp.at, erp.value, ctx.erps) if erp is not None and isinstance(erp.value, str) else None
    out: dict[Scenario, DesiredBinding] = {}
    ok = True
    p = ctx.profile if ctx.shop_at is not None else None
    for sc in SCENARIOS:
        w = wanted.get(sc)
        if w is None:
            continue
        # a scenario the profile decides alone (its entry, and the ERP if one is needed) resolves
        # the same for every shop of the profile, and its issues are the profile's: once
        alone = p is not None and ctx.in_profile(w.at) and (
            w.unbound or w.appkey is not None or w.erp is not None or (erp is not None and ctx.in_profile(erp.at)))
        if alone and p is not None and sc in p.resolved:
            binding = p.resolved[sc]
        else:
            found = _source(ctx, w, erp, erp_ref)
            binding = _binding(ctx, w, *found) if found is not None and w.spec is not None else None
            if alone and p is not None:
                p.resolved[sc] = binding
        if binding is None:
            ok = False
        else:
            out[sc] = binding
    return out if ok else None


def check_profile(profile: Profile, erps: Catalog | None, issues: list[Issue]) -> None:
    """A profile's own references, checked once (whichever shops use it)."""
    erp, wanted = _wanted(profile.at, profile.spec)
    ctx = _Context(erps=erps, sink=Sink(issues), whole=False, profile=profile)
    _bindings(ctx, erp, {w.scenario: w for w in wanted})


def unknown_profile(name: str, profiles: Mapping[str, Profile] | None) -> str:
    if profiles is None:
        return f"unknown profile {excerpt(name)}: there is no profiles.yaml"
    close = close_matches(name, list(profiles))
    hint = f"; did you mean {close[0]!r}?" if close else f"; profiles.yaml defines: {', '.join(sorted(profiles)) or 'none'}"
    return f"unknown profile {excerpt(name)}{hint}"


def resolve_shop(at: At, shop: ShopSpec | None, erps: Catalog | None, profiles: Mapping[str, Profile] | None,
                 issues: list[Issue], *, mute: Document | None = None, profiles_unreadable: bool = False) -> DesiredShop | None:
    """Resolve and check a shop's references once: its profile, ERP names, appkeys,
    virtualAppKey placement. ``shop`` is the validated spec, or None for a shop with schema
    errors (reported already): its well-formed references are still checked, but nothing is
    built for it. ``mute``: the profiles file, whose issues its own check reports."""
    sink = Sink(issues, mute=mute)
    name = shop.profile if shop is not None else _raw_profile(at)
    profile: Profile | None = None
    whole = shop is not None
    if name is not None:
        profile = (profiles or {}).get(name)
        if profile is None:
            if not profiles_unreadable:
                sink.add(at.child("profile"), unknown_profile(name, profiles))
            whole = False
        elif profile.spec is None:
            profile, whole = None, False  # its errors are reported in profiles.yaml, with this shop among its users
    own_erp, own = _wanted(at, shop)
    base_erp, base = profile.wanted if profile is not None else (None, [])
    erp = own_erp if own_erp is not None else base_erp
    wanted = {w.scenario: w for w in base} | {w.scenario: w for w in own}
    ctx = _Context(erps=erps, sink=sink, whole=whole, profile=profile, shop_at=at)
    bindings = _bindings(ctx, erp, wanted)
    if bindings is None or shop is None or not whole:
        return None
    spec = profile.spec if profile is not None else None
    protect, protect_source = shop.protect, None
    if "protect" not in shop.model_fields_set and spec is not None and "protect" in spec.model_fields_set:
        assert profile is not None
        protect, protect_source = spec.protect, ctx.source(profile.at.child("protect"))
    return DesiredShop(
        id=shop.id, name=shop.name, erp=erp.value if erp is not None and isinstance(erp.value, str) else None,
        protect=protect, protect_source=protect_source, source=Source(file=at.doc.file, line=at.mark()[0]),
        bindings=bindings, labels={**(spec.labels if spec is not None else {}), **shop.labels},
        profile=profile.name if profile is not None else None,
    )


def _raw_profile(at: At) -> str | None:
    item = raw_at(at)
    name = item.get("profile") if isinstance(item, dict) else None
    return name if isinstance(name, str) else None
