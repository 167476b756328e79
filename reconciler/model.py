"""Frozen models: what the configuration resolves to and what the platform holds.

The resolved *desired* state (shops, bindings, where each was said) is what ``config``
builds from the YAML files; the *state* models are what providers return and what ``plan``
compares against: plain, hashable, provider-neutral. No pydantic here: the *spec* models
that mirror the YAML files one to one, and validate them, are ``specs`` (imported only when
a file needs them), the settings ``settings``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum

from .settings import SafetySettings
from .vocab import excerpt


class Scenario(StrEnum):
    """A scenario of the ERP settings page; the value is the key used everywhere."""

    intercept_shipment = "intercept_shipment"
    modify_address = "modify_address"
    order_status = "order_status"

    def __str__(self) -> str:
        return self.value


SCENARIOS: tuple[Scenario, ...] = tuple(Scenario)
VIRTUAL_APPKEY = "virtualAppKey"
# Use ``fullmatch`` (``$`` would also match before a final newline: "21345678\n").
APPKEY_RE = re.compile(r"[0-9]{1,32}")
SHOP_ID_RE = re.compile(r"[0-9]{1,20}")


def appkey_problem(appkey: str, scenario: Scenario | None) -> str | None:
    """Why the platform would refuse this appkey for this scenario, or None."""
    if appkey == VIRTUAL_APPKEY:
        if scenario is not None and scenario is not Scenario.modify_address:
            return "virtualAppKey is only valid for modify_address (Cainiao warehouses)"
        return None
    if not APPKEY_RE.fullmatch(appkey):
        return f"appkey {excerpt(appkey)} is not a string of digits (or virtualAppKey)"
    return None


LABEL_KEY_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
LABEL_VALUE_MAX = 200


@dataclass(frozen=True, slots=True)
class Erp:
    """One ERP of the catalog (``erps.yaml``): the name to show, its appkey."""

    name: str | None
    appkey: str


def names_by_appkey(erps: Mapping[str, Erp]) -> dict[str, str]:
    """appkey → ERP name of the catalog (the first name, sorted, when two share an appkey)."""
    out: dict[str, str] = {}
    for name in sorted(erps):
        out.setdefault(erps[name].appkey, name)
    return out


# --------------------------------------------------------------------------- resolved desired state


@dataclass(frozen=True, slots=True, kw_only=True)
class Source:
    """Where a desired value was declared: ``file:line``. When a profile is involved, which:
    the value is the profile's (``profile``), or the shop's own for a scenario the profile
    lists (``profile`` and ``profile_at``, where the profile lists it). A profile's values
    are shared by every shop that takes them; ``describe`` names the shop."""

    file: str
    line: int
    profile: str | None = None
    profile_at: str | None = None

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"

    def describe(self, shop: Source | None = None) -> str:
        """``profile std-jst, configs/profiles.yaml:4, used by configs/shops/acme/a.yaml:7``, else ``file:line``."""
        if self.profile is None:
            return f"{self.file}:{self.line}"
        if self.profile_at is not None:
            return f"{self.file}:{self.line} (the shop's own, for the scenario profile {self.profile} lists at {self.profile_at})"
        return f"profile {self.profile}, {self.file}:{self.line}" + (f", used by {shop}" if shop is not None else "")


@dataclass(frozen=True, slots=True, kw_only=True)
class DesiredBinding:
    """A managed scenario after ERP names are resolved. ``appkey`` None means: must be unbound."""

    scenario: Scenario
    appkey: str | None
    erp: str | None = None
    source: Source
    buyer_self_service: bool | None = None
    buyer_self_service_source: Source | None = None  # where buyer_self_service is set (for the plan's why)
    erp_detail_button: bool | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class DesiredShop:
    id: str
    name: str | None = None
    erp: str | None = None
    protect: bool = False
    source: Source
    bindings: dict[Scenario, DesiredBinding]
    labels: Mapping[str, str] = field(default_factory=dict)
    profile: str | None = None
    protect_source: Source | None = None  # where protect: true is said, when not on the shop itself


@dataclass(frozen=True, slots=True, kw_only=True)
class Waiver:
    """A validated waiver, with where it is written."""

    shop: str
    scenario: Scenario | None
    kind: str
    until: date
    reason: str
    source: Source

    def name(self) -> str:
        """``waiver waivers.yaml:3 (not-integrated until 2027-01-31)``."""
        return f"waiver {self.source} ({self.kind} until {self.until.isoformat()})"


# --------------------------------------------------------------------------- actual state


@dataclass(frozen=True, slots=True, kw_only=True)
class Binding:
    scenario: Scenario
    appkey: str
    revision: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class ShopState:
    """What the platform holds for one shop."""

    shop_id: str
    name: str | None = None
    bindings: dict[Scenario, Binding] = field(default_factory=dict)
    buyer_self_service: bool = False
    detail_whitelisted: bool = False

    def appkey(self, scenario: Scenario) -> str | None:
        b = self.bindings.get(scenario)
        return b.appkey if b else None


@dataclass(frozen=True, slots=True, kw_only=True)
class AppCheck:
    """The platform's answer about an appkey for a scenario (``erp.app.check``)."""

    appkey: str
    scenario: Scenario
    exists: bool
    integrated: bool
    name: str | None = None
    detail_whitelisted: bool = False
    syncs_order_status: bool = True


