"""Restore: republish the archive into an empty broker, and remap stored offsets to it.

The embedded broker keeps its log in memory, so the archive re-seeds it at every start. The
new log holds exactly the archived events, partition by partition in archive order, so an
event's new offset is its archive position; duplicates and poison records are not republished.
Offsets that projections stored for the old log are remapped through the archive: the next
offset becomes the number of archived events that lay below it.
"""

from __future__ import annotations

import logging

import psycopg
from kafka import TopicPartition

from events.log import EventLog, consumer, end_offsets, partitions_of
from events.topics import EVENT_TOPICS

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
    event_log.close()
    log.info("re-seeded %d archived events into the broker", total)
    return total


def archive_drained(bootstrap: str, database_url: str) -> bool:
    """Whether the archive has applied everything the broker holds."""
    kafka = consumer(bootstrap)
    try:
        tps = partitions_of(kafka, [t.name for t in EVENT_TOPICS])
        ends = end_offsets(kafka, tps)
    finally:
        kafka.close()
    with psycopg.connect(database_url) as conn:
        stored = {
            TopicPartition(t, p): o for t, p, o in conn.execute(
                "select topic, partition, next_offset from projection_offsets"
                " where projection = 'archive'")
        }
    return all(stored.get(tp, 0) >= end for tp, end in ends.items())
