"""The shops' authorizations: one sealed token row per shop, and the renewal claim.

The store keeps what ``reconciler.auth`` hands it: a sealed blob (the access and refresh
tokens, encrypted before they reach this module), the times, whether a refresh token
exists, and which key sealed it. It never sees a token in clear and knows no crypto.

Writes are whole-row and atomic: a renewal replaces the sealed blob, the times and the
generation in ONE transaction, so the old token stays stored until the new one is, and a
crash at any point leaves one of the two. ``put`` with ``expect_generation`` writes only if
nobody wrote the row since it was read (a renewal never overwrites a newer token).

The renewal claim (``claim``/``release``) is the shop's renewal lock, a lease in the row:
a process claims the shop before it spends the refresh token, and whoever finds the claim
held by a live holder waits for it, then reads the row again — the other process has
usually renewed it already. Liveness as for run locks: on this host the holder's process
exists, elsewhere its lease is current. A claim is taken with one conditional UPDATE, so two
processes (SQLite or PostgreSQL) never both hold it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

import sqlalchemy as sa

from ..history import format_time
from .base import StoreBase
from .schema import tokens
from .types import lease_end


@dataclass(frozen=True)
class TokenRow:
    """One shop's stored authorization; ``sealed`` is opaque here."""

    shop: str
    sealed: str
    key_id: str
    expires_at: str | None
    refresh_expires_at: str | None
    refreshable: bool
    generation: int
    updated_at: str
    source: str
    note: str | None
    claim: str | None
    claim_host: str | None
    claim_pid: int | None
    claim_until: str | None


@dataclass(frozen=True)
class Claim:
    """What ``claim`` found: ``row`` as it is now (None: no token stored), and whether the
    caller now holds the shop's renewal claim; when not, who does and until when."""

    row: TokenRow | None
    held: bool
    holder_host: str | None = None
    holder_pid: int | None = None
    until: str | None = None
    took_over: bool = False  # the previous holder was dead: its renewal may have spent the refresh token


@dataclass(frozen=True)
class Renewed:
    """A renewed token to store (``put_renewed``): sealed, with its ends."""

    shop: str
    sealed: str = field(repr=False)
    key_id: str
    expires_at: str | None
    refresh_expires_at: str | None
    refreshable: bool
    expect_generation: int


def _row(r: sa.RowMapping) -> TokenRow:
    return TokenRow(shop=r["shop"], sealed=r["sealed"], key_id=r["key_id"], expires_at=r["expires_at"],
                    refresh_expires_at=r["refresh_expires_at"], refreshable=bool(r["refreshable"]),
                    generation=int(r["generation"]), updated_at=r["updated_at"], source=r["source"], note=r["note"],
                    claim=r["claim"], claim_host=r["claim_host"], claim_pid=r["claim_pid"], claim_until=r["claim_until"])


