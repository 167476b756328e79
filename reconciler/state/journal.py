"""The apply journal: which shops a run was about to change, and whether it got through.

Before its first write to a shop, apply records its intent (``intent``, committed durably;
no write happens if that raises); after the shop's last write or rollback it records the
shop done (``shop_done``). A journal row without ``done`` whose run was interrupted —
killed, crashed, taken over — names a shop that may be half-changed, until a LATER journal
row of that shop completes: a later apply that writes it, or finds nothing to do and
records ``intent(run, shop, [])`` + ``shop_done`` to clear it.

``intent`` with changes checks, in the same serialized transaction, that the run still
holds the shop's lock: a run whose lock was taken over must not write (``LockLost``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from .base import StoreBase
from .schema import journal, locks, runs
from .types import INTERRUPTED, InterruptedShop, LockLost

# The hot path's statements (``direct``: the driver's SQL, ``:name`` parameters).
_INTENT = "INSERT INTO journal (run_id, shop, time, changes) VALUES (:run_id, :shop, :time, :changes)"
_INTENT_IF_LOCKED = ("INSERT INTO journal (run_id, shop, time, changes) SELECT :run_id, :shop, :time, :changes"
                     " WHERE EXISTS (SELECT 1 FROM locks WHERE shop = :shop AND run_id = :run_id)")
_CHANGE = ('INSERT INTO changes (run_id, time, shop, scenario, action, "before", "after", outcome, error)'
           " VALUES (:run_id, :time, :shop, :scenario, :action, :before, :after, :outcome, :error)")
_OPEN = "SELECT {} FROM journal WHERE run_id = :run_id AND shop = :shop AND done IS NULL"
_END_WITHOUT_INTENT = ("INSERT INTO journal (run_id, shop, time, changes, done, outcome)"
                       " SELECT :run_id, :shop, :done, '[]', :done, :outcome WHERE NOT EXISTS (" + _OPEN.format("1") + ")")
_END = "UPDATE journal SET done = :done, outcome = :outcome WHERE id = (" + _OPEN.format("max(id)") + ")"
_END_OF = "UPDATE journal SET done = :done, outcome = :outcome WHERE id = :id"


class JournalOps(StoreBase):
    """Intents, completions, and the shops interrupted runs may have left half-changed."""

    def intent(self, run_id: int, shop: str, changes: Sequence[dict[str, Any]]) -> int:
        """Record, durably, that ``run_id`` is about to apply ``changes`` to ``shop``; returns
        the intent's id (for ``shop_done``). Raises ``LockLost`` when there are changes and the
        run does not hold the shop's lock. One round trip (``direct``): under the locks table's
        lock, the intent is inserted only if the run holds the shop's lock — the check and the
        write in one statement."""
        row = {"run_id": run_id, "shop": str(shop), "time": self._stamp(),
               "changes": json.dumps(list(changes), sort_keys=True, ensure_ascii=False)}
        with self._direct(serialize=bool(changes)) as tx:
            added = tx.insert(_INTENT_IF_LOCKED if changes else _INTENT, row)
        found = added.scalar()
        if found is not None:
            return int(found)
        with self._read() as conn:  # for the message only: the lock was not this run's when it was checked
            holder = conn.execute(sa.select(locks.c.run_id).where(locks.c.shop == str(shop))).scalar()
        taken = f"run {holder} holds it" if holder is not None else "nobody holds it"
        raise LockLost(f"run {run_id} does not hold the lock of shop {shop} ({taken}; its lease may have"
                       f" expired and been taken over, or it was unlocked): not writing to that shop")

    def shop_done(self, run_id: int, shop: str, outcome: str, rows: Sequence[dict[str, Any]] = (), *,
                  intent: int | None = None) -> None:
        """The run's writes to ``shop`` ended (applied, failed, rolled back, nothing to do);
        ``rows`` (``change_row`` values) are that shop's history rows, committed in the same
        transaction — one commit per shop instead of one per change. ``intent``: the id
        ``intent`` returned (else the run's open intent of the shop is looked up; done without
        one, both are recorded, so the shop counts as completed). A kill before it leaves the
        intent open: the next apply records the writes that landed (``run.ApplyRun.recover``).
        Not waited for on PostgreSQL (``durable=False``): losing it to a server crash leaves
        exactly that open intent (see ``direct``), and the run's finish then records the run as
        interrupted (``finish_run``)."""
        end = {"id": intent, "run_id": run_id, "shop": str(shop), "done": self._stamp(), "outcome": str(outcome)}
        with self._direct(durable=False) as tx:
            tx.many(_CHANGE, rows)
            if intent is not None:
                tx.run(_END_OF, end)
            else:
                tx.run(_END_WITHOUT_INTENT, end)  # first: the row it adds is done, so the update leaves it be
                tx.run(_END, end)

    def interrupted_shops(self, shops: Sequence[str] | None = None) -> dict[str, InterruptedShop]:
        """Shop → the latest intent of an interrupted run that no later journal row of that
        shop has completed (only ``shops`` when given)."""
        q = (sa.select(journal.c.id, journal.c.shop, journal.c.run_id, journal.c.time.label("intended_at"), journal.c.changes,
                       runs.c.time, runs.c.actor, runs.c.finished, runs.c.status, runs.c.host, runs.c.pid, runs.c.heartbeat,
                       runs.c.lease_s)
             .select_from(journal.join(runs, runs.c.id == journal.c.run_id))
             .where(journal.c.done.is_(None), runs.c.finished.is_(None))
             .order_by(journal.c.id))
        completed = (sa.select(journal.c.shop, sa.func.max(journal.c.id))
                     .where(journal.c.done.is_not(None)).group_by(journal.c.shop))
        wanted = set(shops) if shops is not None else None
        with self._read() as conn:  # open intents are few: filter them here, not with an IN list of every shop
            rows = [r for r in conn.execute(q).mappings().all() if wanted is None or r["shop"] in wanted]
            candidates = sorted({r["shop"] for r in rows})
            last_done: dict[str, int] = {}
            for i in range(0, len(candidates), 500):
                part = completed.where(journal.c.shop.in_(candidates[i:i + 500]))
                last_done.update({shop: int(n) for shop, n in conn.execute(part).all()})
        now = self._now()
        out: dict[str, InterruptedShop] = {}
        status: dict[int, str] = {}
        for r in rows:
            if r["id"] < last_done.get(r["shop"], 0):
                continue
            run_id = r["run_id"]
            if run_id not in status:
                status[run_id] = self.run_status(finished=r["finished"], status=r["status"], host=r["host"], pid=r["pid"],
                                                 heartbeat=r["heartbeat"], lease_s=r["lease_s"], now=now)
            if status[run_id] == INTERRUPTED:  # rows come oldest first: the latest intent wins
                out[r["shop"]] = InterruptedShop(shop=r["shop"], run=run_id, run_time=r["time"], actor=r["actor"],
                                                 intended_at=r["intended_at"], changes=tuple(json.loads(r["changes"])))
        return out