# --------------------------------------------------------------------------- built in bulk
# The hot loops (10,000s of shops a run: the parse cache, the one-pass reading of plain shop
# files, the sandbox read) build these objects through the functions below. A frozen
# dataclass's ``__init__`` sets each field through ``object.__setattr__`` (~2 µs an object);
# these set the slots directly, 3× faster, and build the very same objects. Every field,
# positionally, nothing checked (the callers have); tests/test_model.py holds them to the
# classes' fields and ``__init__``.

_new = object.__new__
_src_file, _src_line, _src_profile, _src_at = (Source.__dict__[n].__set__ for n in ("file", "line", "profile", "profile_at"))
(_db_scenario, _db_appkey, _db_erp, _db_source, _db_bss, _db_bss_source, _db_edb) = (
    DesiredBinding.__dict__[n].__set__ for n in ("scenario", "appkey", "erp", "source", "buyer_self_service",
                                                 "buyer_self_service_source", "erp_detail_button"))
(_ds_id, _ds_name, _ds_erp, _ds_protect, _ds_source, _ds_bindings, _ds_labels, _ds_profile, _ds_protect_source) = (
    DesiredShop.__dict__[n].__set__ for n in ("id", "name", "erp", "protect", "source", "bindings", "labels", "profile",
                                              "protect_source"))
_b_scenario, _b_appkey, _b_revision = (Binding.__dict__[n].__set__ for n in ("scenario", "appkey", "revision"))
_ss_id, _ss_name, _ss_bindings, _ss_bss, _ss_dw = (
    ShopState.__dict__[n].__set__ for n in ("shop_id", "name", "bindings", "buyer_self_service", "detail_whitelisted"))


def new_source(file: str, line: int, profile: str | None, profile_at: str | None) -> Source:
    o = _new(Source)
    _src_file(o, file)
    _src_line(o, line)
    _src_profile(o, profile)
    _src_at(o, profile_at)
    return o


def new_binding(scenario: Scenario, appkey: str | None, erp: str | None, source: Source, buyer_self_service: bool | None,
                buyer_self_service_source: Source | None, erp_detail_button: bool | None) -> DesiredBinding:
    o = _new(DesiredBinding)
    _db_scenario(o, scenario)
    _db_appkey(o, appkey)
    _db_erp(o, erp)
    _db_source(o, source)
    _db_bss(o, buyer_self_service)
    _db_bss_source(o, buyer_self_service_source)
    _db_edb(o, erp_detail_button)
    return o


def new_shop(id: str, name: str | None, erp: str | None, protect: bool, source: Source,
             bindings: dict[Scenario, DesiredBinding], labels: Mapping[str, str], profile: str | None,
             protect_source: Source | None) -> DesiredShop:
    o = _new(DesiredShop)
    _ds_id(o, id)
    _ds_name(o, name)
    _ds_erp(o, erp)
    _ds_protect(o, protect)
    _ds_source(o, source)
    _ds_bindings(o, bindings)
    _ds_labels(o, labels)
    _ds_profile(o, profile)
    _ds_protect_source(o, protect_source)
    return o


def new_state_binding(scenario: Scenario, appkey: str, revision: int) -> Binding:
    o = _new(Binding)
    _b_scenario(o, scenario)
    _b_appkey(o, appkey)
    _b_revision(o, revision)
    return o


def new_state(shop_id: str, name: str | None, bindings: dict[Scenario, Binding], buyer_self_service: bool,
              detail_whitelisted: bool) -> ShopState:
    o = _new(ShopState)
    _ss_id(o, shop_id)
    _ss_name(o, name)
    _ss_bindings(o, bindings)
    _ss_bss(o, buyer_self_service)
    _ss_dw(o, detail_whitelisted)
    return o


# --------------------------------------------------------------------------- shops read from the parse cache
# A warm plan of 10,000 shops compares most of them with the platform and finds nothing to do.
# The parse cache keeps each file's shops with their bindings grouped into *binding sets*: the
# bindings many shops have alike but for their sources (2,000 shops of one ERP, each binding
# from its own ``erp:`` line). A shop it reads is a ``CachedShop``: a ``DesiredShop`` whose
# bindings are built from its set and its sources when first asked for, so that planning can
# compare an unchanged shop through its set (``plan.compute_plan``) without building them.

_BindingItem = tuple[Scenario, "str | None", "str | None", "bool | None", "bool | None", int, "int | None"]