class TokenOps(StoreBase):
    """Read, write, claim and release the shops' sealed tokens."""

    def token_rows(self, shops: Sequence[str] | None = None) -> dict[str, TokenRow]:
        """Shop → its row (only ``shops`` when given)."""
        q = sa.select(tokens)
        with self._read() as conn:
            if shops is None:
                rows = conn.execute(q).mappings().all()
            else:
                wanted = sorted(set(shops))
                rows = []
                for i in range(0, len(wanted), 500):  # bounded IN lists
                    rows += conn.execute(q.where(tokens.c.shop.in_(wanted[i:i + 500]))).mappings().all()
        return {r["shop"]: _row(r) for r in rows}

    def token_row(self, shop: str) -> TokenRow | None:
        return self.token_rows([shop]).get(shop)

    def put_token(self, shop: str, *, sealed: str, key_id: str, expires_at: str | None, refresh_expires_at: str | None,
                  refreshable: bool, source: str, expect_generation: int | None = None) -> bool:
        """Store ``shop``'s token, replacing the old one in one transaction, and free its claim.
        ``expect_generation``: only if the row is still at that generation (None: always);
        returns whether it was written."""
        with self._write() as conn:
            current = conn.execute(sa.select(tokens.c.generation).where(tokens.c.shop == shop)).scalar()
            if expect_generation is not None and current != expect_generation:
                return False
            values = {"sealed": sealed, "key_id": key_id, "expires_at": expires_at, "refresh_expires_at": refresh_expires_at,
                      "refreshable": int(refreshable), "updated_at": self._stamp(), "source": source, "note": None,
                      "claim": None, "claim_host": None, "claim_pid": None, "claim_until": None, "claim_since": None}
            if current is None:
                conn.execute(sa.insert(tokens).values(shop=shop, generation=1, **values))
            else:
                conn.execute(sa.update(tokens).where(tokens.c.shop == shop).values(generation=int(current) + 1, **values))
        return True

    def put_tokens(self, items: Sequence[dict[str, object]], *, source: str) -> None:
        """Many ``put_token`` (no generation check) in one transaction: ``auth import``."""
        with self._write() as conn:
            stamp = self._stamp()
            have = {s: int(g) for s, g in conn.execute(sa.select(tokens.c.shop, tokens.c.generation))}
            for it in items:
                shop = str(it["shop"])
                values = {k: it[k] for k in ("sealed", "key_id", "expires_at", "refresh_expires_at")}
                values.update(refreshable=int(bool(it["refreshable"])), updated_at=stamp, source=source, note=None,
                              claim=None, claim_host=None, claim_pid=None, claim_until=None, claim_since=None)
                if shop in have:
                    conn.execute(sa.update(tokens).where(tokens.c.shop == shop).values(generation=have[shop] + 1, **values))
                else:
                    conn.execute(sa.insert(tokens).values(shop=shop, generation=1, **values))

    def claim_renewal(self, shop: str, holder: str, *, pid: int, lease_s: float) -> Claim:
        """Try to take ``shop``'s renewal claim for ``holder`` (this host, process ``pid``) for
        ``lease_s`` seconds; re-reads the row in the same transaction."""
        return self.claim_renewals([shop], holder, pid=pid, lease_s=lease_s)[shop]

    def claim_renewals(self, shops: Sequence[str], holder: str, *, pid: int, lease_s: float) -> dict[str, Claim]:
        """``claim_renewal`` for several shops in one transaction (one commit for a batch)."""
        out: dict[str, Claim] = {}
        with self._write() as conn:
            now = self._now()
            found = {r["shop"]: _row(r) for r in conn.execute(sa.select(tokens).where(tokens.c.shop.in_(list(shops))))
                     .mappings()}
            for shop in shops:
                out[shop] = self._claim(conn, found.get(shop), shop, holder, pid=pid, lease_s=lease_s, now=now)
        return out

    def _claim(self, conn: sa.Connection, row: TokenRow | None, shop: str, holder: str, *, pid: int, lease_s: float,
               now: datetime) -> Claim:
        if row is None:
            return Claim(row=None, held=False)
        took_over = False
        if row.claim is not None and row.claim != holder:
            if self.holder_alive(host=row.claim_host, pid=row.claim_pid, until=row.claim_until, now=now):
                return Claim(row=row, held=False, holder_host=row.claim_host, holder_pid=row.claim_pid, until=row.claim_until)
            took_over = True
        cond = tokens.c.claim.is_(None) if row.claim is None else tokens.c.claim == row.claim
        done = conn.execute(sa.update(tokens).where(tokens.c.shop == shop, cond)
                            .values(claim=holder, claim_host=self.host, claim_pid=pid, claim_until=lease_end(now, lease_s),
                                    claim_since=format_time(now))).rowcount
        if done != 1:  # another process changed the claim between the read and the update (PostgreSQL)
            again = conn.execute(sa.select(tokens).where(tokens.c.shop == shop)).mappings().first()
            return Claim(row=_row(again) if again is not None else None, held=False)
        return Claim(row=row, held=True, took_over=took_over)

    def put_renewed(self, items: Sequence[Renewed]) -> dict[str, bool]:
        """Store renewed tokens, several in one transaction (a group commit): each only if its
        row is still at the generation the renewal read; returns shop → whether it was written."""
        out: dict[str, bool] = {}
        with self._write() as conn:
            stamp = self._stamp()
            have = {s: int(g) for s, g in conn.execute(sa.select(tokens.c.shop, tokens.c.generation)
                                                       .where(tokens.c.shop.in_([i.shop for i in items])))}
            for i in items:
                if have.get(i.shop) != i.expect_generation:
                    out[i.shop] = False
                    continue
                conn.execute(sa.update(tokens).where(tokens.c.shop == i.shop).values(
                    sealed=i.sealed, key_id=i.key_id, expires_at=i.expires_at, refresh_expires_at=i.refresh_expires_at,
                    refreshable=int(i.refreshable), updated_at=stamp, source="refresh", note=None, generation=i.expect_generation + 1,
                    claim=None, claim_host=None, claim_pid=None, claim_until=None, claim_since=None))
                out[i.shop] = True
        return out

    def release_renewal(self, shop: str, holder: str, *, note: str | None = None, keep_note: bool = False,
                        spent: bool = False) -> None:
        """Free ``holder``'s claim of ``shop`` (a no-op when it does not hold it); ``note``: why
        the renewal failed, kept with the row until the next write (no secret in it);
        ``spent``: the platform refused the stored refresh token — the row is no longer refreshable."""
        with self._write() as conn:
            values: dict[str, object] = {"claim": None, "claim_host": None, "claim_pid": None, "claim_until": None,
                                         "claim_since": None}
            if not keep_note:
                values["note"] = note
            if spent:
                values["refreshable"] = 0
            conn.execute(sa.update(tokens).where(tokens.c.shop == shop, tokens.c.claim == holder).values(**values))

    def delete_token(self, shop: str) -> bool:
        with self._write() as conn:
            return bool(conn.execute(sa.delete(tokens).where(tokens.c.shop == shop)).rowcount)

    def now(self) -> datetime:
        """The store's clock (UTC): the one renewals and claims are judged by."""
        return self._now()
