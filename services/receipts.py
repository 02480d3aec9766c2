"""Ingest receipts: the first answer given for each event id, so a retry gets the same one.

An id is claimed for its body before it goes to the log (a crash between the broker's ack
and the receipt must not let the same id through with another body), and its first receipt
is kept once the log acknowledged it. Both are one statement for everything concurrent
requests bring at that moment (group commit), not one per event.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from uuid import UUID

from events.log import Receipt
from projections.store import Cursor, Store
from services.group_commit import GroupCommit


@dataclass(frozen=True)
class FirstReceipt:
    digest: str
    receipt: Receipt


@dataclass(frozen=True)
class Claim:
    """What an event id is claimed for: a body digest, and its first receipt once it has one."""

    digest: str
    receipt: Receipt | None


class Receipts:
    def __init__(self, store: Store) -> None:
        self.store = store
        # two lanes: a phone's single event need not wait behind a batch's statement
        self.claim = GroupCommit(self._claim, lanes=2)
        self.record = GroupCommit(self._record, lanes=2)
        self.in_flight: dict[UUID, asyncio.Future[FirstReceipt | None]] = {}

    @contextmanager
    def sending(self, ids: list[UUID]) -> Iterator[dict[UUID, FirstReceipt]]:
        """While these ids go to the log, a concurrent copy of one waits for their first
        receipts (filled into the dict given) instead of sending it again; if the send
        fails, the waiters hear None."""
        loop = asyncio.get_running_loop()
        for eid in ids:
            self.in_flight[eid] = loop.create_future()
        firsts: dict[UUID, FirstReceipt] = {}
        try:
            yield firsts
        finally:
            for eid in ids:
                self.in_flight.pop(eid).set_result(firsts.get(eid))

    async def _claim(self, wanted: list[tuple[UUID, str, bytes]]) -> list[Claim]:
        """Claim each id for its digest (keeping its bytes: the outbox a re-seed republishes
        from) unless it is claimed already; each id's claim."""
        first = {eid: (digest, body) for eid, digest, body in reversed(wanted)}  # earliest
        async with self.store.cursor() as cur:
            # a claim committed by another process after this statement's snapshot conflicts
            # but is not visible to the join: those few are read again below
            await cur.execute(
                "with wanted (event_id, body_digest, body) as"
                "   (select * from unnest(%b::uuid[], %b::text[], %b::bytea[])),"
                " fresh as (insert into ingest_claims (event_id, body_digest, body)"
                "   select * from wanted"
                "   on conflict (event_id) do nothing returning event_id, body_digest)"
                " select w.event_id, coalesce(f.body_digest, c.body_digest),"
                "   r.topic, r.partition, r.log_offset"
                " from wanted w left join fresh f using (event_id)"
                "   left join ingest_claims c using (event_id)"
                "   left join ingest_receipts r using (event_id)",
                [list(first), [d for d, _ in first.values()], [b for _, b in first.values()]])
            rows = await cur.fetchall()
            unseen = [eid for eid, digest, *_ in rows if digest is None]
            if unseen:
                await cur.execute(
                    "select c.event_id, c.body_digest, r.topic, r.partition, r.log_offset"
                    " from ingest_claims c left join ingest_receipts r using (event_id)"
                    " where c.event_id = any(%b)", [unseen])
                rows += await cur.fetchall()
        claims = {eid: Claim(digest, Receipt(str(eid), t, p, o) if t is not None else None)
                  for eid, digest, t, p, o in rows if digest is not None}
        return [claims[eid] for eid, _, _ in wanted]

    async def _record(self, fresh: list[tuple[Receipt, str]]) -> list[FirstReceipt]:
        """Keep these as first receipts; where another request's came first, answer that."""
        async with self.store.cursor() as cur:
            await cur.execute(
                "insert into ingest_receipts (event_id, body_digest, topic, partition,"
                " log_offset)"
                " select * from unnest(%b::uuid[], %b::text[], %b::text[], %b::int[],"
                " %b::bigint[]) on conflict (event_id) do nothing returning event_id",
                [[UUID(r.event_id) for r, _ in fresh], [d for _, d in fresh],
                 [r.topic for r, _ in fresh], [r.partition for r, _ in fresh],
                 [r.offset for r, _ in fresh]])
            kept = {eid for (eid,) in await cur.fetchall()}
            earlier = await _first_receipts(cur, [UUID(r.event_id) for r, _ in fresh
                                                  if UUID(r.event_id) not in kept])
        for r, d in fresh:  # of two copies in one group, the first kept is every copy's answer
            earlier.setdefault(UUID(r.event_id), FirstReceipt(d, r))
        return [earlier[UUID(r.event_id)] for r, _ in fresh]


async def _first_receipts(cur: Cursor, ids: Sequence[UUID]) -> dict[UUID, FirstReceipt]:
    if not ids:
        return {}
    await cur.execute("select event_id, body_digest, topic, partition, log_offset"
                      " from ingest_receipts where event_id = any(%b)", [list(ids)])
    return {eid: FirstReceipt(d, Receipt(str(eid), t, p, o))
            for eid, d, t, p, o in await cur.fetchall()}
