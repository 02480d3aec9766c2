"""Ingest receipts: the first answer given for each event id, so a retry gets the same one."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from uuid import UUID

from events.log import Receipt
from projections.store import Store


@dataclass(frozen=True)
class FirstReceipt:
    digest: str
    receipt: Receipt


async def first_receipts(store: Store, ids: Sequence[UUID]) -> dict[UUID, FirstReceipt]:
    async with store.cursor() as cur:
        await cur.execute(
            "select event_id, body_digest, topic, partition, log_offset from ingest_receipts"
            " where event_id = any(%s)",
            [list(ids)],
        )
        return {
            eid: FirstReceipt(d, Receipt(str(eid), t, p, o))
            for eid, d, t, p, o in await cur.fetchall()
        }


async def claim(store: Store, wanted: Sequence[tuple[UUID, str]]) -> dict[UUID, str]:
    """Claim each event id for its body before it goes to the log; returns the body digest
    each id is claimed for now (ours, or an earlier request's)."""
    if not wanted:
        return {}
    async with store.cursor() as cur:
        await cur.execute(
            "insert into ingest_claims (event_id, body_digest)"
            " select * from unnest(%s::uuid[], %s::text[]) on conflict (event_id) do nothing",
            [[i for i, _ in wanted], [d for _, d in wanted]])
        await cur.execute("select event_id, body_digest from ingest_claims"
                          " where event_id = any(%s)", [[i for i, _ in wanted]])
        return dict(await cur.fetchall())


async def record_receipts(
    store: Store, fresh: Sequence[tuple[Receipt, str]]
) -> dict[UUID, FirstReceipt]:
    """Keep these as first receipts; where a concurrent request won the race, return its one."""
    if not fresh:
        return {}
    async with store.cursor() as cur:
        await cur.execute(
            "insert into ingest_receipts (event_id, body_digest, topic, partition, log_offset)"
            " select * from unnest(%s::uuid[], %s::text[], %s::text[], %s::int[], %s::bigint[])"
            " on conflict (event_id) do nothing",
            [[r.event_id for r, _ in fresh], [d for _, d in fresh], [r.topic for r, _ in fresh],
             [r.partition for r, _ in fresh], [r.offset for r, _ in fresh]],
        )
    return await first_receipts(store, [UUID(r.event_id) for r, _ in fresh])
