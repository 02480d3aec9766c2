"""Restore: republish the archive into an empty broker, and remap stored offsets to it.

The embedded broker keeps its log in memory, so the archive re-seeds it at every start. The
new log holds exactly the archived events, partition by partition in archive order, so an
event's new offset is its archive position; duplicates and poison records are not republished.
Offsets that projections stored for the old log are remapped through the archive: the next
offset becomes the number of archived events that lay below it. Events ingest acknowledged
that the archive never got (a broker that died before the archive applied them) are sent
again after the archived ones, from the bytes their id was claimed for (ingest's outbox), and
their receipts name their new offsets: no 201 dies with the broker. A projection that had
applied such events (it was ahead of the archive) cannot be remapped: its rows hold them at
their old offsets, so it is emptied and rebuilds from offset 0. What a decider wrote and the
archive had not applied is lost with the broker's memory (docs/OPERATIONS.md).
"""

from __future__ import annotations

import logging
from typing import Any
from uuid import UUID

import orjson
import psycopg
from kafka import KafkaConsumer, TopicPartition
from psycopg import sql

from events.log import EventLog, consumer, end_offsets, partitions_of
from events.topics import EVENT_TOPICS
from projections.worker import PROJECTIONS

log = logging.getLogger(__name__)


class RestoreRefused(RuntimeError):
    pass


def broker_is_empty(bootstrap: str) -> bool:
    kafka = consumer(bootstrap)
    try:
        tps = partitions_of(kafka, [t.name for t in EVENT_TOPICS])
        return not any(end_offsets(kafka, tps).values())
    finally:
        kafka.close()


def reseed(bootstrap: str, database_url: str) -> int:
    """Republish every archived event; returns how many. Refuses a broker that holds events."""
    if not broker_is_empty(bootstrap):
        raise RestoreRefused("the broker already holds events; restore needs empty topics")
    event_log = EventLog(bootstrap, client_id="gridgov-restore")
    total = 0
    with psycopg.connect(database_url) as conn:
        parts = conn.execute(
            "select topic, partition, count(*) from archive group by 1, 2 order by 1, 2"
        ).fetchall()
        for topic, partition, count in parts:
            futures = []
            with conn.cursor(name="reseed") as rows:
                rows.execute(
                    "select position, aggregate_id, event_type, body from archive"
                    " where topic = %s and partition = %s order by position",
                    [topic, partition],
                )
                for position, aggregate_id, event_type, body in rows:
                    futures.append((position, event_log.send_raw(
                        topic, bytes(body), key=aggregate_id.encode(), partition=partition,
                        headers=[("event_type", event_type.encode())])))
            event_log.flush()
            for position, future in futures:
                offset = future.get(timeout=30).offset
                if offset != position:
                    raise RestoreRefused(
                        f"{topic}/{partition}: position {position} came back at offset {offset}"
                    )
            total += count
        with conn.transaction():
            for name in _ahead_of_archive(conn):
                log.warning("%s had applied events the archive had not: rebuilding it", name)
                conn.execute(sql.SQL("truncate {}").format(sql.SQL(", ").join(
                    sql.Identifier(t) for t in PROJECTIONS[name]().tables)))
                conn.execute("delete from projection_offsets where projection = %s", [name])
            conn.execute(
                "update projection_offsets po set next_offset = (select count(*) from archive a"
                " where a.topic = po.topic and a.partition = po.partition"
                " and a.log_offset < po.next_offset)"
            )
            conn.execute("update archive set log_offset = position where log_offset <> position")
            conn.execute(
                "update ingest_receipts r set log_offset = a.position"
                " from archive a where a.event_id = r.event_id"
            )
            republished = _republish_acknowledged(conn, event_log)
            lost = conn.execute(
                "delete from ingest_receipts r where not exists"
                " (select 1 from archive a where a.event_id = r.event_id)"
                " and r.event_id <> all(%s)", [republished]
            ).rowcount
    event_log.close()
    if republished:
        log.warning("%d acknowledged events were not archived when the broker's log was lost;"
                    " republished from ingest's claims", len(republished))
    if lost:
        log.warning("%d acknowledged events were not archived and have no claimed bytes;"
                    " their receipts are dropped so that retries append them again", lost)
    log.info("re-seeded %d archived events into the broker", total)
    return total


def _republish_acknowledged(conn: psycopg.Connection[Any], event_log: EventLog) -> list[UUID]:
    """Events ingest answered 201 for (they have a receipt) that the archive never got, sent
    again from the bytes their id was claimed for, in their old order after the archived
    ones; their receipts then name their new offsets. Returns their ids."""
    rows = conn.execute(
        "select r.event_id, r.topic, r.partition, c.body from ingest_receipts r"
        " join ingest_claims c using (event_id) where c.body is not null and not exists"
        " (select 1 from archive a where a.event_id = r.event_id)"
        " order by r.topic, r.partition, r.log_offset").fetchall()
    sent = []
    for event_id, topic, partition, body in rows:
        fields = orjson.loads(body)
        sent.append((event_id, event_log.send_raw(
            topic, bytes(body), key=fields["aggregate_id"].encode(), partition=partition,
            headers=[("event_type", fields["event_type"].encode())])))
    event_log.flush()
    for event_id, future in sent:
        conn.execute("update ingest_receipts set log_offset = %s where event_id = %s",
                     [future.get(timeout=30).offset, event_id])
    return [event_id for event_id, _ in sent]


def _ahead_of_archive(conn: psycopg.Connection[Any]) -> list[str]:
    """Projections that stored, for some partition, a next offset past the archive's."""
    return [str(name) for (name,) in conn.execute(
        "select distinct p.projection from projection_offsets p left join projection_offsets a"
        " on a.projection = 'archive' and a.topic = p.topic and a.partition = p.partition"
        " where p.projection <> 'archive' and p.next_offset > coalesce(a.next_offset, 0)"
        " order by 1")]


def archive_drained(database_url: str, kafka: KafkaConsumer) -> bool:
    """Whether the archive has applied everything the broker holds (`kafka`: a consumer
    kept for the polls, since making one costs a bootstrap and version probes)."""
    ends = end_offsets(kafka, partitions_of(kafka, [t.name for t in EVENT_TOPICS]))
    with psycopg.connect(database_url) as conn:
        stored = {
            TopicPartition(t, p): o for t, p, o in conn.execute(
                "select topic, partition, next_offset from projection_offsets"
                " where projection = 'archive'")
        }
    return all(stored.get(tp, 0) >= end for tp, end in ends.items())
