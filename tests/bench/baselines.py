"""The machine's own limits, measured in the same run as the rows they stand beside: kafka-python
alone producing and consuming, COPY alone, and the per-event cost of each component."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

import psycopg
from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import NewTopic

from events.catalog import event_from_json
from events.codec import encode
from events.log import consumer, durable_producer_config, end_offsets, partitions_of


def raw_producer(bootstrap: str, records: list[tuple[bytes, bytes]]) -> tuple[str, float]:
    """kafka-python alone, the same records and settings, acks=all, into a topic of its own:
    (that topic, records/s)."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    topic = f"bench.raw.{uuid.uuid4().hex[:12]}"
    admin.create_topics([NewTopic(topic, 12, 1)])
    admin.close()
    producer = KafkaProducer(**durable_producer_config(bootstrap))
    producer.send(topic, b"warm-up").get(timeout=10)
    started = time.perf_counter()
    futures = [producer.send(topic, key=k, value=v) for k, v in records]
    producer.flush()
    for f in futures:
        f.get(timeout=30)
    elapsed = time.perf_counter() - started
    producer.close()
    return topic, len(records) / elapsed


def raw_consume(bootstrap: str, topics: tuple[str, ...]) -> tuple[int, float]:
    """kafka-python alone reading every record of the topics, doing nothing else."""
    kafka = consumer(bootstrap, max_poll_records=5000)
    tps = partitions_of(kafka, topics)
    ends = end_offsets(kafka, tps)
    kafka.assign(tps)
    kafka.seek_to_beginning(*tps)
    read, started = 0, time.perf_counter()
    left = {tp for tp in tps if ends[tp]}
    while left:
        for tp, records in kafka.poll(timeout_ms=500).items():
            read += len(records)
            if kafka.position(tp) >= ends[tp]:
                left.discard(tp)
                kafka.pause(tp)
    elapsed = time.perf_counter() - started
    kafka.close()
    return read, read / elapsed


def raw_copy(database_url: str, bodies: list[bytes]) -> float:
    """COPY of the same canonical bodies into an unindexed table, rows/s."""
    with psycopg.connect(database_url) as conn:
        conn.execute("create temporary table bench_copy (body bytea)")
        started = time.perf_counter()
        with conn.cursor() as cur, cur.copy("copy bench_copy (body) from stdin") as copy:
            for body in bodies:
                copy.write_row((body,))
        return len(bodies) / (time.perf_counter() - started)


@dataclass(frozen=True)
class Components:
    """Microseconds per event of each step an event takes, each alone on one core."""

    validate: float
    encode: float
    send: float
    consume: float
    upsert: float

    @property
    def total(self) -> float:
        return self.validate + self.encode + self.send + self.consume + self.upsert

    def __str__(self) -> str:
        return (f"validate {self.validate:.0f} + encode {self.encode:.0f} + send "
                f"{self.send:.0f} + consume {self.consume:.0f} + COPY {self.upsert:.0f}"
                f" = {self.total:.0f} µs")


def components(bootstrap: str, database_url: str, records: list[tuple[bytes, bytes]]
               ) -> Components:
    """The sum the issue compares the platform's CPU per event with: validate with the catalog,
    encode once, send with kafka-python, consume with kafka-python, COPY a row."""
    bodies = [body for _, body in records]
    started = time.perf_counter()
    events = [event_from_json(body) for body in bodies]
    validate = (time.perf_counter() - started) / len(bodies)
    started = time.perf_counter()
    for event in events:
        encode(event)
    encoded = (time.perf_counter() - started) / len(events)
    topic, sent = raw_producer(bootstrap, records)
    _, consumed = raw_consume(bootstrap, (topic,))
    copied = raw_copy(database_url, bodies)
    return Components(validate * 1e6, encoded * 1e6, 1e6 / sent, 1e6 / consumed, 1e6 / copied)
