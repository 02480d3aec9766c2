"""The archive: every event once, hash-chained per partition; the auditor's durable ledger."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import orjson

from events.codec import GENESIS, canonical, chain_hash, submission_digest
from events.topics import EVENT_TOPICS
from projections.runner import Delivery
from projections.store import TP, Cursor


@dataclass(frozen=True)
class Head:
    position: int  # the next position to fill (the number of links so far)
    hash: bytes


@dataclass(frozen=True)
class Archived:
    delivery: Delivery
    position: int
    body: bytes
    prev_hash: bytes
    hash: bytes


@dataclass(frozen=True)
class Duplicate:
    delivery: Delivery
    same_body: bool


class Chains:
    """Each partition's chain, extended one delivery at a time; pure.

    One at a time so the sink streams each row to PostgreSQL, which indexes it while the next
    one is encoded. `known` maps ids archived before to their submission digests; only a
    second copy needs digests, so an event archived here keeps its body until one comes.
    """

    def __init__(self, heads: dict[TP, Head], known: dict[UUID, str]) -> None:
        self.heads = dict(heads)
        self.known = known
        self.bodies: dict[UUID, bytes] = {}

    def extend(self, delivery: Delivery) -> Archived | Duplicate:
        event, record = delivery.event, delivery.record
        if event.event_id in self.bodies:
            first = submission_digest(orjson.loads(self.bodies[event.event_id]))
            return Duplicate(delivery, first == submission_digest(event))
        if event.event_id in self.known:
            return Duplicate(delivery, self.known[event.event_id] == submission_digest(event))
        body = canonical(event)
        self.bodies[event.event_id] = body
        tp = (record.topic, record.partition)
        head = self.heads.get(tp) or Head(0, GENESIS)
        link = chain_hash(head.hash, body)
        self.heads[tp] = Head(head.position + 1, link)
        return Archived(delivery, head.position, body, head.hash, link)


def chain(
    heads: dict[TP, Head], deliveries: Sequence[Delivery], known: dict[UUID, str]
) -> tuple[list[Archived], list[Duplicate], dict[TP, Head]]:
    """Extend each partition's chain with the events not archived before; pure.

    Each delivery carries its event as written (`as_written`); `known` maps archived event
    ids to their submission digests.
    """
    chains = Chains(heads, known)
    links = [chains.extend(d) for d in deliveries]
    return ([link for link in links if isinstance(link, Archived)],
            [link for link in links if isinstance(link, Duplicate)], chains.heads)


def verify(rows: Sequence[tuple[int, bytes, bytes, bytes]], start: Head = Head(0, GENESIS),
           end: Head | None = None) -> list[str]:
    """Walk (position, body, prev_hash, hash) rows of one partition; report every break.

    `end` is the head recorded separately (archive_heads, a signed digest): without it, losing
    the newest rows would leave a shorter chain that is valid in itself.
    """
    problems = []
    expected = start
    for position, body, prev_hash, link in rows:
        if position != expected.position:
            problems.append(f"position {expected.position}: missing, found {position} next")
        if prev_hash != expected.hash:
            problems.append(f"position {position}: prev_hash does not match its predecessor")
        if chain_hash(prev_hash, body) != link:
            problems.append(f"position {position}: body does not match its hash")
        expected = Head(position + 1, link)
    if end is not None and expected != end:
        problems.append(f"position {expected.position}: the chain ends here, its head says"
                        f" {end.position}")
    return problems


#: the archive's columns as COPY writes them, with their types for the binary format
COLUMNS = {
    "topic": "text", "partition": "int4", "position": "int8", "log_offset": "int8",
    "event_id": "uuid", "event_type": "text", "schema_version": "int4", "place": "text",
    "aggregate_id": "text", "aggregate_seq": "int4", "actor_id": "text", "actor_role": "text",
    "occurred_at": "timestamptz", "recorded_at": "timestamptz", "body": "bytea",
    "prev_hash": "bytea", "hash": "bytea",
}


class Archive:
    name = "archive"
    topics = tuple(t.name for t in EVENT_TOPICS)
    as_written = True  # what was sent is hashed, kept and republished by a restore, as it came
    # read by auditors, not watched live: fewer, larger fetches spare the broker and the
    # archive's own CPU (BENCHMARKS.md, 2026-11-27); at most this much more behind the log
    fetch_wait_ms = 250
    tables = {  # the offset in the current log and the archiving clock are not the history
        "archive": "topic, partition, position, event_id, event_type, schema_version, place,"
                   " aggregate_id, aggregate_seq, actor_id, actor_role, occurred_at,"
                   " recorded_at, body, prev_hash, hash",
        "archive_heads": "topic, partition, position, hash",
        "archive_duplicates": "event_id, topic, partition, same_body",
    }

    async def settle(self, cur: Cursor) -> None:
        """A rebuild's batches hold nothing back: each is archived as it comes."""

    async def write(self, cur: Cursor, deliveries: Sequence[Delivery]) -> None:
        tps = sorted({(d.record.topic, d.record.partition) for d in deliveries})
        async with cur.connection.pipeline():  # both questions in one round trip
            archived = cur.connection.cursor()
            await cur.execute(
                "select topic, partition, position, hash from archive_heads"
                " where (topic, partition) in (select * from unnest(%s::text[], %s::int[]))"
                " for update",
                [[t for t, _ in tps], [p for _, p in tps]],
            )
            await archived.execute(
                "select event_id, body from archive where event_id = any(%b)",
                [[d.event.event_id for d in deliveries]],
            )
        heads = {(t, p): Head(pos + 1, h) for t, p, pos, h in await cur.fetchall()}
        known = {eid: submission_digest(orjson.loads(body))
                 for eid, body in await archived.fetchall()}
        chains, duplicates = Chains(heads, known), []
        # binary: no hex for the bodies and hashes, no text for the times, on either side
        # (formatting a row took 11 µs in text, 4 µs in binary)
        async with cur.copy(f"copy archive ({', '.join(COLUMNS)}) from stdin (format binary)"
                            ) as copy:
            copy.set_types(list(COLUMNS.values()))
            for delivery in deliveries:
                link = chains.extend(delivery)
                if isinstance(link, Archived):
                    await copy.write_row(_row(link))
                else:
                    duplicates.append(link)
        if duplicates:
            await cur.executemany(
                "insert into archive_duplicates (event_id, topic, partition, log_offset, same_body)"
                " values (%s, %s, %s, %s, %s)",
                [(d.delivery.event.event_id, d.delivery.record.topic, d.delivery.record.partition,
                  d.delivery.record.offset, d.same_body) for d in duplicates],
            )
        await cur.executemany(
            "insert into archive_heads (topic, partition, position, hash) values (%s, %s, %s, %s)"
            " on conflict (topic, partition) do update"
            " set position = excluded.position, hash = excluded.hash",
            [(t, p, h.position - 1, h.hash) for (t, p), h in chains.heads.items()],
        )


def _row(a: Archived) -> tuple[Any, ...]:
    e, r = a.delivery.event, a.delivery.record
    return (r.topic, r.partition, a.position, r.offset, e.event_id, e.event_type,
            e.schema_version, e.grid, e.aggregate_id, e.aggregate_seq, e.actor.id,
            e.actor.role.value, e.occurred_at, e.recorded_at, a.body, a.prev_hash, a.hash)
