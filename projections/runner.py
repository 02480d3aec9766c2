"""The one projection runner: batches, offsets in the database, dead letters, metrics.

Exactly-once effect comes from the sink, never from faust's commits: a batch's read-model
writes and its next offsets commit in one PostgreSQL transaction, and records below the stored
offset are skipped, so a redelivery changes nothing.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from prometheus_client import Counter, Histogram

from events.catalog import InvalidEvent, event_from_json
from events.codec import MAX_EVENT_BYTES
from events.envelope import Event
from events.log import Record
from projections import faults
from projections.store import TP, Cursor, Store, lock_offsets, store_offsets

log = logging.getLogger(__name__)

BATCH_SIZE = Histogram(
    "gridgov_projector_batch_size", "Records per projector batch", ["projection"],
    buckets=(1, 5, 20, 50, 100, 200, 500, 1000),
)
APPLIED = Counter("gridgov_projector_events_total", "Events applied", ["projection"])
DEAD_LETTERS = Counter(
    "gridgov_dead_letters_total", "Records sent to the dead-letter topic", ["projection"]
)


@dataclass(frozen=True)
class Delivery:
    """An event and the record that carried it."""

    record: Record
    event: Event[Any]


class Projection(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def topics(self) -> tuple[str, ...]: ...

    @property
    def tables(self) -> dict[str, str]:
        """Its tables, each with the columns a rebuild must reproduce (no wall-clock ones)."""

    @property
    def as_written(self) -> bool:
        """Whether it reads each event at the version its producer wrote (the archive, the
        ledger of what was sent) rather than its type's current version (every reducer)."""

    @property
    def fetch_wait_ms(self) -> int:
        """How long the broker may hold its fetch: how stale its readers accept it to be. A
        longer wait reads the log in fewer, larger fetches."""

    async def write(self, cur: Cursor, deliveries: Sequence[Delivery]) -> None:
        """Apply a batch to the read model inside the runner's transaction."""

    async def settle(self, cur: Cursor) -> None:
        """After a rebuild's last batch: finish what its batches held back (`rebuilding`)."""


DeadLetter = Callable[[str, Sequence[tuple[Record, str]]], Awaitable[None]]


@dataclass
class Outcome:
    applied: int = 0
    skipped: int = 0
    dead: int = 0
    rewind: dict[TP, int] = field(default_factory=dict)


def plan(records: Sequence[Record], stored: dict[TP, int]) -> tuple[list[Record], dict[TP, int]]:
    """Which records to apply, and which partitions to rewind.

    Event topics carry no transaction markers, so offsets are dense: a first offset above the
    stored one means the consumer was moved past unapplied records (faust seeks to its own
    committed offsets after a rebalance, and may have committed ahead of us: its issue #606).
    """
    by_tp: dict[TP, list[Record]] = defaultdict(list)
    for record in records:
        by_tp[(record.topic, record.partition)].append(record)
    fresh: list[Record] = []
    rewind: dict[TP, int] = {}
    for tp, batch in by_tp.items():
        batch.sort(key=lambda r: r.offset)
        unseen = [r for r in batch if r.offset >= stored.get(tp, 0)]
        if unseen and unseen[0].offset > stored.get(tp, 0):
            rewind[tp] = stored.get(tp, 0)
        else:
            fresh.extend(unseen)
    return fresh, rewind


def decode(records: Sequence[Record], *, as_written: bool = False
           ) -> tuple[list[Delivery], list[tuple[Record, str]]]:
    deliveries, poison = [], []
    for record in records:
        if len(record.value) > MAX_EVENT_BYTES:  # valid or not: no event is that big
            poison.append((record, f"body: {len(record.value)} bytes, larger than"
                                   f" {MAX_EVENT_BYTES}"))
            continue
        try:
            # an upcast costs as much as the validation: only where it is read
            deliveries.append(Delivery(record, event_from_json(record.value,
                                                               as_written=as_written)))
        except InvalidEvent as exc:
            poison.append((record, str(exc)[:500]))
    return deliveries, poison


class Runner:
    def __init__(self, projection: Projection, store: Store,
                 dead_letter: DeadLetter | None = None) -> None:
        self.projection = projection
        self.store = store
        self.dead_letter = dead_letter

    async def apply(self, records: Sequence[Record]) -> Outcome:
        name = self.projection.name
        async with self.store.transaction() as cur:
            stored = await lock_offsets(cur, name, {(r.topic, r.partition) for r in records})
            fresh, rewind = plan(records, stored)
            deliveries, poison = decode(fresh, as_written=self.projection.as_written)
            if poison and self.dead_letter is not None:
                await self.dead_letter(name, poison)  # keyed by position: a redo is a copy
                faults.reached(name, "after_dead_letter")
            if deliveries:
                await self.projection.write(cur, deliveries)
            next_offsets: dict[TP, int] = {}
            for record in fresh:
                tp = (record.topic, record.partition)
                next_offsets[tp] = max(next_offsets.get(tp, 0), record.offset + 1)
            await store_offsets(cur, name, next_offsets)
            faults.reached(name, "after_write_before_commit")
        faults.reached(name, "after_commit")
        BATCH_SIZE.labels(name).observe(len(records))
        APPLIED.labels(name).inc(len(deliveries))
        DEAD_LETTERS.labels(name).inc(len(poison) if self.dead_letter else 0)
        return Outcome(len(deliveries), len(records) - len(fresh), len(poison), rewind)