class BindingSet:
    """Bindings shops share but for their sources: each (scenario, appkey, erp, buyer_self_service,
    erp_detail_button, slot, bss_slot), a slot numbering the sources a shop gives (``CachedShop``).
    ``pairs``: the (appkey, scenario) the preflight asks about; ``scenarios``: those it manages."""

    __slots__ = ("count", "items", "pairs", "scenarios", "slots")

    def __init__(self, items: list[_BindingItem]) -> None:
        self.items = tuple(items)
        self.count = len(self.items)
        self.slots = max((max(slot + 1, 0 if bss_slot is None else bss_slot + 1)
                          for _, _, _, _, _, slot, bss_slot in self.items), default=0)
        self.pairs = frozenset((appkey, sc) for sc, appkey, *_ in self.items if appkey is not None)
        self.scenarios = frozenset(sc for sc, *_ in self.items)

    def build(self, given: Sequence[Source]) -> dict[Scenario, DesiredBinding]:
        """The bindings of a shop that gives these sources for the slots."""
        return {sc: new_binding(sc, appkey, erp, given[slot], bss, None if bss_slot is None else given[bss_slot], edb)
                for sc, appkey, erp, bss, edb, slot, bss_slot in self.items}


_ds_get_bindings = DesiredShop.__dict__["bindings"].__get__
_SHOP_FIELDS = ("id", "name", "erp", "protect", "source", "bindings", "labels", "profile", "protect_source")


class CachedShop(DesiredShop):
    """A ``DesiredShop`` the parse cache read: equal to the one the files give, its bindings
    built from ``binding_set`` and the shop's sources when first asked for (``source_of`` the
    source of each number ``slots`` gives, one a slot of the set). Made with its fields given
    (``__init__``, ``dataclasses.replace``), it has no set (``binding_set`` None) and is an
    ordinary shop."""

    __slots__ = ("_slots", "_source_of", "binding_set")

    binding_set: BindingSet | None
    _slots: Sequence[int]
    _source_of: Callable[[int], Source]

    @property   # (the field, built when first read)
    def bindings(self) -> dict[Scenario, DesiredBinding]:
        try:
            return _ds_get_bindings(self)  # type: ignore[no-any-return]
        except AttributeError:
            assert self.binding_set is not None
            source_of = self._source_of
            built = self.binding_set.build([source_of(n) for n in self._slots])
            _ds_bindings(self, built)
            return built

    @bindings.setter
    def bindings(self, value: dict[Scenario, DesiredBinding]) -> None:
        _ds_bindings(self, value)
        _cs_set(self, None)   # bindings given: whatever set it had no longer describes them

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, DesiredShop):
            return NotImplemented
        return all(getattr(self, f) == getattr(other, f) for f in _SHOP_FIELDS)

    __hash__ = DesiredShop.__hash__


_cs_set, _cs_slots, _cs_source_of = (CachedShop.__dict__[n].__set__ for n in ("binding_set", "_slots", "_source_of"))


def new_cached_shop(id: str, name: str | None, erp: str | None, protect: bool, source: Source, binding_set: BindingSet,
                    slots: Sequence[int], source_of: Callable[[int], Source], labels: Mapping[str, str],
                    profile: str | None, protect_source: Source | None) -> CachedShop:
    """A shop of the parse cache: its bindings are ``binding_set``'s, a slot's source being
    ``source_of(slots[slot])`` (``len(slots) == binding_set.slots``), built when first read."""
    o = _new(CachedShop)
    _ds_id(o, id)
    _ds_name(o, name)
    _ds_erp(o, erp)
    _ds_protect(o, protect)
    _ds_source(o, source)
    _cs_set(o, binding_set)
    _cs_slots(o, slots)
    _cs_source_of(o, source_of)
    _ds_labels(o, labels)
    _ds_profile(o, profile)
    _ds_protect_source(o, protect_source)
    return o


def binding_set(shop: DesiredShop) -> BindingSet | None:
    """The binding set a shop of the parse cache has, or None (a shop read from its file)."""
    return shop.binding_set if type(shop) is CachedShop else None


def binding_count(shop: DesiredShop) -> int:
    """How many scenarios the shop manages (without building a cached shop's bindings)."""
    return shop.binding_set.count if type(shop) is CachedShop and shop.binding_set is not None else len(shop.bindings)


# --------------------------------------------------------------------------- what planning takes


@dataclass(frozen=True)
class Desired:
    """What planning, applying and auditing take from a configuration: the selected shops,
    the ERP names by appkey, the safety settings, and how the selection relates to the whole
    configuration (the safety threshold is measured against all of it, so a small ``--shop``
    or ``--shard`` selection cannot slip under ``min_managed``)."""

    shops: Sequence[DesiredShop]
    erp_names: Mapping[str, str] = field(default_factory=dict)
    safety: SafetySettings = field(default_factory=SafetySettings)
    managed_total: int | None = None   # managed bindings of the whole configuration
    share_of_total: bool = False       # a hand-picked --shop selection: measure the share over the whole config
    configured: frozenset[str] | None = None  # every shop id of the whole configuration (drift: unknown shops)
    waivers: Sequence[Waiver] = ()     # every waiver of the configuration (waivers.yaml)

    @property
    def shop_names(self) -> dict[str, str | None]:
        return {s.id: s.name for s in self.shops}
