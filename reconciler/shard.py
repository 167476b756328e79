"""Sharding shops across CI jobs: ``--shard K/N`` on plan, apply and drift.

A shop belongs to shard ``sha256(shop id) mod N + 1``. The hash is a pure function of the
id (not Python's per-process salted ``hash()``), so every job of an N-job CI matrix agrees,
today and next year, and together the jobs cover every shop exactly once. Adding or
removing a shop never moves any other shop to another shard.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

_SPEC = re.compile(r"^\s*([0-9]+)\s*/\s*([0-9]+)\s*$")
MAX_SHARDS = 1024


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` (1-based) of ``count``."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if not 1 <= self.count <= MAX_SHARDS:
            raise ValueError(f"the number of shards must be between 1 and {MAX_SHARDS}, got {self.count}")
        if not 1 <= self.index <= self.count:
            raise ValueError(f"shard {self.index}/{self.count}: K must be between 1 and {self.count}")

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    def holds(self, shop_id: str) -> bool:
        return shard_of(shop_id, self.count) == self.index


def shard_of(shop_id: str, count: int) -> int:
    """The 1-based shard of a shop among ``count`` shards."""
    digest = hashlib.sha256(shop_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % count + 1


def parse_shard(text: str) -> Shard:
    """``"K/N"`` → Shard; ValueError with a message for anything else."""
    m = _SPEC.match(text)
    if not m:
        raise ValueError(f"expected K/N such as 1/4 (shard K of N, K from 1 to N), got {text!r}")
    return Shard(int(m.group(1)), int(m.group(2)))
